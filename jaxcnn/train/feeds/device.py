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
GPU/TPU when the data fits, and the per-step pipeline on CPU. Both roads run through the same
loop (jaxcnn.train.loop); callbacks see this road once per chunk (step counts jump by
`steps_per_call`), the pipeline once per step. A recipe may give its own data order and
augmentation key (jaxcnn.train.recipes) and compile every chunk shape ahead of the clock
(`compile_ahead`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxcnn.data.pipeline import epoch_order

ROADS = ("auto", "pipeline", "device")


def normalize_images(images, scale_uint8: bool = True):
    """uint8 [0, 255] -> float32 [0, 1] exactly as the pipelines do (only cast without
    `scale_uint8`: a model that scales its own pixels); other dtypes -> float32."""
    if images.dtype == jnp.uint8 and scale_uint8:
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


def make_chunk_fn(train_step: Callable, augment: Callable | None = None, unroll: int | bool = 1,
                  scale_uint8: bool = True) -> Callable:
    """`chunk(state, data, idx[K, B], key) -> (state, metric_sums)`, un-jitted.

    `data` holds the on-device dataset: `image`, `label` and optionally `weight` (per example).
    Runs `train_step` once per row of `idx` inside one `lax.scan`: gather the rows, normalize the
    images to float32 [0, 1], optionally `augment(images, key_s)` with
    `key_s = fold_in(key, state.step)` (reproducible and resumable), then step.
    """

    def chunk(state, data, idx, key):
        def body(state, rows):
            images = normalize_images(jnp.take(data["image"], rows, axis=0), scale_uint8)
            if augment is not None:
                images = augment(images, jax.random.fold_in(key, state.step))
            batch = {k: jnp.take(v, rows, axis=0) for k, v in data.items() if k != "image"}
            return train_step(state, {"image": images, **batch})

        state, metrics = jax.lax.scan(body, state, idx, unroll=unroll)
        return state, jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)

    return chunk


class DeviceRoad:
    """`Trainer.fit`'s road with the data on the device, `steps_per_call` steps per dispatch.

    Built by `Trainer.fit(road="device")` (see jaxcnn.train.feeds.make_road), or by hand and
    given as `fit(road=feed)`; it yields chunks `(first_step, last_step, payload)` of an epoch
    and runs them, like the pipeline road. It talks to the trainer through `trainer.strategy`,
    `trainer.seed` and `trainer.make_train_step()` only.

    `order(epoch)`: the epoch's permutation of the examples (default: the pipeline's,
    `epoch_order`); `key_per_epoch`: the augmentation key folds in the epoch (default) or is
    the run's one key (steps still fold in `state.step`).
    """

    name = "device"

    def __init__(self, trainer, x, y, batch_size: int, *, augment: Callable | None = None,
                 steps_per_call: int = 100, unroll: int | bool = 1, sample_weight=None,
                 order: Callable[[int], np.ndarray] | None = None, key_per_epoch: bool = True):
        strategy = trainer.strategy
        strategy.check_batch_size(batch_size)
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
        self.trainer, self.batch_size, self.steps_per_call = trainer, batch_size, steps_per_call
        self.n = len(x)
        self.steps = self.steps_per_epoch = len(x) // batch_size
        if self.steps == 0:
            raise ValueError(f"{len(x)} examples are fewer than one batch of {batch_size}: lower the batch size")
        x = np.asarray(x)
        if x.dtype != np.uint8:
            x = x.astype(np.float32, copy=False)
        y = np.asarray(y)
        data = {"image": x, "label": y if y.dtype.kind == "f" else y.astype(np.int32)}
        if sample_weight is not None:
            data["weight"] = np.asarray(sample_weight, np.float32)
        self.data = jax.device_put(data, strategy.replicated)
        self._idx_sharding = NamedSharding(strategy.mesh, P(None, "data"))
        self._key = jax.random.PRNGKey(trainer.seed + 2)
        self.order = order or (lambda epoch: epoch_order(self.n, trainer.seed, epoch))
        self.key_per_epoch = key_per_epoch
        self._indices: dict[int, np.ndarray] = {}  # the current and the next epoch's
        self._ahead = None  # host work to do once the next chunk is dispatched
        self._compiled: dict = {}  # chunk length -> executable compiled ahead of time
        chunk = make_chunk_fn(trainer.make_train_step(), augment, unroll,
                              getattr(trainer, "input_scaling", "divide_by_255") == "divide_by_255")
        # The same function for every full chunk and for the shorter tail chunk of an epoch:
        # two shapes, two compilations, then no retracing across chunks and epochs.
        self.chunk = jax.jit(chunk, donate_argnums=(0,),
                             out_shardings=(strategy.replicated, strategy.replicated))

    @classmethod
    def for_trainer(cls, trainer, x, y, batch_size: int, **kwargs) -> "DeviceRoad":
        """The trainer's road for these very arrays and settings, built (and compiled) once.

        Repeated `fit` calls on the same arrays (Keras style, one epoch at a time) reuse the
        on-device copy and the compiled chunk (the trainer's last `feed`) instead of uploading
        and compiling again.
        """
        key = (batch_size, tuple((k, id(v) if isinstance(v, np.ndarray) else v)
                                 for k, v in sorted(kwargs.items(), key=lambda kv: kv[0])))
        cached = trainer.feed
        if (isinstance(cached, cls) and getattr(cached, "_host", None) is not None and cached._host[0] is x
                and cached._host[1] is y and cached._key_args == key):
            return cached
        road = cls(trainer, x, y, batch_size, **kwargs)
        road._host, road._key_args = (x, y), key
        return road

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """[steps, batch] example indices of `epoch` (by default exactly the pipeline road's batches)."""
        if epoch not in self._indices:
            order = self.order(epoch)
            idx = order[: self.steps * self.batch_size].reshape(self.steps, self.batch_size).astype(np.int32)
            self._indices = {e: v for e, v in self._indices.items() if e == epoch - 1}
            self._indices[epoch] = idx
        return self._indices[epoch]

    def chunks(self, epoch: int, start_step: int = 0, stop_step: int | None = None):
        """(first step, index block) per dispatch; full chunks of `steps_per_call`, then the tail."""
        idx = self.epoch_indices(epoch)
        stop = self.steps if stop_step is None else stop_step
        for lo in range(start_step, stop, self.steps_per_call):
            yield lo, idx[lo: min(lo + self.steps_per_call, stop)]

    def epoch_key(self, epoch: int):
        return jax.random.fold_in(self._key, epoch) if self.key_per_epoch else self._key

    def train_chunks(self, epoch: int, start_step: int = 0, stop_step: int | None = None):
        """`(first_step, last_step, payload)` per dispatch, the loop's view of an epoch."""
        key = self.epoch_key(epoch)
        stop = self.steps if stop_step is None else stop_step
        for lo, block in self.chunks(epoch, start_step, stop):
            if lo + len(block) >= stop:  # the epoch's last chunk: draw the next order while it runs
                self._ahead = lambda: self.epoch_indices(epoch + 1)
            yield lo, lo + len(block), (jax.device_put(block, self._idx_sharding), key)

    def run(self, state, payload):
        idx, key = payload
        out = self._compiled.get(idx.shape[0], self.chunk)(state, self.data, idx, key)
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead()
        return out

    def compile_ahead(self, state, total_steps: int) -> None:
        """Compile every chunk length a run of `total_steps` steps from `state.step` will dispatch
        (ahead of the clock), and draw the first epoch's order."""
        step = int(state.step)
        lengths, epoch = set(), step // self.steps
        for e in range(epoch, -(-total_steps // self.steps)):
            stop = min(self.steps, total_steps - e * self.steps)
            for lo in range(step - e * self.steps if e == epoch else 0, stop, self.steps_per_call):
                lengths.add(min(self.steps_per_call, stop - lo))
        for k in sorted(lengths - set(self._compiled)):
            idx = jax.ShapeDtypeStruct((k, self.batch_size), jnp.int32, sharding=self._idx_sharding)
            self._compiled[k] = self.chunk.lower(state, self.data, idx, self.epoch_key(epoch)).compile()
        self.epoch_indices(epoch)

    def run_chunk(self, idx_block: np.ndarray, epoch: int):
        """Run the steps of one index block of `epoch` on the trainer's state (benchmarks)."""
        t = self.trainer
        t.state, sums = self.run(t.state, (jax.device_put(idx_block, self._idx_sharding), self.epoch_key(epoch)))
        return sums
