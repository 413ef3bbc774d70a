"""RecordClock: the training clock of a speed record (airbench's and the MNIST records' rules).

Training seconds are the epochs' own seconds plus what counts as training outside them (the
setup a recipe times, e.g. fitting a whitening layer; the final TTA scoring). Compilation
happens ahead of the clock: `on_train_begin` compiles every chunk shape of the feed
(`trainer.feed.compile_ahead`) and reports it as `compile_seconds`. The test accuracy comes from
a TestScore callback placed before this one; the target is met at ceil(target * n) correct.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

from jaxcnn.train.callbacks.base import Callback
from jaxcnn.train.callbacks.test_score import TestScore


def required_correct(target: float, n: int) -> int:
    """Correct answers needed for accuracy >= `target` on `n` examples: ceil(target * n), exactly."""
    return math.ceil(Fraction(str(target)) * n)


class RecordClock(Callback):
    """Logs `train_seconds` (cumulative) per epoch; `record()` gives `train_seconds_to_target`
    (None when not reached), `compile_seconds` and the scoring counts. `stop_at_target` ends
    training at the first epoch that reaches the target."""

    def __init__(self, score: TestScore, target: float, setup_seconds: float = 0.0,
                 stop_at_target: bool = False):
        self.score, self.target, self.setup_seconds = score, target, setup_seconds
        self.stop_at_target = stop_at_target
        self.need = required_correct(target, score.n)

    def on_train_begin(self, trainer):
        t0 = time.perf_counter()
        compile_ahead = getattr(trainer.feed, "compile_ahead", None)
        if compile_ahead is not None:
            compile_ahead(trainer.state, trainer.fit_info["total_steps"])
        self.compile_seconds = time.perf_counter() - t0
        self.trained, self.reached = self.setup_seconds, None

    def on_epoch_logs(self, trainer, epoch, logs):
        self.trained += logs["seconds"] + self.score.take_timed_seconds()
        logs["train_seconds"] = self.trained
        if self.reached is None and self.score.correct is not None and self.score.correct >= self.need:
            self.reached = self.trained
        if self.stop_at_target and self.reached is not None:
            trainer.stop_training = True

    def record(self) -> dict:
        """The run's record: final test accuracy, time to target, compile and setup seconds."""
        return {"test_accuracy": self.score.correct / self.score.n, "train_seconds_to_target": self.reached,
                "target": self.target, "needed_correct": self.need, "test_examples": self.score.n,
                "compile_seconds": self.compile_seconds + self.score.compile_seconds,
                "setup_seconds": self.setup_seconds}
