"""Record-style training runs ("speedruns"): the fewest seconds to a target test accuracy.

The recipes (`MNIST_FAST`, `CIFAR10_FAST`) follow what published speed records do: small
BatchNorm networks without the affine scale (jaxcnn.models.fast), large batches, SGD with
Nesterov momentum and a triangular per-step learning rate, label smoothing, the whole dataset on
the device (one dispatch per epoch through `jaxcnn.train.ondevice.make_chunk_fn`, augmentation on
the device), lookahead averaging of the weights, test-time augmentation, and for CIFAR-10
airbench94's frozen whitening first layer. The optimizer follows PyTorch's SGD exactly (coupled
weight decay, Nesterov as `g + m * buf`) so the PyTorch peer in benchmarks/ runs the same math.

    state, history = train(get_model("mnist_fast"), x, y, x_test, y_test, MNIST_FAST)

Compilation happens ahead of the clock (`jit(...).lower(...).compile()`); `history` gives per
epoch the training seconds so far and the test accuracy from integer correct counts, and
`train_seconds_to_target` the training time until the test accuracy first reached the target.
"""

from __future__ import annotations

import dataclasses
import math
import time
from fractions import Fraction
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.train.callbacks import ensure_log_handler, logger
from jaxcnn.train.ondevice import make_chunk_fn, normalize_images
from jaxcnn.train.precision import cast_floats, resolve_compute_dtype
from jaxcnn.train.state import TrainState, init_variables


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One speedrun's hyperparameters (learning rates as PyTorch's SGD would take them)."""

    epochs: float
    batch_size: int
    lr: float  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    decay: float = 0.0  # weight decay per step at the peak rate (decoupled: PyTorch's wd * lr)
    bias_lr_scale: float = 1.0  # learning-rate factor of the BatchNorm shifts (not of their decay)
    label_smoothing: float = 0.0
    loss_reduction: str = "mean"  # "sum" over the batch (airbench) or "mean"
    warmup: float = 0.2  # fraction of the steps rising from lr_start * lr to lr
    lr_start: float = 0.1  # fractions of the peak at the first and the last step
    lr_end: float = 0.0
    lookahead: bool = False  # airbench's lookahead: every 5 steps pull the weights to their EMA
    augment: str | None = None  # "flip_translate2": random mirror + shift by up to 2 px (reflect)
    tta: int = 0  # test-time augmentation of the final score: 0 none, 1 mirror, 2 mirror + shift
    whiten: bool = False  # set the model's frozen "whiten" conv from the training patches
    whiten_bias_epochs: float | None = None  # the whitening bias trains only this long
    target: float = 0.99
    eval_batch: int = 1000


MNIST_FAST = Recipe(epochs=3, batch_size=256, lr=0.2, momentum=0.9, label_smoothing=0.1, warmup=0.25,
                    lr_start=0.1, lr_end=0.0, target=0.99)
# airbench94's hyperparameters; its lr 11.5 and decay 0.0153 are per 1024 examples of a summed loss.
_KILOSTEP = 1024 * (1 + 1 / (1 - 0.85))
CIFAR10_FAST = Recipe(epochs=9.9, batch_size=1024, lr=11.5 / _KILOSTEP, momentum=0.85,
                      decay=0.0153 * 1024 / _KILOSTEP, bias_lr_scale=64.0, label_smoothing=0.2,
                      loss_reduction="sum", warmup=0.23, lr_start=0.2, lr_end=0.07, lookahead=True,
                      augment="flip_translate2", tta=2, whiten=True, whiten_bias_epochs=3, target=0.94,
                      eval_batch=500)
RECIPES = {"mnist_fast": MNIST_FAST, "cifar10_fast": CIFAR10_FAST}


def get_recipe(spec) -> Recipe:
    """A Recipe from a name in RECIPES, a Recipe, or a dict {"base": name, **field overrides}."""
    if isinstance(spec, Recipe):
        return spec
    if isinstance(spec, str):
        return RECIPES[spec]
    spec = dict(spec)
    return dataclasses.replace(RECIPES[spec.pop("base")], **spec)


def required_correct(target: float, n: int) -> int:
    """Correct answers needed for accuracy >= `target` on `n` examples: ceil(target * n), exactly."""
    return math.ceil(Fraction(str(target)) * n)


class SpeedState(TrainState):
    """TrainState plus the lookahead average of params and batch_stats (None without lookahead)."""

    ema: Any = None


def lr_factor(step, total_steps: int, recipe: Recipe):
    """Triangular schedule: lr_start -> 1 over `warmup` of the steps, then down to lr_end."""
    warm = max(1, int(total_steps * recipe.warmup))
    step = jnp.asarray(step, jnp.float32)
    up = recipe.lr_start + (1 - recipe.lr_start) * step / warm
    down = 1 + (recipe.lr_end - 1) * (step - warm) / max(1, total_steps - warm)
    return jnp.where(step < warm, up, down)


def param_groups(params) -> Any:
    """'frozen' (the whitening kernel), 'whiten_bias', 'shift' (BatchNorm shifts) or 'other'."""

    def label(path, _):
        names = [str(getattr(k, "key", k)) for k in path]
        if names[0] == "whiten":
            return "frozen" if names[-1] == "kernel" else "whiten_bias"
        return "shift" if any(n.startswith("norm") for n in names) else "other"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(recipe: Recipe, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
    """PyTorch SGD per group: grad + (decay / lr_group) * param, momentum, Nesterov; lr scheduled."""

    def sgd(scale, gate_steps=None):
        lr = recipe.lr * scale

        def schedule(step):
            factor = lr * lr_factor(step, total_steps, recipe)
            return factor if gate_steps is None else jnp.where(step < gate_steps, factor, 0.0)

        decay = optax.add_decayed_weights(recipe.decay / lr) if recipe.decay else optax.identity()
        return optax.chain(decay, optax.sgd(schedule, momentum=recipe.momentum or None, nesterov=recipe.nesterov))

    gate = None if recipe.whiten_bias_epochs is None else int(recipe.whiten_bias_epochs * steps_per_epoch)
    return optax.multi_transform({"other": sgd(1.0), "shift": sgd(recipe.bias_lr_scale),
                                  "whiten_bias": sgd(1.0, gate), "frozen": optax.set_to_zero()}, param_groups)


def whitening_kernel(images, kernel_size: int = 2, eps: float = 5e-4, mean=None, std=None) -> jnp.ndarray:
    """[k, k, C, 2 k k C] conv kernel: the training patches' covariance eigenvectors, largest first,
    scaled by 1/sqrt(eigenvalue + eps), and their negatives (airbench's whitening layer).

    `images`: float NHWC in [0, 1]; `mean`/`std` the normalization the model applies first.
    """
    x = jnp.asarray(images, jnp.float32)
    if mean is not None:
        x = (x - jnp.asarray(mean)) / jnp.asarray(std)
    n, h, w, c = x.shape
    k = kernel_size
    patches = jnp.stack([x[:, i:h - k + 1 + i, j:w - k + 1 + j, :] for i in range(k) for j in range(k)], axis=3)
    flat = patches.reshape(-1, k * k * c)  # (kh, kw, c) order, as a flax kernel's leading axes
    cov = flat.T @ flat / flat.shape[0]
    eigenvalues, eigenvectors = jnp.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    scaled = eigenvectors / jnp.sqrt(eigenvalues + eps)
    return jnp.concatenate([scaled, -scaled], axis=1).reshape(k, k, c, 2 * k * k * c)


def flip_translate(pad: int) -> Callable:
    """Device augmentation: random horizontal mirror, then a random shift of up to `pad` pixels
    (reflect padding, crop back), each drawn per image."""

    def augment(images, key):
        k_flip, k_shift = jax.random.split(key)
        b, h, w, c = images.shape
        flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
        images = jnp.where(flip, images[:, :, ::-1], images)
        if pad:
            padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
            offsets = jax.random.randint(k_shift, (b, 2), 0, 2 * pad + 1)
            images = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c)))(padded, offsets)
        return images

    return augment


AUGMENTS = {None: None, "flip_translate2": flip_translate(2), "flip": flip_translate(0)}


def tta_logits(logits_fn: Callable, images, level: int):
    """airbench's test-time augmentation: level 1 averages the mirror; level 2 also averages two
    1-pixel diagonal shifts (reflect padding), weighted 1/2 : 1/4 : 1/4."""

    def mirror(x):
        return 0.5 * logits_fn(x) + 0.5 * logits_fn(x[:, :, ::-1]) if level >= 1 else logits_fn(x)

    out = mirror(images)
    if level >= 2:
        h, w = images.shape[1:3]
        padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        shifted = 0.5 * (mirror(padded[:, :h, :w]) + mirror(padded[:, 2:, 2:]))
        out = 0.5 * out + 0.5 * shifted
    return out


def make_train_step(recipe: Recipe, total_steps: int, compute_dtype=None) -> Callable:
    """`step(state, {"image", "label"}) -> (state, {"loss", "correct", "count"} sums)`."""

    def step(state: SpeedState, batch):
        images, labels = batch["image"], batch["label"]
        if compute_dtype is not None:
            images = images.astype(compute_dtype)

        def loss_fn(params):
            if compute_dtype is not None:
                params = cast_floats(params, compute_dtype)
            logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                             train=True, mutable=["batch_stats"])
            logits = logits.astype(jnp.float32)
            targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), recipe.label_smoothing)
            per_example = optax.softmax_cross_entropy(logits, targets)
            loss = per_example.sum() if recipe.loss_reduction == "sum" else per_example.mean()
            return loss, (logits, per_example, updates["batch_stats"])

        grads, (logits, per_example, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads).replace(batch_stats=stats)
        if recipe.lookahead:
            state = _lookahead(state, total_steps)
        metrics = {"loss": per_example.sum(), "correct": jnp.sum(logits.argmax(-1) == labels).astype(jnp.float32),
                   "count": jnp.float32(labels.shape[0])}
        return state, metrics

    return step


def _lookahead(state: SpeedState, total_steps: int) -> SpeedState:
    """Every 5th step: ema <- ema + (1 - d) (w - ema), w <- ema, d = 0.95^5 (step/total)^3;
    at the last step w <- ema (airbench's LookaheadState, over params and BatchNorm statistics)."""
    s = state.step
    every = (s % 5) == 0
    decay = 0.95 ** 5 * (s.astype(jnp.float32) / total_steps) ** 3
    live = {"params": state.params, "batch_stats": state.batch_stats}
    ema = jax.tree.map(lambda e, w: jnp.where(every, e + (1 - decay) * (w - e), e), state.ema, live)
    take = every | (s >= total_steps)
    live = jax.tree.map(lambda e, w: jnp.where(take, e, w), ema, live)
    return state.replace(params=live["params"], batch_stats=live["batch_stats"], ema=ema)


def make_count_correct(compute_dtype=None, tta: int = 0) -> Callable:
    """`count(state, images[nb, eb, ...] uint8, labels[nb, eb], mask[nb, eb]) -> int32` correct."""

    def count(state, images, labels, mask):
        def logits_fn(x):
            params = state.params if compute_dtype is None else cast_floats(state.params, compute_dtype)
            x = x if compute_dtype is None else x.astype(compute_dtype)
            return state.apply_fn({"params": params, "batch_stats": state.batch_stats}, x,
                                  train=False).astype(jnp.float32)

        def one(args):
            x, y, m = args
            pred = tta_logits(logits_fn, normalize_images(x), tta).argmax(-1)
            return jnp.sum((pred == y) & m, dtype=jnp.int32)

        return jnp.sum(jax.lax.map(one, (images, labels, mask)))

    return count


def _batched_test_set(x, y, eval_batch: int):
    n = len(x)
    eb = min(eval_batch, n)
    nb = -(-n // eb)
    pad = nb * eb - n
    xs = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    ys = np.concatenate([y, np.zeros((pad,), y.dtype)]) if pad else y
    mask = np.arange(nb * eb) < n
    return (jax.device_put(xs.reshape(nb, eb, *x.shape[1:])), jax.device_put(ys.reshape(nb, eb).astype(np.int32)),
            jax.device_put(mask.reshape(nb, eb)))


def init_state(model, input_shape, recipe: Recipe, total_steps: int, steps_per_epoch: int, seed: int = 0,
               whiten_images=None) -> SpeedState:
    variables = jax.jit(lambda: init_variables(model, input_shape, seed))()
    params = variables["params"]
    if recipe.whiten:
        fit = jax.jit(lambda images: whitening_kernel(
            normalize_images(images), params["whiten"]["kernel"].shape[0], mean=getattr(model, "mean", None),
            std=getattr(model, "std", None)))
        kernel = fit(jnp.asarray(whiten_images))
        params = {**params, "whiten": {**params["whiten"], "kernel": kernel}}
    stats = variables.get("batch_stats", {})
    tx = make_optimizer(recipe, total_steps, steps_per_epoch)
    # its own buffers: the chunk donates the state, and one buffer cannot be donated twice
    ema = jax.tree.map(jnp.copy, {"params": params, "batch_stats": stats}) if recipe.lookahead else None
    return SpeedState.create(apply_fn=model.apply, params=params, tx=tx, batch_stats=stats,
                             rng=jax.random.PRNGKey(seed + 1), ema=ema)


def train(model, x, y, x_test, y_test, recipe: Recipe | str | dict, *, seed: int = 0, precision="auto",
          verbose: int = 0, stop_at_target: bool = False) -> tuple[SpeedState, dict]:
    """Train `model` on uint8 NHWC `x` by `recipe`, scoring the test set after each epoch (untimed).

    Returns the final state and a history: per epoch "seconds" (training, this epoch),
    "train_seconds" (cumulative; the last includes the final TTA scoring, as airbench times it),
    "loss"/"accuracy" (training, on augmented batches),
    "val_accuracy" (test, integer counts); plus "test_accuracy" (final, with TTA),
    "train_seconds_to_target" (None when not reached), "compile_seconds".
    """
    recipe = get_recipe(recipe)
    if verbose:
        ensure_log_handler()
    compute_dtype = resolve_compute_dtype(precision)
    x, y = np.asarray(x), np.asarray(y, np.int32)
    steps_per_epoch = len(x) // recipe.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(x)} examples are fewer than one batch of {recipe.batch_size}")
    total_steps = max(1, math.ceil(steps_per_epoch * recipe.epochs))
    t_setup = time.perf_counter()
    state = init_state(model, x.shape[1:], recipe, total_steps, steps_per_epoch, seed,
                       whiten_images=x[:5000] if recipe.whiten else None)
    jax.block_until_ready(state)
    # Fitting the whitening layer counts as training (as airbench counts it), compile included.
    setup_seconds = time.perf_counter() - t_setup if recipe.whiten else 0.0
    chunk = jax.jit(make_chunk_fn(make_train_step(recipe, total_steps, compute_dtype), AUGMENTS[recipe.augment]),
                    donate_argnums=(0,))
    data = jax.device_put({"image": x, "label": y})  # the on-device dataset make_chunk_fn gathers from
    xt, yt, mt = _batched_test_set(np.asarray(x_test), np.asarray(y_test, np.int32), recipe.eval_batch)
    n_test, need = len(y_test), required_correct(recipe.target, len(y_test))
    key = jax.random.PRNGKey(seed + 2)
    rng = np.random.default_rng(seed)
    epochs = math.ceil(total_steps / steps_per_epoch)
    plans = [(e, min(steps_per_epoch, total_steps - e * steps_per_epoch)) for e in range(epochs)]
    t0 = time.perf_counter()
    compiled = {}
    for steps in {s for _, s in plans}:
        idx = jax.ShapeDtypeStruct((steps, recipe.batch_size), jnp.int32)
        compiled[steps] = chunk.lower(state, data, idx, key).compile()
    count_plain = jax.jit(make_count_correct(compute_dtype, 0)).lower(state, xt, yt, mt).compile()
    count_final = (jax.jit(make_count_correct(compute_dtype, recipe.tta)).lower(state, xt, yt, mt).compile()
                   if recipe.tta else count_plain)
    compile_seconds = time.perf_counter() - t0
    hist = {"seconds": [], "train_seconds": [], "loss": [], "accuracy": [], "val_accuracy": []}
    trained, reached = setup_seconds, None
    for epoch, steps in plans:
        idx = rng.permutation(len(x))[: steps * recipe.batch_size].reshape(steps, recipe.batch_size).astype(np.int32)
        t = time.perf_counter()
        state, sums = compiled[steps](state, data, jax.device_put(idx), key)
        jax.block_until_ready(state)
        dt = time.perf_counter() - t
        trained += dt
        sums = jax.device_get(sums)
        correct = int(count_plain(state, xt, yt, mt)) if epoch < epochs - 1 or not recipe.tta else None
        hist["seconds"].append(dt)
        hist["loss"].append(float(sums["loss"] / sums["count"]))
        hist["accuracy"].append(float(sums["correct"] / sums["count"]))
        if correct is None:  # last epoch with TTA: the final score below, timed as airbench does
            t = time.perf_counter()
            correct = int(count_final(state, xt, yt, mt))
            trained += time.perf_counter() - t
        hist["train_seconds"].append(trained)
        hist["val_accuracy"].append(correct / n_test)
        if reached is None and correct >= need:
            reached = trained
        if verbose:
            logger.info(f"epoch {epoch + 1}/{epochs}: {dt:.2f}s, loss {hist['loss'][-1]:.4f}, "
                        f"test accuracy {correct / n_test:.4f} ({trained:.2f}s trained)")
        if stop_at_target and reached is not None:
            break
    hist.update({"test_accuracy": hist["val_accuracy"][-1], "train_seconds_to_target": reached,
                 "target": recipe.target, "needed_correct": need, "test_examples": n_test,
                 "compile_seconds": compile_seconds, "setup_seconds": setup_seconds,
                 "total_steps": total_steps, "recipe": dataclasses.asdict(recipe)})
    return state, hist
