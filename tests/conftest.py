"""Shared test set-up: the datasets folder.

Real datasets come from $JAXCNN_DATA_DIR, by default the `shared/datasets` folder beside the
checkout (where CI puts it). Multi-device tests start their own
processes with fake CPU devices, so this process keeps the real device count.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAXCNN_DATA_DIR", os.path.join(os.path.dirname(_REPO), "shared", "datasets"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir():
    path = os.environ["JAXCNN_DATA_DIR"]
    if not os.path.isdir(path):
        pytest.fail(f"datasets folder {path} not found: set JAXCNN_DATA_DIR")
    return path

