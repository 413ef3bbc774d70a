"""Magnitude pruning (jaxcnn.compress.prune): tfmot's schedules and masks, the optax transformation,
bitwise resume with the masks in the checkpoint, 1 vs 4 devices, and the `--prune` option."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.compress import (ConstantSparsity, PolynomialDecay, compute_masks, find_prune_state, magnitude_mask,
                             nm_mask, parse_prune_spec, prune, pruning_from_spec, sparsity_report, strip)
from jaxcnn.compress.spec import SpecError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(seed=0):
    rs = np.random.RandomState(seed)  # numpy: eager jax.random costs seconds of compiles
    n = lambda *shape: jnp.asarray(rs.randn(*shape).astype(np.float32))  # noqa: E731
    return {"conv": {"kernel": n(3, 3, 4, 8), "bias": jnp.ones(8)},
            "dense": {"kernel": n(32, 10), "bias": n(10)}}


def test_schedules_follow_tfmot_formulas():
    c = ConstantSparsity(0.8, begin_step=10, end_step=30, frequency=5)
    assert [bool(c(s)[0]) for s in (0, 9, 10, 12, 15, 30, 35)] == [False, False, True, False, True, True, False]
    assert float(c(10)[1]) == pytest.approx(0.8)
    assert bool(ConstantSparsity(0.5, 0, -1, 100)(10**6)[0])  # end_step -1: forever
    p = PolynomialDecay(0.1, 0.9, begin_step=100, end_step=300, power=3, frequency=50)
    for step in (0, 100, 150, 200, 300, 1000):
        frac = min(1.0, max(0.0, (step - 100) / 200))
        assert float(p(step)[1]) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - frac) ** 3, abs=1e-6)
    assert [bool(p(s)[0]) for s in (50, 100, 149, 150, 300, 350)] == [False, True, False, True, True, False]
    with pytest.raises(ValueError, match="sparsity"):
        ConstantSparsity(1.0)
    with pytest.raises(ValueError, match="end_step"):
        PolynomialDecay(0.0, 0.5, begin_step=10, end_step=10)


@pytest.mark.slow
def test_masks_layer_global_and_n_of_m():
    w = jnp.arange(1.0, 21.0).reshape(4, 5) * jnp.where(jnp.arange(20).reshape(4, 5) % 2, -1, 1)
    params = _params()
    kinds = {"conv": {"kernel": True, "bias": False}, "dense": {"kernel": True, "bias": False}}

    @jax.jit  # one compile for every mask (op by op costs seconds)
    def masks(w, params):
        return (magnitude_mask(w, 0.75), magnitude_mask(w, 0.0), compute_masks(params, kinds, 0.5),
                compute_masks(params, kinds, 0.5, scope="global"), nm_mask(params["dense"]["kernel"], 2, 4))

    m, m0, layer, glob, nm = jax.tree.map(np.asarray, masks(w, params))
    params, w = jax.tree.map(np.asarray, (params, w))
    assert m.sum() == 5 and (m == (np.abs(w) > 15)).all()  # keep round(20 * 0.25) = 5 largest |w|
    assert m0.sum() == 20
    assert layer["conv"]["kernel"].sum() == 144 and layer["dense"]["kernel"].sum() == 160
    assert layer["conv"]["bias"].shape == ()  # not pruned: one scalar True
    kept = np.concatenate([np.abs(params[n]["kernel"])[glob[n]["kernel"]] for n in ("conv", "dense")])
    dropped = np.concatenate([np.abs(params[n]["kernel"])[~glob[n]["kernel"]] for n in ("conv", "dense")])
    assert kept.size == 304 and kept.min() >= dropped.max()
    groups = nm.reshape(8, 4, 10)
    assert (groups.sum(axis=1) == 2).all()
    a = np.abs(params["dense"]["kernel"]).reshape(8, 4, 10)
    assert (np.where(groups, a, np.inf).min(axis=1) >= np.where(groups, -np.inf, a).max(axis=1)).all()
    assert nm_mask(np.ones((3, 3, 1, 4)), 2, 4).all()  # 9 rows: not a multiple of 4, stays dense


_STEPS = {}  # one compiled step per transformation


def _train(tx, params, steps, start=0, state=None):
    state = tx.init(params) if state is None else state
    if id(tx) not in _STEPS:
        def step(params, state, i):
            grads = jax.tree.map(lambda p: jnp.cos(p * (i + 1.0)), params)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        _STEPS[id(tx)] = (tx, jax.jit(step))
    step = _STEPS[id(tx)][1]
    for i in range(start, steps):
        params, state = step(params, state, i)
    return params, state


def test_transformation_prunes_on_schedule_to_exact_zeros():
    params = _params()
    tx = prune(optax.adam(1e-2), PolynomialDecay(0.0, 0.8, begin_step=2, end_step=8, frequency=2))
    out, state = _train(tx, params, 12)
    report = sparsity_report(out)
    assert report["kernel_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert float(jnp.abs(out["conv"]["bias"]).min()) != 0.0  # biases are not pruned
    masks = find_prune_state(state).masks
    for name in ("conv", "dense"):
        k, m = np.asarray(out[name]["kernel"]), np.asarray(masks[name]["kernel"])
        assert (k[~m] == 0).all() and (k[m] != 0).all()
    assert int(find_prune_state(state).count) == 12
    jax.tree.map(np.testing.assert_array_equal, strip(out, state), out)  # already zero where pruned


@pytest.mark.slow
def test_kept_weights_follow_the_inner_optimizer_and_wrapped_states_are_found():
    params = _params()
    tx = prune(optax.adam(1e-2), PolynomialDecay(0.0, 0.8, begin_step=2, end_step=8, frequency=2))
    # Before the first pruning turn, the inner optimizer's values (up to XLA fusing another program).
    plain, _ = _train(optax.adam(1e-2), params, 2)
    pruned, _ = _train(tx, params, 2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), pruned, plain)
    # Wrapped in another transformation, the state is still found and stripped.
    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
    out, cstate = _train(chained, params, 5)
    assert find_prune_state(cstate) is not None
    jax.tree.map(np.testing.assert_array_equal, strip(out, cstate), out)
    assert strip({"x": 1}, optax.adam(1e-3).init({"x": 1.0})) == {"x": 1}


@pytest.mark.slow
def test_resume_from_the_saved_optimizer_state_is_bitwise():
    """The masks and step count live in the optimizer state: a run restarted from a saved state
    (through Orbax, as checkpoints are written) continues exactly as the uninterrupted one."""
    import orbax.checkpoint as ocp
    import tempfile

    params = _params(1)
    tx = prune(optax.adam(1e-2), PolynomialDecay(0.0, 0.9, begin_step=0, end_step=9, frequency=3))
    want, want_state = _train(tx, params, 12)
    half, half_state = _train(tx, params, 5)
    with tempfile.TemporaryDirectory() as d, ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.join(d, "s"), {"params": half, "opt": half_state})
        ckpt.wait_until_finished()
        back = ckpt.restore(os.path.join(d, "s"), {"params": half, "opt": half_state})
    assert back["opt"].masks["dense"]["kernel"].dtype == jnp.bool_
    got, got_state = _train(tx, back["params"], 12, start=5, state=back["opt"])
    jax.tree.map(np.testing.assert_array_equal, got, want)
    jax.tree.map(np.testing.assert_array_equal, got_state, want_state)


def test_prune_spec_parsing_and_errors():
    s = parse_prune_spec("0.8,schedule=constant,begin=5,frequency=10,scope=global")
    assert (s["sparsity"], s["schedule"], s["begin"], s["frequency"], s["scope"]) == (0.8, "constant", 5, 10, "global")
    assert parse_prune_spec("nm=2:4")["nm"] == (2, 4)
    for bad, msg in [("1.5", r"\[0, 1\)"), ("0.5,speed=3", "unknown option 'speed'"), ("nm=4:2", "0 < N < M"),
                     ("0.5,schedule=cubic", "schedule must be"), ("scope=layer", "target sparsity")]:
        with pytest.raises(SpecError, match=msg):
            parse_prune_spec(bad)
    # "0.8" alone: polynomial up to 0.8 at two thirds of the run.
    tx = pruning_from_spec("0.8", total_steps=30)(optax.sgd(0.1))
    out, _ = _train(tx, _params(), 30)
    assert sparsity_report(out)["kernel_sparsity"] == pytest.approx(0.8, abs=0.01)


def test_prune_flag_is_checked_like_every_field():
    from jaxcnn.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "mnist_cnn", "--prune", "0.5,scope=row", "--epochs", "1"])
    assert e.value.code == 2


_DEVICES_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from jaxcnn import parallel
    parallel.use_fake_cpu_devices(int(sys.argv[1]))
    import jax
    from jaxcnn.compress import PolynomialDecay, prune, sparsity_report
    from jaxcnn.train import Trainer, get_optimizer
    from tests.helpers import Tiny
    x = np.random.RandomState(0).rand(128, 28, 28, 1).astype("float32")
    y = np.random.RandomState(1).randint(0, 10, 128)
    sched = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=2)
    t = Trainer(Tiny(), (28, 28, 1), optimizer=lambda lr: prune(get_optimizer("adam", lr), sched), seed=0)
    t.fit(x, y, epochs=2, batch_size=16, verbose=0, road="pipeline")
    params = jax.tree.map(np.asarray, jax.device_get(t.state.params))
    np.savez(sys.argv[2], **{"/".join(k): v for k, v in
             ((tuple(str(getattr(p, "key", p)) for p in path), leaf)
              for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0])})
    print(json.dumps({"devices": jax.device_count(), **sparsity_report(params)}))
""")


@pytest.mark.slow
def test_pruned_training_same_numbers_on_1_and_4_devices(tmp_path):
    """The same data-parallel run on 1 and 4 fake CPU devices: the same masks and weights."""
    results = {}
    for n in (1, 4):
        out = tmp_path / f"p{n}.npz"
        env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
        proc = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT, str(n), str(out)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        assert info["devices"] == n and info["kernel_sparsity"] == pytest.approx(0.8, abs=0.01)
        with np.load(out) as f:
            results[n] = {k: f[k] for k in f.files}
    for k, v in results[1].items():
        np.testing.assert_array_equal(results[4][k] == 0, v == 0, err_msg=f"{k}: masks differ")
        np.testing.assert_allclose(results[4][k], v, rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_schedules_and_masks_match_tfmot():
    """Keras' own tfmot: the same schedule values and the same magnitude masks."""
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    import tensorflow as tf

    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl

    ours = PolynomialDecay(0.2, 0.85, begin_step=10, end_step=110, power=3, frequency=7)
    theirs = tfmot.sparsity.keras.PolynomialDecay(0.2, 0.85, begin_step=10, end_step=110, power=3, frequency=7)
    for step in range(0, 130, 3):
        should, s = theirs(tf.constant(step, tf.int64))
        assert bool(ours(step)[0]) == bool(should.numpy()) and float(ours(step)[1]) == pytest.approx(float(s), abs=1e-6)
    w = np.random.RandomState(0).randn(50, 20).astype(np.float32)
    for sparsity in (0.3, 0.5, 0.9):
        impl = pruning_impl.Pruning(training_step_fn=lambda: 0, pruning_vars=[],
                                    pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(sparsity, 0),
                                    block_size=(1, 1), block_pooling_type="AVG")
        _, mask = impl._update_mask(tf.constant(w))
        np.testing.assert_array_equal(np.asarray(magnitude_mask(jnp.asarray(w), sparsity)), mask.numpy() > 0)


class _Stop(Exception):
    pass


class _KillAt:
    """Raises at the end of global step `step`, as a killed process would stop there."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, epoch, step):
        if trainer.global_step >= self.step:
            raise _Stop


@pytest.mark.slow
def test_trainer_resumed_from_a_checkpoint_mid_pruning_is_bitwise(tmp_path):
    """Trainer.fit with CheckpointCallback: stopped after step 7 (checkpoint at 6, mid-schedule),
    rerun with the same command, it ends with the uninterrupted run's params and masks, bitwise."""
    from jaxcnn.train import CheckpointCallback, Trainer, get_optimizer
    from tests.helpers import Tiny

    rs = np.random.RandomState(0)
    x, y = rs.rand(96, 28, 28, 1).astype("float32"), rs.randint(0, 10, 96)
    sched = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=2)

    def run(directory, extra=()):
        t = Trainer(Tiny(), (28, 28, 1), optimizer=lambda lr: prune(get_optimizer("adam", lr), sched), seed=0)
        ckpt = CheckpointCallback(str(directory), every_n_steps=3, verbose=False, best_metric=None,
                                  async_save=False)
        t.fit(x, y, epochs=3, batch_size=16, verbose=0, road="pipeline", callbacks=[ckpt, *extra])
        return t, ckpt

    want, _ = run(tmp_path / "reference")
    with pytest.raises(_Stop):
        run(tmp_path / "killed", [_KillAt(7)])
    got, ckpt = run(tmp_path / "killed")
    assert ckpt.resumed_from == 6
    state, ref = jax.device_get(got.state), jax.device_get(want.state)
    jax.tree.map(np.testing.assert_array_equal, state.params, ref.params)
    jax.tree.map(np.testing.assert_array_equal, state.opt_state, ref.opt_state)
    assert sparsity_report(state.params)["kernel_sparsity"] == pytest.approx(0.8, abs=0.01)
