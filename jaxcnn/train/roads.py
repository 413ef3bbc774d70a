"""Input roads: where `Trainer.fit`'s batches come from. Both feed the one loop in loop.py.

A road yields an epoch as chunks `(first_step, last_step, payload)` (steps within the epoch,
`last_step` exclusive) and runs a payload with `run(state, payload) -> (state, metric_sums)`:

* `PipelineRoad`: host batches (tf.data or numpy, `jaxcnn.data.pipeline`), one step per chunk.
* `DeviceRoad` (jaxcnn.train.ondevice): the data on the device, `steps_per_call` steps per chunk
  in one `lax.scan`.

The loop does everything else (progress, metric sums, the NaN check, callbacks, validation), so
a new input source only has to yield chunks. `make_road` chooses the road once and builds the
augmentation that road needs (tf.data ops on the pipeline, JAX on the device) from one spec.

The pipelines carry example *indices* as labels; labels and sample weights are gathered by
index on the host, so any label layout (integers, one-hot rows, floats) and weights travel
with their images in the same order on every backend.
"""

from __future__ import annotations

import collections
from typing import Callable, Iterator

import jax
import numpy as np

from jaxcnn.data.pipeline import ArrayPipeline
from jaxcnn.data.records import is_source


def host_pipeline(trainer, x, n_or_y, batch_size: int, augment: Callable | None = None) -> ArrayPipeline:
    """An ArrayPipeline over `x` for the trainer's strategy (per-process slice of each global batch)."""
    trainer.strategy.check_batch_size(batch_size)
    local = trainer.strategy.local_batch_size(batch_size)
    backend = trainer.data_backend
    if backend == "auto" and augment is None and jax.default_backend() == "cpu":
        # Same batches; measured on a 2-core CPU, tf.data's threads slowed XLA's step ~1.1-2x.
        backend = "numpy"
    return ArrayPipeline(x, n_or_y, local, seed=trainer.seed, backend=backend, augment=augment,
                         process_index=jax.process_index(), process_count=jax.process_count())


def _labelled(batches, y: np.ndarray, weight: np.ndarray | None) -> Iterator[dict]:
    """Replace the index carried as `label` by the label (and `weight`) of that example."""
    for batch in batches:
        i = batch["label"]
        out = {"image": batch["image"], "label": y[i], "mask": batch["mask"]}
        if weight is not None:
            out["weight"] = weight[i]
        yield out


def eval_batches(trainer, x, y, batch_size: int, weight=None) -> Iterator[dict]:
    """Every example once (padded tail masked), labels and weights attached."""
    pipe = host_pipeline(trainer, x, np.arange(len(x), dtype=np.int32), batch_size)
    return _labelled(pipe.eval_batches(), np.asarray(y), weight)


class PipelineRoad:
    """Host batches, one train step per dispatch; callbacks see every step."""

    name = "pipeline"

    def __init__(self, trainer, x, y, batch_size: int, *, augment: Callable | None = None,
                 sample_weight: np.ndarray | None = None):
        self.trainer, self.y, self.weight = trainer, np.asarray(y), sample_weight
        self.pipe = host_pipeline(trainer, x, np.arange(len(x), dtype=np.int32), batch_size, augment)
        self.steps_per_epoch = self.pipe.steps_per_epoch()

    # Batches copied to the device ahead of the step that takes them (Flax's prefetch_to_device):
    # the step never waits on a host-to-device copy.
    device_prefetch = 2

    def train_chunks(self, epoch: int, start_step: int = 0):
        batches = _labelled(self.pipe.train_batches(epoch, start_step=start_step), self.y, self.weight)
        ready = collections.deque()
        for step, batch in enumerate(batches, start_step):
            ready.append((step, step + 1, self.trainer.strategy.put_batch(batch)))
            if len(ready) > self.device_prefetch:
                yield ready.popleft()
        yield from ready

    # Steps dispatched but not yet computed: each holds its input batch. Without a bound, a host
    # that makes batches faster than the device trains runs ahead by hundreds of steps and their
    # batches pile up in memory (measured: +1.7 GB over 2 GB of 128x128 records on a CPU).
    max_in_flight = 4

    def run(self, state, batch):
        out = self.trainer._train_step(state, batch)
        pending = self.__dict__.setdefault("_in_flight", collections.deque())
        pending.append(out[1])
        if len(pending) > self.max_in_flight:
            jax.block_until_ready(pending.popleft())
        return out


def _is_spec(augment) -> bool:
    """A recipe ("A", "B", "k=v,..."), or an AugmentConfig: built here for the chosen road."""
    from jaxcnn.data.augment import AugmentConfig

    return isinstance(augment, (str, AugmentConfig))


def make_road(trainer, x, y, batch_size: int, *, road: str = "auto", augment=None,
              device_augment: Callable | None = None, sample_weight=None, steps_per_call: int = 100):
    """Choose the road once (see `ondevice.choose_road`) and build it with its augmentation.

    `augment`: None, a spec (recipe name, "key=value,..." or AugmentConfig: tf.data ops on the
    pipeline, the same transforms in JAX on the device road) or a callable of tf ops
    (pipeline only). `device_augment`: a JAX callable `(images, key) -> images` (device only).
    """
    from jaxcnn.train import ondevice

    if augment in ("", "none"):
        augment = None
    spec = augment is not None and _is_spec(augment)
    if is_source(x) and road == "auto":
        road = "pipeline"  # a prepared split is read on the host, batch by batch
    chosen = ondevice.choose_road(road, nbytes=x.nbytes, strategy=trainer.strategy,
                                  has_host_augment=augment is not None and not spec,
                                  has_device_augment=device_augment is not None)
    if chosen == "device":
        if spec:
            from jaxcnn.data.augment import make_jax_augment

            device_augment = make_jax_augment(augment)
        return ondevice.DeviceRoad.for_trainer(trainer, x, y, batch_size, augment=device_augment,
                                               steps_per_call=steps_per_call, sample_weight=sample_weight)
    if spec:
        from jaxcnn.data.augment import make_tf_augment

        augment = make_tf_augment(augment)
    return PipelineRoad(trainer, x, y, batch_size, augment=augment, sample_weight=sample_weight)
