"""A one-epoch smoke run of every experiment on a tiny slice: each config trains and writes its outputs."""

import dataclasses
import json
import os

import pytest

from jaxcnn.cli import list_experiments, load_experiment
from jaxcnn.experiment import train_and_evaluate

# Smaller inputs where the recipe's full-size data would take minutes to prepare.
SMALL_DATA = {
    "video_cnn_lstm": {"num_train": 64, "num_test": 32, "frames": 6, "size": 32},
    "bn_cnn_binary": {"classes": ("cat", "dog"), "image_size": (150, 150)},
}


@pytest.mark.parametrize("name", sorted(list_experiments()))
def test_experiment_smoke(name, tmp_path, data_dir):
    config = load_experiment(list_experiments()[name]).get_config()
    config = dataclasses.replace(
        config, epochs=1, batch_size=16, train_limit=64, test_limit=32, data_dir=data_dir,
        dataset_kwargs=SMALL_DATA.get(name, config.dataset_kwargs))
    metrics = train_and_evaluate(config, str(tmp_path), verbose=0)
    assert metrics["train_examples"] == 64 and metrics["test_examples"] == 32
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert json.load(open(tmp_path / "metrics.json"))["experiment"] == name
    for extra in config.extras:
        if extra in ("filters", "samples"):
            assert os.path.getsize(tmp_path / f"{extra}.png") > 0
        if extra == "frame_baseline":
            assert "frame_baseline_test_accuracy" in metrics
