"""The `kubetrain` command line (console scripts `kubetrain` and `kubectl-kubetrain`)."""

from kubetrain.cli.main import EXIT_CODES, main, run

__all__ = ["EXIT_CODES", "main", "run"]
