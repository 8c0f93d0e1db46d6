"""The TrainingJob API: pydantic models (the single source of the CRD schema) and shared names."""
