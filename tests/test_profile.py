"""Step timing (step time, input wait, images/s) and jax.profiler traces of chosen steps."""

import glob
import json
import logging
import os
import time

import jax
import numpy as np
import pytest

from jaxcnn.train import TensorBoard, Trainer
from jaxcnn.train.callbacks import ProfileSteps, StepTiming
from jaxcnn.train.callbacks.profile import parse_step_range
from jaxcnn.train.feeds import PipelineRoad
from tests.helpers import Tiny

TIMING = ("step_time", "input_wait_fraction", "images_per_second")


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1), np.float32), rng.integers(0, 10, n).astype(np.int32)


def _trainer():
    return Trainer(Tiny(), (28, 28, 1), optimizer="sgd", data_backend="numpy", compute_dtype="f32")


class SlowFeed(PipelineRoad):
    """The numpy pipeline with a host that needs `delay` seconds per batch: input-bound."""

    delay = 0.1

    def train_chunks(self, epoch, start_step=0, stop_step=None):
        for chunk in super().train_chunks(epoch, start_step, stop_step):
            time.sleep(self.delay)
            yield chunk


def step_markers(trace_dir):
    """step_num of every `train` StepTraceAnnotation in the trace's xplane file(s)."""
    steps = []
    for path in glob.glob(os.path.join(trace_dir, "*.xplane.pb")):
        for plane in jax.profiler.ProfileData.from_file(path).planes:
            for line in plane.lines:
                steps += [dict(ev.stats)["step_num"] for ev in line.events if ev.name == "train"]
    return sorted(steps)


def test_every_fit_times_its_epochs_apart_from_the_metrics():
    x, y = _data()
    t = _trainer()
    h = t.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert t.timing["epoch"] == [0, 1] and t.timing["steps"] == [3, 3]
    for k in TIMING:
        assert len(t.timing[k]) == 2 and all(v > 0 or k == "input_wait_fraction" for v in t.timing[k]), k
        assert k not in h.history  # wall-clock numbers stay out of the (bitwise-comparable) metrics
    assert all(0 <= f <= 1 for f in t.timing["input_wait_fraction"])
    for s, ips, secs in zip(t.timing["step_time"], t.timing["images_per_second"], h["seconds"]):
        assert s == pytest.approx(secs / 3) and ips == pytest.approx(3 * 32 / secs)


def test_an_input_bound_run_says_so_once(caplog):
    x, y = _data()
    t = _trainer()
    t.fit(x, y, epochs=1, batch_size=32, verbose=0)  # compiles the step: no compilation in the epochs below
    feed = SlowFeed(t, x, y, 32)
    with caplog.at_level(logging.INFO, logger="jaxcnn"):
        t.fit(x, y, epochs=2, batch_size=32, verbose=2, road=feed)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch ")]
    assert len(lines) == 2 and all("ms/step, " in ln and " img/s, input wait " in ln for ln in lines)
    # 3 steps of a ~ms model behind 100 ms of host work each: the wait dominates both epochs
    assert min(t.timing["input_wait_fraction"]) > 0.3
    assert t.input_wait_seconds >= 6 * SlowFeed.delay
    warnings = [r.getMessage() for r in caplog.records if "input is the bottleneck" in r.getMessage()]
    assert len(warnings) == 1 and "epoch 1" in warnings[0]


def test_a_given_step_timing_replaces_the_built_in_one():
    x, y = _data()
    t = _trainer()
    timing = StepTiming(bottleneck=0.99)
    t.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[timing])
    assert t.timing is timing.timing and timing.latest()["step_time"] > 0


@pytest.mark.parametrize("text, want", [("10:20", (10, 20)), ((0, 1), (0, 1)), ([3, 5], (3, 5))])
def test_step_range_parses(text, want):
    assert parse_step_range(text) == want


@pytest.mark.parametrize("bad", ["20:10", "5", "a:b", "-1:3", (1, 2, 3), "3:3"])
def test_step_range_rejects(bad):
    with pytest.raises(ValueError, match="START:STOP"):
        parse_step_range(bad)


def test_profile_steps_traces_exactly_the_range_with_step_markers(tmp_path):
    x, y = _data()
    t = _trainer()
    prof = ProfileSteps(str(tmp_path / "train"), steps=(2, 4))
    t.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[prof])
    assert prof.done and not prof.active and t.step_profiler is None
    assert prof.trace_dir.startswith(str(tmp_path / "train" / "plugins" / "profile"))
    assert step_markers(prof.trace_dir) == [2, 3]  # steps 2 and 3 (the second epoch's first), no others
    assert os.path.getsize(os.path.join(prof.trace_dir, "perfetto_trace.json.gz")) > 0


@pytest.mark.slow
def test_device_road_traces_the_chunks_that_overlap_the_range(tmp_path):
    x, y = _data(128)
    t = _trainer()
    prof = ProfileSteps(str(tmp_path), steps=(5, 6))
    t.fit(x, y, epochs=2, batch_size=32, verbose=0, road="device", steps_per_call=2, callbacks=[prof])
    assert step_markers(prof.trace_dir) == [4]  # one chunk: steps 4 and 5


@pytest.mark.slow
def test_tensorboard_profile_steps_and_timing_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = _data()
    logdir = str(tmp_path / "tb")
    t = _trainer()
    t.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[TensorBoard(logdir, profile_steps="1:3")])
    runs = glob.glob(os.path.join(logdir, "train", "plugins", "profile", "*"))
    assert len(runs) == 1 and step_markers(runs[0]) == [1, 2]
    train = EventAccumulator(os.path.join(logdir, "train")).Reload()
    for k in TIMING:
        values = [e.value for e in train.Scalars(f"epoch_{k}")]
        assert values == pytest.approx(t.timing[k]), k


@pytest.mark.slow
def test_cli_profile_writes_a_trace_and_timing_json(tmp_path, data_dir):
    from jaxcnn.cli import main

    workdir = str(tmp_path / "run")
    assert main(["train", "mnist_cnn", "--limit", "128", "--batch-size", "32", "--epochs", "2",
                 "--workdir", workdir, "--data-dir", data_dir, "--quiet", "--profile", "2:6"]) == 0
    runs = glob.glob(os.path.join(workdir, "tensorboard", "train", "plugins", "profile", "*"))
    assert len(runs) == 1 and step_markers(runs[0]) == [2, 3, 4, 5]
    timing = json.load(open(os.path.join(workdir, "timing.json")))
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert timing["epoch"] == [0, 1] and len(timing["input_wait_fraction"]) == 2
    assert not set(TIMING) & set(history)
    # a rerun may change --profile (it changes nothing the run computes) and continues
    assert main(["train", "mnist_cnn", "--limit", "128", "--batch-size", "32", "--epochs", "3",
                 "--workdir", workdir, "--data-dir", data_dir, "--quiet"]) == 0


def test_cli_rejects_a_bad_profile_range(tmp_path, capsys):
    from jaxcnn.cli import main

    with pytest.raises(SystemExit) as e:  # argparse's usage error, before any data is read
        main(["train", "mnist_cnn", "--workdir", str(tmp_path / "run"), "--profile", "9:3"])
    assert e.value.code == 2
    assert "argument --profile: must be START:STOP" in capsys.readouterr().err


def _same_init_as_optimized_jit(model, shape):
    import chex

    from jaxcnn.compile_cache import run_once
    from jaxcnn.train.state import init_variables

    init = lambda: init_variables(model, shape, 3)  # noqa: E731
    chex.assert_trees_all_equal(run_once(init), jax.jit(init)())  # bit for bit


@pytest.mark.slow
def test_run_once_initializes_bit_for_bit_as_an_optimized_jit():
    _same_init_as_optimized_jit(Tiny(), (28, 28, 1))


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", [("mnist_cnn", (28, 28, 1)), ("mnist_fast", (28, 28, 1)),
                                         ("airbench", (32, 32, 3)), ("bn_cnn_binary", (64, 64, 3))])
def test_run_once_initializes_registered_models_bit_for_bit(name, shape):
    from jaxcnn.models import get_model

    _same_init_as_optimized_jit(get_model(name), shape)
