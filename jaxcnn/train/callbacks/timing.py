"""StepTiming: every run's step time, input wait and images/s, per epoch (Flax/CLU-style).

`Trainer.fit` adds one itself. The loop wraps its feed in `timed_chunks`, which adds the seconds
spent getting each next batch (the host pipeline's work and the copy to the device: time in which
the device may idle) to `trainer.input_wait_seconds`. Per epoch, over the training steps only
(validation excluded; the first epoch includes compilation):

    step_time            seconds per step (a device-road chunk counts as its steps)
    input_wait_fraction  the share of the epoch's training seconds spent waiting for input
    images_per_second    training images per second

They are wall-clock numbers, so they stay out of the History (whose metrics must match bitwise
between a resumed and an uninterrupted run): the callback keeps them in `trainer.timing`
(metric -> list per epoch, plus `epoch`), the TensorBoard callback writes them as `epoch_*`
scalars and a run folder holds them in `timing.json`. A run whose input is the bottleneck
(wait fraction above `bottleneck`) says so once in the log; the epoch lines show them
(`Epoch 2/5 - 3.1s - 13.2 ms/step, 2424 img/s, input wait 3% - loss: ...`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from jaxcnn.train.callbacks.base import Callback
from jaxcnn.train.callbacks.progress import logger

TIMING_KEYS = ("step_time", "input_wait_fraction", "images_per_second")


def timed_chunks(chunks: Iterable, trainer) -> Iterator:
    """`chunks` (`(first, last, payload)`), adding the seconds each `next()` takes to
    `trainer.input_wait_seconds`; around each chunk's turn in the loop, `trainer.step_profiler`
    (a ProfileSteps, when one traces) marks the steps."""
    it = iter(chunks)
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        trainer.input_wait_seconds += time.perf_counter() - t0
        if item is None:
            return
        profiler = getattr(trainer, "step_profiler", None)
        marker = profiler.begin(trainer.global_step, item[1] - item[0]) if profiler is not None else None
        try:
            yield item
        finally:
            if profiler is not None:
                profiler.end(marker, trainer.global_step)


class StepTiming(Callback):
    """Per-epoch `step_time`, `input_wait_fraction`, `images_per_second` into `trainer.timing`.

    `bottleneck`: the wait fraction above which the log says, once per run, that the input
    (not the step) limits the speed.
    """

    def __init__(self, bottleneck: float = 0.3):
        self.bottleneck = bottleneck
        self.timing: dict[str, list] = {}
        self.warned = False

    def on_train_begin(self, trainer):
        self.timing = {"epoch": [], "steps": [], **{k: [] for k in TIMING_KEYS}}
        trainer.timing = self.timing
        trainer.input_wait_seconds = 0.0
        self.warned = False

    def on_epoch_begin(self, trainer, epoch):
        self._step0, self._wait0 = trainer.global_step, trainer.input_wait_seconds

    def on_epoch_logs(self, trainer, epoch, logs):
        steps = trainer.global_step - self._step0
        seconds = logs.get("seconds")
        if not steps or not seconds:
            return
        wait = trainer.input_wait_seconds - self._wait0
        batch = trainer.fit_info.get("batch_size", 0)
        row = {"epoch": epoch, "steps": steps, "step_time": seconds / steps,
               "input_wait_fraction": min(1.0, wait / seconds), "images_per_second": steps * batch / seconds}
        for k, v in row.items():
            self.timing[k].append(v)

    def on_epoch_end(self, trainer, epoch, logs):  # after the epoch line (which shows the row)
        if not self.timing.get("epoch") or self.timing["epoch"][-1] != epoch:
            return
        row = {k: v[-1] for k, v in self.timing.items()}
        if row["input_wait_fraction"] > self.bottleneck and not self.warned:
            self.warned = True
            logger.warning(
                "input is the bottleneck: the steps waited for their batches %.0f%% of epoch %d's "
                "training time. Try road='device' (data on the accelerator), a cached or prepared "
                "dataset (`jaxcnn prepare`), lighter host augmentation, or a larger batch.",
                100 * row["input_wait_fraction"], epoch + 1)

    def latest(self) -> dict:
        """The last epoch's numbers (empty before the first epoch ends)."""
        return {k: self.timing[k][-1] for k in TIMING_KEYS if self.timing.get(k)}
