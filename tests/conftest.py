import os
from pathlib import Path

# Real datasets live beside the checkout unless JAXCNN_DATA_DIR says otherwise.
os.environ.setdefault("JAXCNN_DATA_DIR", str(Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
