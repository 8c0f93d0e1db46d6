"""Example pipelines built from kubetrain_kfp components (compiled YAML in compiled/)."""
