"""TestScore: a held-out set scored after every epoch as integer correct counts, with
test-time augmentation (TTA) after the last one, the way speed records score.

The set lives on the device in fixed batches (the tail padded and masked); the scorers compile
ahead of time in `on_train_begin`. Scoring after an epoch is not training time, except the
final TTA scoring, which airbench counts: its seconds are handed to the record clock
(`take_timed_seconds`, see jaxcnn.train.callbacks.record_clock).
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.train.callbacks.base import Callback
from jaxcnn.train.feeds.device import normalize_images
from jaxcnn.train.precision import cast_floats


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


def batched_test_set(x, y, eval_batch: int):
    """(images [nb, eb, ...], labels [nb, eb] int32, mask [nb, eb]) on the device."""
    n = len(x)
    eb = min(eval_batch, n)
    nb = -(-n // eb)
    pad = nb * eb - n
    xs = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    ys = np.concatenate([y, np.zeros((pad,), y.dtype)]) if pad else y
    mask = np.arange(nb * eb) < n
    return (jax.device_put(xs.reshape(nb, eb, *x.shape[1:])), jax.device_put(ys.reshape(nb, eb).astype(np.int32)),
            jax.device_put(mask.reshape(nb, eb)))


class TestScore(Callback):
    """Puts `name` (default `val_accuracy`) = correct / n into each epoch's logs.

    `tta` (0 none, 1 mirror, 2 mirror + shifts) scores the last planned epoch
    (`trainer.fit_info["epochs"]`); those seconds count as training (`take_timed_seconds`).
    After training: `correct` (the last count), `n`, `compile_seconds`.
    """

    __test__ = False  # not a pytest class

    def __init__(self, x, y, batch_size: int = 1000, tta: int = 0, name: str = "val_accuracy"):
        self.x, self.y = np.asarray(x), np.asarray(y, np.int32)
        self.n, self.batch_size, self.tta, self.name = len(self.y), batch_size, tta, name
        self.correct: int | None = None
        self.compile_seconds = self.timed_seconds = 0.0

    def on_train_begin(self, trainer):
        self.data = batched_test_set(self.x, self.y, self.batch_size)
        t0 = time.perf_counter()
        dtype, state = trainer.compute_dtype, trainer.state
        self.plain = jax.jit(make_count_correct(dtype, 0)).lower(state, *self.data).compile()
        self.final = (jax.jit(make_count_correct(dtype, self.tta)).lower(state, *self.data).compile()
                      if self.tta else self.plain)
        self.compile_seconds = time.perf_counter() - t0

    def on_epoch_logs(self, trainer, epoch, logs):
        if self.tta and epoch == trainer.fit_info["epochs"] - 1:
            t = time.perf_counter()
            self.correct = int(self.final(trainer.state, *self.data))
            self.timed_seconds += time.perf_counter() - t
        else:
            self.correct = int(self.plain(trainer.state, *self.data))
        logs[self.name] = self.correct / self.n

    def take_timed_seconds(self) -> float:
        """Scoring seconds that count as training since the last call (the final TTA scoring)."""
        seconds, self.timed_seconds = self.timed_seconds, 0.0
        return seconds
