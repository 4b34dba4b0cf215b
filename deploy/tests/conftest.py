"""The cluster checks share the cluster job's code (loadtest/src/celsius_loadtest/kube.py): its
folder goes on the import path before any test module is imported."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest" / "src"))
