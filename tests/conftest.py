"""Test setup: real datasets are found through JAXCNN_DATA_DIR (default `<repo>/../shared/datasets`)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("JAXCNN_DATA_DIR", str(REPO.parent / "shared" / "datasets"))
