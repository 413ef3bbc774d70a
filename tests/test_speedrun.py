"""jaxcnn.speedrun: schedule, optimizer (against PyTorch's SGD), whitening, augmentation, TTA,
lookahead, and a tiny end-to-end run of both recipes' networks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import speedrun
from jaxcnn.models import get_model


def test_lr_factor_triangle():
    r = speedrun.Recipe(epochs=1, batch_size=8, lr=1.0, warmup=0.25, lr_start=0.2, lr_end=0.07)
    f = [float(speedrun.lr_factor(s, 100, r)) for s in (0, 25, 100)]
    np.testing.assert_allclose(f, [0.2, 1.0, 0.07], rtol=1e-6)


def test_param_groups():
    params = get_model("airbench", widths=(8, 8, 8)).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    groups = speedrun.param_groups(params)
    assert groups["whiten"] == {"kernel": "frozen", "bias": "whiten_bias"}
    assert groups["block1"]["norm1"]["bias"] == "shift" and groups["block1"]["conv1"]["kernel"] == "other"
    assert "scale" not in params["block1"]["norm1"]  # BatchNorm without the affine scale


def test_optimizer_matches_pytorch_sgd():
    """Two groups (BN shift at 64x lr), coupled decay, Nesterov, scheduled lr: same as torch.optim.SGD."""
    torch = pytest.importorskip("torch")
    r = speedrun.Recipe(epochs=1, batch_size=8, lr=0.01, momentum=0.85, decay=0.002, bias_lr_scale=64.0,
                        warmup=0.5, lr_start=0.2, lr_end=0.07)
    total = 6
    rng = np.random.default_rng(0)
    params = {"conv": {"kernel": rng.normal(size=(3, 4)).astype(np.float32)},
              "norm1": {"bias": rng.normal(size=(4,)).astype(np.float32)}}
    grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params) for _ in range(total)]
    tx = speedrun.make_optimizer(r, total, steps_per_epoch=total)
    p, state = jax.tree.map(jnp.asarray, params), None
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(g, state, p)
        p = jax.tree.map(lambda a, u: a + u, p, updates)
    tk, tb = torch.tensor(params["conv"]["kernel"], requires_grad=True), torch.tensor(params["norm1"]["bias"],
                                                                                      requires_grad=True)
    lr_b = r.lr * r.bias_lr_scale
    opt = torch.optim.SGD([dict(params=[tb], lr=lr_b, weight_decay=r.decay / lr_b),
                           dict(params=[tk], lr=r.lr, weight_decay=r.decay / r.lr)], momentum=r.momentum, nesterov=True)
    for step, g in enumerate(grads):
        f = float(speedrun.lr_factor(step, total, r))
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr_b * f, r.lr * f
        tk.grad, tb.grad = torch.tensor(g["conv"]["kernel"]), torch.tensor(g["norm1"]["bias"])
        opt.step()
    np.testing.assert_allclose(p["conv"]["kernel"], tk.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p["norm1"]["bias"], tb.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_whitening_kernel_whitens_patches():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(64, 16, 16, 3)).astype(np.float32)
    images = base + 0.8 * np.roll(base, 1, axis=2) + 0.5 * base[..., :1]  # correlated pixels and channels
    k = speedrun.whitening_kernel(jnp.asarray(images), 2, eps=0.0)
    assert k.shape == (2, 2, 3, 24)
    out = jax.lax.conv_general_dilated(jnp.asarray(images), k[..., :12], (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")).reshape(-1, 12)
    np.testing.assert_allclose(np.asarray(out.T @ out / out.shape[0]), np.eye(12), atol=2e-3)
    np.testing.assert_allclose(k[..., 12:], -k[..., :12])


def test_flip_translate_moves_whole_images():
    x = jnp.asarray(np.random.default_rng(0).random((16, 8, 8, 3)), jnp.float32)
    flipped = speedrun.flip_translate(0)(x, jax.random.PRNGKey(1))
    same = [bool(jnp.all(a == b)) or bool(jnp.all(a == b[:, ::-1])) for a, b in zip(flipped, x)]
    assert all(same) and 0 < sum(bool(jnp.all(a == b)) for a, b in zip(flipped, x)) < 16
    shifted = speedrun.flip_translate(2)(x, jax.random.PRNGKey(2))
    assert shifted.shape == x.shape
    pad = lambda v: jnp.pad(v, ((2, 2), (2, 2), (0, 0)), mode="reflect")  # noqa: E731
    for a, b in zip(shifted, x):  # each output: one 8x8 window of the padded image or its mirror
        windows = [p[i:i + 8, j:j + 8] for p in (pad(b), pad(b[:, ::-1])) for i in range(5) for j in range(5)]
        assert any(bool(jnp.array_equal(a, w)) for w in windows)


def test_tta_levels():
    x = jnp.asarray(np.random.default_rng(0).random((2, 6, 6, 1)), jnp.float32)
    fn = lambda v: v.reshape(len(v), -1)[:, :3] * jnp.arange(1.0, 4.0)  # noqa: E731  (not flip-invariant)
    np.testing.assert_allclose(speedrun.tta_logits(fn, x, 0), fn(x))
    np.testing.assert_allclose(speedrun.tta_logits(fn, x, 1), 0.5 * fn(x) + 0.5 * fn(x[:, :, ::-1]), rtol=1e-6)
    assert speedrun.tta_logits(fn, x, 2).shape == (2, 3)


def test_lookahead_ends_on_the_average():
    r = speedrun.Recipe(epochs=1, batch_size=8, lr=0.1, lookahead=True)
    model = get_model("mnist_fast", widths=(4, 4, 4))
    state = speedrun.init_state(model, (28, 28, 1), r, total_steps=5, steps_per_epoch=5)
    step = jax.jit(speedrun.make_train_step(r, total_steps=5))
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = {"image": jnp.asarray(rng.random((8, 28, 28, 1)), jnp.float32),
                 "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
        state, metrics = step(state, batch)
        assert int(metrics["count"]) == 8
    assert int(state.step) == 5
    jax.tree.map(np.testing.assert_array_equal, state.ema["params"], state.params)
    # the average moved away from the start (step 5: pulled with weight 1 - 0.95^5)
    start = speedrun.init_state(model, (28, 28, 1), r, 5, 5).params
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(state.params)))


@pytest.mark.parametrize("name,shape,recipe", [
    ("mnist_fast", (28, 28, 1), dataclasses.replace(speedrun.MNIST_FAST, batch_size=32, epochs=2)),
    ("airbench", (32, 32, 3), dataclasses.replace(speedrun.CIFAR10_FAST, batch_size=32, epochs=1.5, eval_batch=24)),
])
def test_train_tiny(name, shape, recipe):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, *shape), np.uint8)
    y = rng.integers(0, 10, 96).astype(np.int32)
    kwargs = {"widths": (8, 8, 8)} if name == "airbench" else {}
    state, h = speedrun.train(get_model(name, **kwargs), x, y, x[:50], y[:50], recipe, precision="f32")
    assert len(h["val_accuracy"]) == 2 and h["total_steps"] == int(np.ceil(3 * recipe.epochs))
    assert all(round(a * 50) == a * 50 for a in h["val_accuracy"])  # integer counts of 50
    assert int(state.step) == h["total_steps"]
    assert h["needed_correct"] == speedrun.required_correct(recipe.target, 50)
    if recipe.tta:  # the final TTA scoring counts as training time, as airbench times it
        assert h["train_seconds"][-1] > h["train_seconds"][-2] + h["seconds"][-1]
    if name == "airbench":  # the whitening kernel stays frozen at its data-fitted value
        fresh = speedrun.init_state(get_model(name, **kwargs), shape, recipe, 4, 3, whiten_images=x[:5000])
        np.testing.assert_array_equal(state.params["whiten"]["kernel"], fresh.params["whiten"]["kernel"])


def test_fit_on_a_built_trainer_matches_train():
    """The experiment's path (a Trainer built from its config, then the recipe through
    Trainer.fit) trains exactly what `train` trains, and leaves the trainer on the device road."""
    from jaxcnn.train import Trainer

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 28, 28, 1), np.uint8)
    y = rng.integers(0, 10, 96).astype(np.int32)
    recipe = dataclasses.replace(speedrun.MNIST_FAST, batch_size=32, epochs=1.5)
    model = get_model("mnist_fast", widths=(4, 4, 4))
    _, h = speedrun.train(model, x, y, x[:50], y[:50], recipe, precision="f32")
    trainer = Trainer(model, (28, 28, 1), optimizer="adam", compute_dtype="f32")
    history, record = speedrun.fit(trainer, x, y, x[:50], y[:50], recipe)
    assert history["loss"] == h["loss"] and history["val_accuracy"] == h["val_accuracy"]
    assert record["total_steps"] == int(trainer.state.step) == 5 and trainer.road == "device"
    assert "learning_rate" not in history and record["compile_seconds"] > 0
