"""The on-device road: same results as the pipeline road, no retracing, road selection, bf16, cache."""

import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import get_model
from jaxcnn.train import Trainer, make_train_step, ondevice
from jaxcnn.train.feeds import device as feeds_device
from jaxcnn.train.precision import resolve_compute_dtype


@pytest.fixture(scope="module")
def mnist_slice(data_dir):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist", data_dir=data_dir)
    return ds.x_train[:320], ds.y_train[:320]  # uint8 images, 10 steps of 32


def _trainer(**kw):
    return Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", data_backend="numpy",
                   compute_dtype="f32", **kw)


def test_device_road_matches_pipeline_road(mnist_slice):
    x, y = mnist_slice
    a, b = _trainer(), _trainer()
    ha = a.fit(x, y, epochs=2, batch_size=32, verbose=0, road="pipeline")
    # 4 steps per call: chunks of 4, 4 and a tail of 2 per epoch, so the tail path is covered.
    hb = b.fit(x, y, epochs=2, batch_size=32, verbose=0, road="device", steps_per_call=4)
    assert a.road == "pipeline" and b.road == "device"
    assert int(a.state.step) == int(b.state.step) == 20
    chex.assert_trees_all_close(jax.device_get(a.state.params), jax.device_get(b.state.params),
                                rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-5)
    np.testing.assert_allclose(ha["accuracy"], hb["accuracy"])


def test_device_road_batches_are_the_pipelines(mnist_slice):
    from jaxcnn.data.pipeline import ArrayPipeline

    x, y = mnist_slice
    t = _trainer()
    road = ondevice.DeviceRoad(t, x, y, 32, steps_per_call=3)
    pipe = ArrayPipeline(x, y, 32, seed=t.seed, backend="numpy")
    for epoch in (0, 1):
        idx = road.epoch_indices(epoch)
        for rows, batch in zip(idx, pipe.train_batches(epoch)):
            np.testing.assert_array_equal(np.asarray(ondevice.normalize_images(jnp.asarray(x[rows]))), batch["image"])
            np.testing.assert_array_equal(y[rows], batch["label"])
    assert [len(b) for _, b in road.chunks(0)] == [3, 3, 3, 1]
    assert [lo for lo, _ in road.chunks(0, start_step=7)] == [7]


def test_chunk_step_does_not_retrace(mnist_slice, monkeypatch):
    x, y = mnist_slice
    make = ondevice.make_chunk_fn
    # 10 steps per epoch in chunks of 5: one shape; 3 epochs must trace the chunk once.
    monkeypatch.setattr(feeds_device, "make_chunk_fn", lambda *a, **k: chex.assert_max_traces(make(*a, **k), n=1))
    chex.clear_trace_counter()
    t = _trainer()
    t.fit(x, y, epochs=3, batch_size=32, verbose=0, road="device", steps_per_call=5)
    assert int(t.state.step) == 30
    chex.assert_tree_all_finite(t.state)


def test_device_augment_hook_is_applied_and_seeded(mnist_slice):
    x, y = mnist_slice
    seen = {}

    def augment(images, key):
        seen["dtype"], seen["shape"] = images.dtype, images.shape
        return jnp.clip(images + 0.1 * jax.random.normal(key, images.shape), 0.0, 1.0)

    runs = []
    for _ in range(2):
        t = _trainer()
        t.fit(x, y, epochs=1, batch_size=32, verbose=0, device_augment=augment, steps_per_call=5)
        assert t.road == "device"  # a JAX augmentation selects the device road even on CPU
        runs.append(jax.device_get(t.state.params))
    plain = _trainer()
    plain.fit(x, y, epochs=1, batch_size=32, verbose=0, road="device", steps_per_call=5)
    assert seen == {"dtype": jnp.float32, "shape": (32, 28, 28, 1)}
    chex.assert_trees_all_equal(runs[0], runs[1])
    diff = jax.tree.map(lambda p, q: float(np.abs(p - q).max()), runs[0], jax.device_get(plain.state.params))
    assert max(jax.tree.leaves(diff)) > 1e-4


def test_choose_road():
    strategy = _trainer().strategy
    assert ondevice.choose_road("auto", nbytes=10, strategy=strategy, platform="cpu") == "pipeline"
    assert ondevice.choose_road("device", nbytes=10, strategy=strategy) == "device"
    assert ondevice.choose_road("pipeline", nbytes=10, strategy=strategy) == "pipeline"
    with pytest.raises(ValueError, match="road must be one of"):
        ondevice.choose_road("fast", nbytes=10, strategy=strategy)
    with pytest.raises(ValueError, match="JAX augmentation"):
        ondevice.choose_road("device", nbytes=10, strategy=strategy, has_host_augment=True)
    with pytest.raises(ValueError, match="device road only"):
        ondevice.choose_road("pipeline", nbytes=10, strategy=strategy, has_device_augment=True)


@pytest.mark.parametrize("conv", ["xla", "im2col"])
def test_bf16_computes_in_bf16_with_float32_params_and_loss(monkeypatch, conv):
    monkeypatch.setenv("JAXCNN_CONV", conv)  # XLA's conv primitive, or im2col's matmuls
    assert resolve_compute_dtype("auto", platform="cpu") is None
    assert resolve_compute_dtype("auto", platform="gpu") == jnp.bfloat16
    assert resolve_compute_dtype("f32") is None and resolve_compute_dtype("bf16") == jnp.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_compute_dtype("int8")
    t = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", compute_dtype="bf16")
    step = make_train_step("sparse_categorical_crossentropy", compute_dtype=t.compute_dtype)
    batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.float32), "label": jnp.zeros((8,), jnp.int32)}
    jaxpr = jax.make_jaxpr(step)(t.state, batch)
    kinds = {}

    def walk(jx):  # every equation, nested jaxprs (pjit, custom_jvp, ...) included
        for eqn in jx.eqns:
            if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
                kinds.setdefault(eqn.primitive.name, set()).update(str(v.aval.dtype) for v in eqn.invars)
            for p in eqn.params.values():
                for sub in p if isinstance(p, (tuple, list)) else (p,):
                    sub = getattr(sub, "jaxpr", sub)
                    if hasattr(sub, "eqns"):
                        walk(sub)

    walk(jaxpr.jaxpr)
    assert kinds.get("conv_general_dilated") == ({"bfloat16"} if conv == "xla" else None), kinds
    assert kinds["dot_general"] == {"bfloat16"}, kinds
    # forward and backward convs and dots all run in bf16; params, optimizer state, loss in f32
    state, metrics = jax.jit(step)(t.state, batch)
    assert {p.dtype for p in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert {m.dtype for m in jax.tree.leaves(state.opt_state) if hasattr(m, "dtype") and m.ndim} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))


def test_compilation_cache_dir_and_off_switch(tmp_path):
    code = ("import jax; from jaxcnn.compile_cache import enable_compilation_cache as e; "
            "print(e()); print(jax.config.jax_compilation_cache_dir)")
    env = dict(os.environ, JAXCNN_COMPILATION_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path / "cache")] * 2 and (tmp_path / "cache").is_dir()
    env["JAXCNN_COMPILATION_CACHE"] = "off"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "None"
    env.pop("JAXCNN_COMPILATION_CACHE")
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == str(tmp_path / "xdg" / "jaxcnn" / "jax_cache")


def test_device_road_stops_on_nan_loss():
    from jaxcnn.train import NonFiniteLossError

    # Finite inputs (NaN inputs are refused before training); a learning rate of 1e30 makes the
    # loss non-finite after the first step.
    x = np.random.default_rng(0).random((128, 28, 28, 1), np.float32)
    t = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="sgd", learning_rate=1e30, data_backend="numpy",
                compute_dtype="f32")
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        t.fit(x, np.zeros(128, np.int32), epochs=1, batch_size=32, verbose=0, road="device", steps_per_call=2)


def test_step_interval_checkpoints_on_the_device_road(mnist_slice, tmp_path):
    """Callbacks run once per chunk there: checkpoints still follow the global step interval."""
    from jaxcnn.checkpoint import CheckpointCallback

    ckpt = CheckpointCallback(str(tmp_path / "ckpt"), every_n_steps=5, on_epoch_end=False, max_to_keep=10,
                              verbose=0)
    trainer = _trainer()
    # 10 steps per epoch in chunks of 4: chunk ends at global steps 4, 8, 10, 14, 18, 20.
    trainer.fit(*mnist_slice, epochs=2, batch_size=32, verbose=0, road="device", steps_per_call=4,
                callbacks=[ckpt])
    assert ckpt.manager.all_steps() == [8, 10, 18, 20]  # the first chunk end past each multiple of 5
