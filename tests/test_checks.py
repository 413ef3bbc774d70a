"""Input checks: labels for the loss, finite images, typed config overrides, strict JSON, the
workdir's recorded configuration, data folders that are given but wrong, one-line CLI errors."""

import argparse
import json
import os
import warnings

import flax.linen as nn
import numpy as np
import pytest

from jaxcnn import config_flags, errors, experiment
from jaxcnn.data import DataError, checks
from jaxcnn.experiment import ExperimentConfig


class Tiny(nn.Module):
    outputs: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(self.outputs)(x.reshape(x.shape[0], -1))


def _trainer(loss="sparse_categorical_crossentropy", outputs=3):
    from jaxcnn.train import Trainer

    return Trainer(Tiny(outputs), (2, 2, 1), loss=loss, optimizer="sgd", seed=0)


# -- labels --------------------------------------------------------------------------------------
def test_labels_n_by_1_are_squeezed_and_train_like_n():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 2, 2, 1), np.float32), rng.integers(0, 3, 16)
    flat = _trainer().fit(x, y, epochs=1, batch_size=8, verbose=0)
    column = _trainer().fit(x, y[:, None], epochs=1, batch_size=8, verbose=0)
    assert column["loss"] == pytest.approx(flat["loss"], rel=1e-6)
    assert _trainer().evaluate(x, y[:, None]) == pytest.approx(_trainer().evaluate(x, y))


@pytest.mark.parametrize("loss,labels,match", [
    ("sparse_categorical_crossentropy", [0, 1, 2, 3], r"label 3 is 3; .*\[0, 3\)"),
    ("sparse_categorical_crossentropy", [0, -1, 2, 1], r"label 1 is -1"),
    ("sparse_categorical_crossentropy", [0, 1, 5.7, 1], r"label 2 is 5.7; .*whole-number"),
    ("sparse_categorical_crossentropy", [0, 1, np.nan, 1], r"label 2 is nan"),
    ("binary_crossentropy", [0, 1, 9, 1], r"label 2 is 9; binary_crossentropy needs labels 0 or 1"),
    ("sparse_categorical_crossentropy", np.eye(3)[[0, 1, 2, 0]], r"look one-hot.*categorical_crossentropy"),
    ("categorical_crossentropy", np.eye(4)[[0, 1, 2, 0]], r"4 columns but the model has 3 outputs"),
    ("categorical_crossentropy", [[1, 0, 0], [0, 1, 0], [0, 2, 0], [0, 0, 1]], r"label 2 is \[0, 2, 0\]"),
])
def test_bad_labels_name_the_first_bad_index_and_value(loss, labels, match):
    with pytest.raises(DataError, match=match):
        checks.check_labels(np.array(labels), loss, 3, "fit", num_examples=4)


def test_good_labels_pass():
    assert checks.check_labels(np.array([0., 2., 1.]), "sparse_categorical_crossentropy", 3, "fit").dtype == np.int32
    assert list(checks.check_labels(np.array([[1], [0]]), "binary_crossentropy", 1, "fit")) == [1, 0]
    soft = np.array([[0.9, 0.05, 0.05], [0, 0, 1]])
    np.testing.assert_array_equal(checks.check_labels(soft, "categorical_crossentropy", 3, "fit"), soft)
    custom = np.array([0.3, 7.5])  # a user's own loss: shape checks only
    np.testing.assert_array_equal(checks.check_labels(custom, lambda l, y: l, 3, "fit"), custom)


def test_fit_and_evaluate_check_labels():
    x = np.zeros((4, 2, 2, 1), np.float32)
    with pytest.raises(DataError, match="fit: label 3 is 3"):
        _trainer().fit(x, np.array([0, 1, 2, 3]), epochs=1, batch_size=2, verbose=0)
    with pytest.raises(DataError, match="validation_data: label 0 is 7"):
        _trainer().fit(x, np.zeros(4, int), epochs=1, batch_size=2, verbose=0,
                       validation_data=(x, np.array([7, 0, 0, 0])))
    with pytest.raises(DataError, match="evaluate: label 1 is 0.5"):
        _trainer(loss="binary_crossentropy", outputs=1).evaluate(x, np.array([1.0, 0.5, 0.0, 1.0]))


# -- images ---------------------------------------------------------------------------------------
def test_nan_or_inf_images_stop_before_training():
    x = np.zeros((6, 2, 2, 1), np.float32)
    x[4, 1, 0, 0] = np.inf
    trainer = _trainer()
    with pytest.raises(DataError, match="fit: image 4 holds inf"):
        trainer.fit(x, np.zeros(6, int), epochs=1, batch_size=2, verbose=0)
    assert int(trainer.state.step) == 0


def test_float_images_out_of_range_warn_once(monkeypatch):
    monkeypatch.setattr(checks, "_warned_range", False)
    x = np.full((2, 2, 2, 1), 255.0, np.float32)
    with pytest.warns(UserWarning, match=r"\[255, 255\].*only uint8 is scaled by 1/255"):
        checks.check_images(x, "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checks.check_images(x, "fit")  # once per process
        checks.check_images(np.full((2, 2, 2, 1), 255, np.uint8), "fit")  # uint8: scaled, no warning
    monkeypatch.setattr(checks, "_warned_range", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # standardized inputs (negative values) are deliberate
        checks.check_images(np.linspace(-1.2, 3.5, 16, dtype=np.float32).reshape(2, 2, 2, 2), "fit")


# -- typed overrides --------------------------------------------------------------------------------
def _parse(argv):
    parser = argparse.ArgumentParser()
    experiment.add_flags(parser)
    return parser.parse_args(argv)


def test_set_any_field_typed_from_the_dataclass():
    config = ExperimentConfig(name="t", model="mnist_cnn", model_kwargs={"width": 2})
    args = _parse(["--set", "learning_rate=3e-4", "--set", "model_kwargs.dropout=0.3", "--set", "resize=32,32",
                   "--set", "validate_on_test=false", "--set", "trainable=head,base/block5",
                   "--set", "validation_split=none", "--epochs", "2", "--limit", "8", "--set", "epochs=3"])
    config = experiment.apply_flags(config, args)
    assert config.learning_rate == 3e-4 and config.model_kwargs == {"width": 2, "dropout": 0.3}
    assert config.resize == (32, 32) and config.validate_on_test is False
    assert config.trainable == ("head", "base/block5") and config.validation_split is None
    assert (config.epochs, config.train_limit, config.test_limit) == (3, 8, 8)  # in command-line order


@pytest.mark.parametrize("argv,match", [
    (["--set", "epoch=3"], r"unknown config field 'epoch'; did you mean 'epochs'"),
    (["--set", "batch_size=big"], r"batch_size: expected an integer"),
    (["--set", "epochs=0"], r"epochs: must be a positive integer"),
    (["--epochs", "-1"], r"argument --epochs: must be a positive integer, got -1"),
    (["--limit", "0"], r"argument --limit: must be a positive integer, got 0"),
    (["--batch-size", "0"], r"argument --batch-size: must be a positive integer"),
    (["--seed", "-3"], r"argument --seed: must be 0 or more"),
    (["--fake-devices", "0"], r"argument --fake-devices: must be a positive integer, got 0"),
    (["--road", "fast"], r"argument --road: must be one of auto, pipeline, device"),
    (["--set", "resize=abc"], r"resize: must be two positive integers \(height, width\), got \('abc',\)"),
])
def test_bad_flags_are_refused_at_parse_time(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        _parse(argv)
    assert e.value.code == 2
    assert __import__("re").search(match, capsys.readouterr().err)


def test_convert_handles_optional_and_literals():
    assert config_flags.convert(int | None, "none") is None
    assert config_flags.convert(dict, "{'a': 1}") == {"a": 1}
    with pytest.raises(ValueError):
        config_flags.convert(dict, "[1]")


# -- strict JSON ------------------------------------------------------------------------------------
def test_json_files_stay_strict_with_non_finite_values(tmp_path):
    path = str(tmp_path / "metrics.json")
    experiment._write_json(path, {"test_loss": float("nan"), "acc": np.float32(0.5),
                                  "loss": [1.0, float("inf")]})

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    data = json.loads(open(path).read(), parse_constant=refuse)
    assert data == {"test_loss": None, "acc": 0.5, "loss": [1.0, None], "non_finite": ["test_loss", "loss[1]"]}


# -- workdir and recorded configuration ---------------------------------------------------------------
def test_workdir_problems_are_usage_errors(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(errors.UsageError, match="exists and is not a directory"):
        experiment.check_workdir(str(tmp_path / "f"))
    with pytest.raises(errors.UsageError, match="cannot be written"):
        experiment.check_workdir(str(tmp_path / "f" / "run"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("")  # refused now, not at the first save
    with pytest.raises(errors.UsageError, match=r"run/checkpoints: exists and is not a directory"):
        experiment.check_workdir(str(tmp_path / "run"))


def test_rerun_with_another_config_stops_unless_only_epochs_grow(tmp_path):
    workdir = str(tmp_path / "run")
    config = ExperimentConfig(name="t", model="mnist_cnn", epochs=2, train_limit=64)
    experiment.prepare_workdir(config, workdir)
    experiment._progress_recorder(workdir).on_epoch_end(None, 1, {})  # 2 epochs done
    experiment.prepare_workdir(config, workdir)  # same config: resume
    experiment.prepare_workdir(experiment.dataclasses.replace(config, epochs=4, checkpoint_keep=1), workdir)
    other = experiment.dataclasses.replace(config, batch_size=64, seed=1)
    with pytest.raises(errors.UsageError, match=r"(?s)another configuration.*batch_size: 32 -> 64.*seed: 0 -> 1.*--fresh"):
        experiment.prepare_workdir(other, workdir)
    with pytest.raises(errors.UsageError, match="2 epochs are already done, so --epochs 1 is below that"):
        experiment.prepare_workdir(experiment.dataclasses.replace(config, epochs=1), workdir)
    experiment.prepare_workdir(other, workdir, fresh=True)
    aside = [p for p in os.listdir(tmp_path) if p.startswith("run.old-")]
    assert len(aside) == 1 and os.path.exists(tmp_path / aside[0] / "config.json")
    assert json.load(open(os.path.join(workdir, "config.json"))) == {
        "config": experiment.config_record(other), "epochs_done": 0}


# -- data folders (a given folder that is wrong is an error: tests/test_idx_and_sources.py) ---------
def test_the_run_says_when_it_uses_bundled_mnist(monkeypatch, capsys):
    monkeypatch.delenv("JAXCNN_DATA_DIR", raising=False)
    config = ExperimentConfig(name="t", model="mnist_cnn", train_limit=8, test_limit=8)
    assert len(experiment.load_data(config).x_train) == 8
    assert "using the MNIST copy bundled with jaxcnn" in capsys.readouterr().err
    assert experiment.data_source(config) == "bundled"


# -- one-line errors ------------------------------------------------------------------------------------
def test_error_report_is_one_line_with_a_hint_and_a_status(capsys):
    assert errors.report(DataError("/d/x.gz: bad magic number")) == 2
    assert errors.report(PermissionError(13, "Permission denied", "/runs/x/params")) == 1
    assert errors.report(RuntimeError("XLA failed\n" + "detail\n" * 50)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "jaxcnn: error: /d/x.gz: bad magic number" and "--debug" in err[1]
    assert err[2] == "jaxcnn: error: /runs/x/params: Permission denied"
    assert err[4] == "jaxcnn: error: RuntimeError: XLA failed (and 50 more lines)"
    assert errors.strip_debug(["train", "--debug", "x", "--", "--debug"]) == ["train", "x", "--", "--debug"]


def test_debug_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv("JAXCNN_DEBUG", raising=False)
    assert not errors.debug_requested(["launch", "--", "train", "--debug"])  # the child's flag
    assert errors.debug_requested(["train", "x", "--debug"])
    monkeypatch.setenv("JAXCNN_DEBUG", "1")
    assert errors.debug_requested([])
    with pytest.raises(DataError):  # with debug, the exception itself comes through
        errors.guard(lambda: (_ for _ in ()).throw(DataError("x")), debug=True)


@pytest.mark.parametrize("argv,match", [
    (["launch", "--processes", "0", "--", "list"], "argument --processes: must be a positive integer"),
    (["launch", "--processes", "2", "--devices-per-process", "0", "--", "list"], "argument --devices-per-process"),
    (["augment-preview", "mnist", "--count", "0"], "argument --count: must be a positive integer"),
])
def test_other_subcommands_check_their_counts_at_parse_time(argv, match, capsys):
    from jaxcnn.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and match in capsys.readouterr().err
