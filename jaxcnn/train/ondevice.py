"""The on-device road: the dataset lives on the accelerator and several steps run per dispatch.

For datasets that fit in device memory (MNIST, CIFAR-10): the images go to the device once, as
uint8; each dispatch runs `steps_per_call` train steps in one compiled call (`lax.scan` over
the chunk's index rows), gathering, normalizing (and optionally augmenting) each batch on the
device. The train state is donated; metric sums stay on the device and are fetched once per log
interval. Data order is the pipeline's (`jaxcnn.data.pipeline.epoch_order`, computed on the host
and sent as an int32 index matrix, ~0.2 MB per MNIST epoch), so both roads feed the same batches
to the same train step and give the same parameters (within float tolerance) without
augmentation.

`Trainer.fit(..., road="auto" | "pipeline" | "device")` selects it; "auto" takes this road on
GPU/TPU when the data fits, and the per-step pipeline on CPU. Callbacks see this road once per
chunk (step counts jump by `steps_per_call`), the pipeline once per step.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.data.pipeline import epoch_order

ROADS = ("auto", "pipeline", "device")


def normalize_images(images):
    """uint8 [0, 255] -> float32 [0, 1] exactly as the pipelines do; other dtypes -> float32."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
    return images.astype(jnp.float32)


def device_memory_bytes(device=None) -> int | None:
    """The device's memory limit in bytes, when the backend reports one (GPU/TPU do)."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001  (CPU and some plugins do not implement it)
        stats = {}
    return stats.get("bytes_limit")


def fits_on_device(nbytes: int, device=None, fraction: float = 0.25) -> bool:
    """Whether a dataset of `nbytes` fits in `fraction` of the device memory (unknown: no)."""
    limit = device_memory_bytes(device)
    return limit is not None and nbytes <= fraction * limit


def choose_road(road: str, *, nbytes: int, strategy, has_host_augment: bool = False,
                has_device_augment: bool = False, platform: str | None = None) -> str:
    """Resolve `road` ('auto' | 'pipeline' | 'device') to 'pipeline' or 'device'.

    'auto' takes the device road on GPU/TPU when the data fits in a quarter of the device
    memory, one process drives the devices, the strategy is the jit one and no tf.data
    augmentation was given; otherwise the pipeline. On CPU 'auto' is the pipeline: with XLA's
    convolution ops a scanned chunk ran ~10x slower than per-step dispatch; with im2col convs
    (the CPU default) the device road ran N1 10-20% faster, but its callbacks (checkpoints)
    run per chunk, so it is opt-in there (benchmarks/SPEED.md).
    """
    if road not in ROADS:
        raise ValueError(f"road must be one of {ROADS}, got {road!r}")
    supported = getattr(strategy, "name", None) == "jit" and jax.process_count() == 1
    if road == "device":
        if not supported:
            raise ValueError("road='device' needs the default 'jit' strategy and a single process; "
                             "use road='pipeline'")
        if has_host_augment:
            raise ValueError("road='device' takes a JAX augmentation (device_augment=...), not the "
                             "tf.data one (augment=...)")
        return "device"
    if road == "pipeline":
        if has_device_augment:
            raise ValueError("device_augment runs on the device road only; the pipeline takes augment=...")
        return "pipeline"
    if has_device_augment:  # only the device road can apply it
        return choose_road("device", nbytes=nbytes, strategy=strategy, has_host_augment=has_host_augment)
    platform = platform or jax.default_backend()
    if platform == "cpu" or not supported or has_host_augment:
        return "pipeline"
    return "device" if fits_on_device(nbytes) else "pipeline"


def make_chunk_fn(train_step: Callable, augment: Callable | None = None, unroll: int | bool = 1) -> Callable:
    """`chunk(state, x_all, y_all, idx[K, B], key) -> (state, metric_sums)`, un-jitted.

    Runs `train_step` once per row of `idx` inside one `lax.scan`: gather the rows of the
    on-device dataset, normalize to float32 [0, 1], optionally `augment(images, key_s)` with
    `key_s = fold_in(key, state.step)` (reproducible and resumable), then step.
    """

    def chunk(state, x_all, y_all, idx, key):
        def body(state, rows):
            images = normalize_images(jnp.take(x_all, rows, axis=0))
            if augment is not None:
                images = augment(images, jax.random.fold_in(key, state.step))
            state, metrics = train_step(state, {"image": images, "label": jnp.take(y_all, rows, axis=0)})
            return state, metrics

        state, metrics = jax.lax.scan(body, state, idx, unroll=unroll)
        return state, jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)

    return chunk


class DeviceRoad:
    """Runs `Trainer.fit`'s epochs with the data on the device, `steps_per_call` steps per dispatch.

    Built by `Trainer.fit(road="device")`; usable alone with a Trainer:
    `DeviceRoad(trainer, x, y, batch_size).train_epoch(epoch)`.
    """

    def __init__(self, trainer, x, y, batch_size: int, *, augment: Callable | None = None,
                 steps_per_call: int = 100, unroll: int | bool = 1):
        from jaxcnn.train.step import make_train_step

        strategy = trainer.strategy
        strategy.check_batch_size(batch_size)
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
        self.trainer, self.batch_size, self.steps_per_call = trainer, batch_size, steps_per_call
        self.n = len(x)
        self.steps = len(x) // batch_size
        if self.steps == 0:
            raise ValueError(f"{len(x)} examples are fewer than one batch of {batch_size}: lower the batch size")
        x = np.asarray(x)
        if x.dtype != np.uint8:
            x = x.astype(np.float32, copy=False)
        self.x = jax.device_put(x, strategy.replicated)
        self.y = jax.device_put(np.asarray(y, np.int32), strategy.replicated)
        from jax.sharding import NamedSharding, PartitionSpec as P

        self._idx_sharding = NamedSharding(strategy.mesh, P(None, "data"))
        self._key = jax.random.PRNGKey(trainer.seed + 2)
        step = make_train_step(trainer.loss_name, compute_dtype=trainer.compute_dtype)
        chunk = make_chunk_fn(step, augment, unroll)
        # The same function for every full chunk and for the shorter tail chunk of an epoch:
        # two shapes, two compilations, then no retracing across chunks and epochs.
        self.chunk = jax.jit(chunk, donate_argnums=(0,),
                             out_shardings=(strategy.replicated, strategy.replicated))

    @classmethod
    def for_trainer(cls, trainer, x, y, batch_size: int, **kwargs) -> "DeviceRoad":
        """The trainer's road for these very arrays and settings, built (and compiled) once.

        Repeated `fit` calls on the same arrays (Keras style, one epoch at a time) reuse the
        on-device copy and the compiled chunk instead of uploading and compiling again.
        """
        key = (batch_size, tuple(sorted(kwargs.items(), key=lambda kv: kv[0])))
        cached = getattr(trainer, "_device_road", None)
        if cached is not None and cached._host[0] is x and cached._host[1] is y and cached._key_args == key:
            return cached
        road = cls(trainer, x, y, batch_size, **kwargs)
        road._host, road._key_args = (x, y), key
        trainer._device_road = road
        return road

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """[steps, batch] example indices of `epoch`, exactly the pipeline road's batches."""
        order = epoch_order(self.n, self.trainer.seed, epoch)
        return order[: self.steps * self.batch_size].reshape(self.steps, self.batch_size).astype(np.int32)

    def chunks(self, epoch: int, start_step: int = 0):
        """(first step, index block) per dispatch; full chunks of `steps_per_call`, then the tail."""
        idx = self.epoch_indices(epoch)
        for lo in range(start_step, self.steps, self.steps_per_call):
            yield lo, idx[lo: lo + self.steps_per_call]

    def run_chunk(self, idx_block: np.ndarray, epoch: int):
        t = self.trainer
        key = jax.random.fold_in(self._key, epoch)
        t.state, sums = self.chunk(t.state, self.x, self.y, jax.device_put(idx_block, self._idx_sharding), key)
        return sums

    def train_epoch(self, pipe=None, epoch: int = 0, epochs: int = 1, start: int = 0, steps: int | None = None,
                    log_every: int | None = None, verbose: int = 0, callbacks=()) -> dict:
        """One epoch (from `start`); same signature and result as `Trainer._train_epoch`.

        Metric sums are added on the device and fetched once per `log_every` steps (rounded up
        to whole chunks) when `verbose`, else once at the epoch's end. `on_step_end` callbacks
        run after each chunk, with the step reached.
        """
        from jaxcnn.train.loop import NonFiniteLossError, _means

        from jaxcnn._compat import tqdm

        steps = self.steps
        log_every = log_every or max(1, min(100, steps // 20))
        bar = None
        if verbose:
            bar = tqdm(total=steps, initial=start, desc=f"Epoch {epoch + 1}/{epochs}", unit="step",
                       leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        # Chunk sums go where the pipeline road puts its step sums (`Trainer.epoch_metric_sums`
        # fetches them), so checkpoints taken mid-epoch and resumed epochs count them alike.
        t = self.trainer
        since_log, step = 0, start
        for lo, block in self.chunks(epoch, start):
            t._pending.append(self.run_chunk(block, epoch))
            step = lo + len(block)
            since_log += len(block)
            for cb in callbacks:
                cb.on_step_end(self.trainer, epoch, step)
            # Without a progress bar, fetch (and check for NaN) only at the epoch's end: each
            # fetch waits for the device and leaves it idle until the next dispatch.
            if (verbose and since_log >= log_every) or step == steps:
                means = _means(t.epoch_metric_sums())
                if not math.isfinite(means["loss"]):
                    if bar is not None:
                        bar.close()
                    raise NonFiniteLossError(
                        f"loss became {means['loss']} in epoch {epoch + 1} by step {step}: training stopped. "
                        "Lower the learning rate, check the inputs for NaN/inf and the labels' range.")
                if bar is not None:
                    bar.set_postfix(loss=f"{means['loss']:.4f}", accuracy=f"{means['accuracy']:.4f}", refresh=False)
                    bar.update(step - bar.n)
                since_log = 0
            if self.trainer.stop_training:
                break
        if bar is not None:
            bar.close()
        totals = t.epoch_metric_sums()
        return _means(totals) if totals is not None else {"loss": float("nan"), "accuracy": float("nan")}


def time_roads(trainer_factory, x, y, batch_size: int, steps: int = 200, steps_per_call: int = 50) -> dict:
    """Steps/second of the per-step road (data already on the device) and of the device road.

    A small measurement helper for choosing a road on a new backend; compile time excluded.
    """
    out = {}
    t = trainer_factory()
    road = DeviceRoad(t, x, y, batch_size, steps_per_call=steps_per_call)
    idx = road.epoch_indices(0)[:steps]
    road.run_chunk(idx[:steps_per_call], 0)
    jax.block_until_ready(t.state)
    t0 = time.perf_counter()
    for lo in range(0, steps - steps % steps_per_call, steps_per_call):
        road.run_chunk(idx[lo: lo + steps_per_call], 0)
    jax.block_until_ready(t.state)
    out["device"] = (steps - steps % steps_per_call) / (time.perf_counter() - t0)
    t = trainer_factory()
    batches = [t.strategy.put_batch({"image": normalize_images(road.x[r]), "label": road.y[r]}) for r in idx]
    t.state, _ = t._train_step(t.state, batches[0])
    jax.block_until_ready(t.state)
    t0 = time.perf_counter()
    for b in batches:
        t.state, _ = t._train_step(t.state, b)
    jax.block_until_ready(t.state)
    out["pipeline"] = steps / (time.perf_counter() - t0)
    return out
