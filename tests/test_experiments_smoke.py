"""A one-epoch smoke run of every experiment on a tiny slice: each config trains and writes its outputs."""

import dataclasses
import json
import os

import jax
import pytest

from jaxcnn.cli import list_experiments, load_experiment
from jaxcnn.experiment import train_and_evaluate

# Smaller inputs where the recipe's full-size data would take minutes to prepare or train.
SMALL = {
    "video_cnn_lstm": {"dataset_kwargs": {"num_train": 64, "num_test": 32, "frames": 6, "size": 32}},
    "vgg16_transfer": {"resize": (32, 32)},
    "resnet50_transfer": {"resize": (32, 32)},
}


@pytest.mark.parametrize("name", sorted(list_experiments()))
def test_experiment_smoke(name, tmp_path, data_dir):
    config = load_experiment(list_experiments()[name]).get_config()
    config = dataclasses.replace(config, epochs=1, batch_size=16, train_limit=64, test_limit=32,
                                 data_dir=data_dir, **SMALL.get(name, {}))
    metrics = train_and_evaluate(config, str(tmp_path), verbose=0)
    assert metrics["train_examples"] == 64 and metrics["test_examples"] == 32
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert json.load(open(tmp_path / "metrics.json"))["experiment"] == name
    assert metrics["road"] in ("device", "pipeline")
    # What inference needs, and the evaluation report (jaxcnn.model_card, jaxcnn.report).
    assert json.load(open(tmp_path / "model.json"))["model"] == config.model
    assert sum(map(sum, metrics["confusion_matrix"])) == 32
    assert os.path.getsize(tmp_path / "confusion.png") > 0 and os.path.getsize(tmp_path / "errors.png") > 0
    if config.augment not in (None, "", "none") and jax.default_backend() == "cpu":
        assert metrics["road"] == "pipeline"  # tf.data augmentation on CPU
    for extra in config.extras:
        if extra in ("filters", "samples"):
            assert os.path.getsize(tmp_path / f"{extra}.png") > 0
        if extra == "frame_baseline":
            assert "frame_baseline_test_accuracy" in metrics


def test_transfer_variant_finetunes_block5_only(tmp_path, data_dir):
    """Head b (N11): base frozen, then block5 unfrozen; random base (no --weights) is announced."""
    import argparse

    import jax
    import numpy as np

    from jaxcnn import checkpoint
    from jaxcnn.experiment import apply_flags

    config = load_experiment(list_experiments()["vgg16_transfer"]).get_config()
    config = apply_flags(config, argparse.Namespace(variant="b"))
    assert config.model == "vgg16_transfer_b" and config.loss == "binary_crossentropy"
    config = dataclasses.replace(config, epochs=1, batch_size=16, train_limit=32, test_limit=16,
                                 data_dir=data_dir, resize=(32, 32),
                                 finetune={**config.finetune, "epochs": 2})
    with pytest.warns(UserWarning, match="no pretrained weights"):
        metrics = train_and_evaluate(config, str(tmp_path), verbose=0)
    assert metrics["train_examples"] == 32
    history = json.load(open(tmp_path / "history.json"))
    assert len(history["loss"]) == 3  # 1 frozen epoch + 2 fine-tuning epochs
    # Against a fresh init with the same seed, the final params differ only in block5 and the head.
    from jaxcnn.models import get_model
    from jaxcnn.train.state import init_variables

    init = init_variables(get_model("vgg16_transfer_b", **config.model_kwargs), (32, 32, 3), config.seed)
    final = checkpoint.restore_params(str(tmp_path / "params"))["params"]
    changed = {"/".join(str(getattr(k, "key", k)) for k in path)
               for path, a in jax.tree_util.tree_flatten_with_path(init["params"])[0]
               if not np.array_equal(a, final[path[0].key][path[1].key][path[2].key])}
    assert changed and all(p.startswith(("head", "base/block5")) for p in changed)
