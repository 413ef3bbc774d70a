"""ProfileSteps: a `jax.profiler` trace of chosen training steps, for TensorBoard and Perfetto.

    trainer.fit(x, y, callbacks=[ProfileSteps("runs/x/tensorboard/train", steps=(10, 20))])
    trainer.fit(x, y, callbacks=[TensorBoard("runs/x/tensorboard", profile_steps=(10, 20))])
    jaxcnn train mnist_cnn --profile 10:20          # then: tensorboard --logdir runs/mnist_cnn

Steps count as `state.step` does (from 0 over the whole run): `(10, 20)` traces the ten steps
that take the global step from 10 to 20. The trace lands in `log_dir/plugins/profile/<time>/`:
`<host>.xplane.pb` (TensorBoard's profile plugin) and `perfetto_trace.json.gz`
(ui.perfetto.dev). Each step carries a `jax.profiler.StepTraceAnnotation("train", step_num=N)`
marker around its dispatch and callbacks (the wait for its batch is the gap before it); on the
device road a marker spans a chunk of `steps_per_call` steps, and the trace covers the chunks
that overlap the range. The loop calls `begin` / `end` around each chunk (jaxcnn.train.callbacks.
timing.timed_chunks) through `trainer.step_profiler`.
"""

from __future__ import annotations

import os

import jax

from jaxcnn.train.callbacks.base import Callback
from jaxcnn.train.callbacks.progress import logger


def parse_step_range(value) -> tuple[int, int]:
    """`"START:STOP"`, `(START, STOP)` or `[START, STOP]` -> (START, STOP), 0 <= START < STOP."""
    if isinstance(value, str):
        parts = value.split(":")
        try:
            value = tuple(int(p) for p in parts)
        except ValueError:
            value = ()
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) for v in value) or not 0 <= value[0] < value[1]):
        raise ValueError(f"profile steps must be START:STOP with 0 <= START < STOP (global steps), got {value!r}")
    return int(value[0]), int(value[1])


class ProfileSteps(Callback):
    """Traces the global steps [START, STOP) with `jax.profiler` into `log_dir` (see the module).

    `perfetto`: also write `perfetto_trace.json.gz` beside the TensorBoard files.
    """

    def __init__(self, log_dir: str, steps=(10, 20), perfetto: bool = True):
        self.log_dir, self.perfetto = os.fspath(log_dir), perfetto
        self.start, self.stop = parse_step_range(steps)
        self.active = self.done = False
        self.trace_dir: str | None = None  # the folder the trace went to, once written

    def on_train_begin(self, trainer):
        self.active = self.done = False
        self._trainer = trainer
        trainer.step_profiler = self

    # -- called by the loop around each chunk of steps -------------------------------------------
    def begin(self, step: int, n: int = 1):
        """Before the chunk of `n` steps from global step `step`: start the trace when the chunk
        reaches the range; the step marker to enter (None outside the range)."""
        if self.done or step >= self.stop or step + n <= self.start:
            return None
        if not self.active:
            os.makedirs(self.log_dir, exist_ok=True)
            before = set(_runs(self.log_dir))
            jax.profiler.start_trace(self.log_dir, create_perfetto_trace=self.perfetto)
            self.active, self._before = True, before
        marker = jax.profiler.StepTraceAnnotation("train", step_num=step)
        marker.__enter__()
        return marker

    def end(self, marker, step: int) -> None:
        """After the chunk (`step`: the global step now): close its marker; stop at STOP."""
        if marker is not None:
            marker.__exit__(None, None, None)
        if self.active and step >= self.stop:
            self._finish()

    def on_train_end(self, trainer):
        if self.active:  # the run ended inside the range
            self._finish()
        if getattr(trainer, "step_profiler", None) is self:
            trainer.step_profiler = None

    def _finish(self) -> None:
        jax.block_until_ready(self._trainer.state)  # the traced steps' device work, not only their dispatch
        jax.profiler.stop_trace()
        self.active, self.done = False, True
        new = sorted(set(_runs(self.log_dir)) - self._before)
        self.trace_dir = os.path.join(self.log_dir, "plugins", "profile", new[-1]) if new else None
        logger.info("profile of steps %d-%d written to %s (TensorBoard's profile tab; Perfetto: "
                    "perfetto_trace.json.gz)", self.start, self.stop, self.trace_dir or self.log_dir)


def _runs(log_dir: str) -> list[str]:
    folder = os.path.join(log_dir, "plugins", "profile")
    return os.listdir(folder) if os.path.isdir(folder) else []
