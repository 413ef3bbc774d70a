"""Input feeds ("roads"): where `Trainer.fit`'s batches come from. Both feed the one loop in
jaxcnn.train.loop, side by side:

* `host.PipelineRoad`: host batches (tf.data or numpy, `jaxcnn.data.pipeline`), one step per chunk.
* `device.DeviceRoad`: the data on the device, `steps_per_call` steps per chunk in one `lax.scan`.

A feed yields an epoch as chunks `train_chunks(epoch, start_step, stop_step)` ->
`(first_step, last_step, payload)` (steps within the epoch, `last_step` exclusive) and runs a
payload with `run(state, payload) -> (state, metric_sums)`. The loop does everything else
(progress, metric sums, the NaN check, callbacks, validation), so a new input source only has
to yield chunks. Feeds see the trainer only through its public side: `strategy`, `seed`,
`data_backend`, `train_step`, `make_train_step()` and `feed` (the last fit's feed, reused).
`make_road` chooses the road once and builds the augmentation that road needs (tf.data ops on
the pipeline, JAX on the device) from one spec.
"""

from __future__ import annotations

from typing import Callable

from jaxcnn.data.augment import AugmentConfig, make_jax_augment, make_tf_augment
from jaxcnn.data.records import is_source
from jaxcnn.train.feeds.device import (ROADS, DeviceRoad, choose_road, device_memory_bytes, fits_on_device,
                                       make_chunk_fn, normalize_images)
from jaxcnn.train.feeds.host import PipelineRoad, eval_batches, host_pipeline

__all__ = [
    "DeviceRoad", "PipelineRoad", "ROADS", "choose_road", "device_memory_bytes", "eval_batches", "fits_on_device",
    "host_pipeline", "make_chunk_fn", "make_feed", "make_road", "normalize_images",
]


def _is_spec(augment) -> bool:
    """A recipe ("A", "B", "k=v,..."), or an AugmentConfig: built here for the chosen road."""
    return isinstance(augment, (str, AugmentConfig))


def make_road(trainer, x, y, batch_size: int, *, road: str = "auto", augment=None,
              device_augment: Callable | None = None, sample_weight=None, steps_per_call: int = 100):
    """Choose the road once (see `device.choose_road`) and build it with its augmentation.

    `augment`: None, a spec (recipe name, "key=value,..." or AugmentConfig: tf.data ops on the
    pipeline, the same transforms in JAX on the device road) or a callable of tf ops
    (pipeline only). `device_augment`: a JAX callable `(images, key) -> images` (device only).
    """
    if augment in ("", "none"):
        augment = None
    spec = augment is not None and _is_spec(augment)
    if is_source(x) and road == "auto":
        road = "pipeline"  # a prepared split is read on the host, batch by batch
    chosen = choose_road(road, nbytes=x.nbytes, strategy=trainer.strategy,
                         has_host_augment=augment is not None and not spec,
                         has_device_augment=device_augment is not None)
    if chosen == "device":
        if spec:
            device_augment = make_jax_augment(augment)
        return DeviceRoad.for_trainer(trainer, x, y, batch_size, augment=device_augment,
                                      steps_per_call=steps_per_call, sample_weight=sample_weight)
    if spec:
        augment = make_tf_augment(augment)
    return PipelineRoad(trainer, x, y, batch_size, augment=augment, sample_weight=sample_weight)


make_feed = make_road
