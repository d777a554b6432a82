#!/opt/mlflow/bin/python
"""Healthy when the server answers /health (which skips the allowed-hosts check)."""

import os
import sys
import urllib.request

port = os.environ.get("MLFLOW_PORT", "5000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
