"""Callbacks with logs: EarlyStopping, ReduceLROnPlateau, schedules, CSV, TensorBoard; summary; CLI logs."""

import csv
import json
import math
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from jaxcnn.train import (Callback, CSVLogger, EarlyStopping, ReduceLROnPlateau, TensorBoard, Trainer,
                          make_schedule)
from tests.helpers import Tiny

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def mnist(data_dir):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist", data_dir=data_dir).take(256, 64)
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test


def _trainer(**kw):
    return Trainer(Tiny(), (28, 28, 1), optimizer="adam", data_backend="numpy", compute_dtype="f32", **kw)


class Recorder(Callback):
    """Keeps each epoch's params and every hook's arguments."""

    def __init__(self):
        self.params, self.logs, self.step_logs = [], [], []

    def on_log(self, trainer, step, logs):
        self.step_logs.append((step, dict(logs)))

    def on_epoch_end(self, trainer, epoch, logs):
        self.params.append(jax.device_get(trainer.state.params))
        self.logs.append(dict(logs))


def test_early_stopping_stops_and_restores_the_best_weights(mnist):
    x, y, xv, yv = mnist
    rec = Recorder()
    # min_delta so large that only the first epoch counts as an improvement
    stop = EarlyStopping("val_loss", min_delta=1e9, patience=2, restore_best_weights=True)
    t = _trainer()
    h = t.fit(x, y, epochs=10, batch_size=32, verbose=0, validation_data=(xv, yv), callbacks=[rec, stop])
    assert h.epoch == [0, 1, 2] and stop.stopped_epoch == 2 and stop.best_epoch == 0
    chex.assert_trees_all_equal(rec.params[0], jax.device_get(t.state.params))
    assert not np.array_equal(rec.params[0]["out"]["kernel"], rec.params[2]["out"]["kernel"])
    # the restored weights are the best epoch's: evaluating them gives its val_loss
    assert t.evaluate(xv, yv)["loss"] == pytest.approx(rec.logs[0]["val_loss"], rel=1e-6)


def test_reduce_lr_on_plateau_lowers_the_rate_in_the_step(mnist):
    x, y, xv, yv = mnist
    t = _trainer(learning_rate=1e-3)
    plateau = ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=1e9)
    h = t.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[plateau])
    assert h["learning_rate"] == pytest.approx([1e-3, 1e-3, 5e-4])  # the rate each epoch trained with
    assert t.current_learning_rate() == pytest.approx(2.5e-4)
    # The step uses the new rate: from one state, Adam's update scales with it (x4 at 1e-3).
    saved = jax.device_get(t.state)
    deltas = []
    for lr in (2.5e-4, 1e-3):
        t.set_learning_rate(lr)
        t.state = t.strategy.replicate(saved.replace(tx=t.tx))
        t.fit(x[:32], y[:32], epochs=1, batch_size=32, verbose=0)
        deltas.append(jax.device_get(t.state.params)["out"]["kernel"] - saved.params["out"]["kernel"])
    np.testing.assert_allclose(4 * deltas[0], deltas[1], rtol=1e-3, atol=1e-7)  # float32 params ~0.05
    assert np.abs(deltas[0]).max() > 0


def test_cosine_schedule_with_warmup_drives_the_optimizer(mnist):
    x, y, _, _ = mnist
    schedule = make_schedule("cosine,warmup=1", 1e-3, steps_per_epoch=8, epochs=4)
    t = _trainer(learning_rate=schedule)
    rec = Recorder()
    h = t.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=[rec], log_every=1)
    # the rate of each epoch's last step: warm-up over 8 steps, then cosine over 24 to 0
    want = [1e-3 * 7 / 8] + [0.5e-3 * (1 + math.cos(math.pi * (8 * e + 7 - 8) / 24)) for e in (1, 2, 3)]
    np.testing.assert_allclose(h["learning_rate"], want, rtol=1e-5, atol=1e-9)
    steps = [s for s, _ in rec.step_logs]
    assert steps == list(range(1, 33))  # log_every=1: logs after every step, global step numbers
    np.testing.assert_allclose([lg["learning_rate"] for _, lg in rec.step_logs],
                               [float(schedule(s - 1)) for s in steps], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        make_schedule("cosin", 1e-3, steps_per_epoch=8, epochs=4)


def test_csv_logger_writes_one_row_per_epoch(mnist, tmp_path):
    x, y, xv, yv = mnist
    path = str(tmp_path / "log.csv")
    _trainer().fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=(xv, yv), callbacks=[CSVLogger(path)])
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    assert float(rows[1]["loss"]) > 0


def test_tensorboard_event_files_read_back_with_tensorboard(mnist, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y, xv, yv = mnist
    logdir = str(tmp_path / "tb")
    _trainer().fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=(xv, yv), log_every=2,
                   callbacks=[TensorBoard(logdir, images=8)])
    train = EventAccumulator(os.path.join(logdir, "train"), size_guidance={"tensors": 0}).Reload()
    val = EventAccumulator(os.path.join(logdir, "validation")).Reload()
    tags = train.Tags()
    assert {"batch_loss", "batch_accuracy", "batch_learning_rate", "epoch_loss", "epoch_accuracy",
            "epoch_learning_rate"} <= set(tags["scalars"])
    assert [e.step for e in train.Scalars("batch_loss")] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [e.step for e in train.Scalars("epoch_loss")] == [0, 1]
    assert [e.value for e in train.Scalars("epoch_learning_rate")] == pytest.approx([1e-3, 1e-3])
    assert [e.step for e in val.Scalars("epoch_accuracy")] == [0, 1]
    assert 0 <= val.Scalars("epoch_accuracy")[-1].value <= 1
    image = train.Images("images")[0]
    assert (image.width, image.height) == (8 * 28, 28)
    text = train.Tensors("model")[0].tensor_proto.string_val[0].decode()
    assert "Total params: 6,810" in text and "conv (Conv)" in text


def test_tensorboard_writer_needs_no_tensorflow(tmp_path):
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "import numpy as np\n"
            "from jaxcnn.train.tensorboard import SummaryWriter\n"
            f"w = SummaryWriter({str(tmp_path)!r})\n"
            "w.scalar('loss', 0.5, 3); w.image('img', np.zeros((4, 6, 3), np.uint8), 3); w.text('t', 'hi', 3)\n"
            "w.close()\n"
            "assert 'tensorflow' not in {m for m in sys.modules if sys.modules[m] is not None}\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120,
                   env=dict(os.environ, PYTHONPATH=REPO))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path)).Reload()
    assert acc.Scalars("loss")[0].value == 0.5 and acc.Scalars("loss")[0].step == 3


def test_summary_counts_equal_keras():
    from test_models import keras_model

    from jaxcnn.models import get_model
    from jaxcnn.train.summary import summary_rows

    rows = summary_rows(get_model("bn_cnn_binary"), (40, 40, 3))
    kmodel = keras_model("bn_cnn_binary", (40, 40, 3))
    trainable = sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in kmodel.non_trainable_weights)
    assert sum(r["params"] for r in rows) == trainable
    assert sum(r["non_trainable"] for r in rows) == frozen
    by_name = {r["name"]: r for r in rows}
    assert by_name["bn1"]["params"] + by_name["bn1"]["non_trainable"] == kmodel.get_layer("bn1").count_params()
    assert by_name["conv1"]["output_shape"] == "(None, 38, 38, 32)" and by_name["conv1"]["flops"] > 0


def test_cli_schedule_early_stopping_and_quiet_result_line(tmp_path, data_dir, capsys):
    from jaxcnn.cli import main

    workdir = str(tmp_path / "run")
    assert main(["train", "mnist_cnn", "--limit", "96", "--batch-size", "32", "--epochs", "3", "--workdir",
                 workdir, "--data-dir", data_dir, "--quiet", "--lr-schedule", "cosine",
                 "--early-stopping", "5"]) == 0
    history = json.load(open(os.path.join(workdir, "history.json")))
    # cosine over 3 epochs of 3 steps: the rate of each epoch's last step
    want = [0.5e-3 * (1 + math.cos(math.pi * s / 9)) for s in (2, 5, 8)]
    np.testing.assert_allclose(history["learning_rate"], want, rtol=1e-5)
    lines = capsys.readouterr().err.splitlines()
    assert any(m.startswith("mnist_cnn: test loss") and "test accuracy" in m for m in lines), lines
    assert not any(m.startswith("Epoch ") for m in lines)  # --quiet: only the result line
    assert os.listdir(os.path.join(workdir, "tensorboard", "train"))


def test_piped_output_is_one_line_per_epoch(tmp_path, data_dir):
    out = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "train", "mnist_cnn", "--limit", "64",
                          "--epochs", "2", "--workdir", str(tmp_path), "--data-dir", data_dir],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "\r" not in out.stderr  # no progress bar when stderr is not a terminal (verbose=2)
    epochs = [ln for ln in out.stderr.splitlines() if ln.startswith("Epoch ")]
    assert [ln.split(" - ")[0] for ln in epochs] == ["Epoch 1/2", "Epoch 2/2"], out.stderr[-3000:]
    assert "val_accuracy" in epochs[0]
    assert "mnist_cnn: test loss" in out.stderr


def test_on_epoch_logs_entries_reach_the_history_and_fractional_epochs(mnist):
    """`on_epoch_logs` adds to an epoch's logs before the History records them (a test score);
    `epochs=1.5` runs the first half of the second epoch's steps."""
    x, y, _, _ = mnist

    class Score(Callback):
        def on_epoch_logs(self, trainer, epoch, logs):
            logs["score"] = float(epoch)

    t = _trainer()
    h = t.fit(x, y, epochs=1.5, batch_size=32, verbose=0, callbacks=[Score()])
    assert h["score"] == [0.0, 1.0] and int(t.state.step) == 12
    assert t.fit_info["epochs"] == 2 and t.fit_info["total_steps"] == 12
