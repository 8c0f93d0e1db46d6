"""toy_train.py with the runtime's INFO logs on stdout: what a rank's `kubetrain logs` shows."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import toy_train

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    print(
        f"rank {os.environ.get('NODE_RANK')} of {os.environ.get('KUBETRAIN_POD_NAME')}", flush=True
    )
    toy_train.main()
