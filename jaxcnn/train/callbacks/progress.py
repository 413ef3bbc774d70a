"""What `fit` shows: the `jaxcnn` logger, its stderr handler, the progress bar and epoch lines."""

from __future__ import annotations

import logging
import math
import sys

from jaxcnn._compat import tqdm

from jaxcnn.log import _own_logging, logger


def resolve_verbose(verbose) -> int:
    """Keras' verbose: 0 silent, 1 progress bar, 2 one line per epoch; "auto": 1 on a terminal, else 2."""
    if verbose == "auto":
        return 1 if sys.stderr.isatty() else 2
    return int(verbose)


def _fmt(logs: dict, skip=("seconds",)) -> str:
    """`loss: 0.1234 - accuracy: ...`; per-class entries (`name/i`) stay in the History only."""
    return " - ".join(f"{k}: {v:.4g}" if abs(v) < 1e-3 and v else f"{k}: {v:.4f}"
                      for k, v in logs.items() if k not in skip and "/" not in k and isinstance(v, (int, float)))


class Progress:
    """The loop's display: a tqdm bar per epoch (verbose 1), an epoch line (verbose 1 and 2).

    Epoch lines go to the `jaxcnn` logger (INFO), which writes them to stderr in its own format
    whatever else configured logging (see `_own_logging`).
    """

    def __init__(self, verbose: int, epochs: int, steps: int):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.bar = None
        if verbose:
            ensure_log_handler()

    def begin(self, epoch: int, start: int) -> None:
        if self.verbose == 1:
            self.bar = tqdm(total=self.steps, initial=start, desc=f"Epoch {epoch + 1}/{self.epochs}",
                            unit="step", leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def update(self, step: int, logs: dict) -> None:
        if self.bar is not None:
            shown = {k: f"{v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy")}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def end(self, epoch: int, logs: dict, timing: dict | None = None) -> None:
        """The epoch line; `timing`: StepTiming's per-epoch lists (its row for `epoch` is shown)."""
        self.close()
        if self.verbose:
            seconds = logs.get("seconds", math.nan)
            speed = ""
            if timing and timing.get("epoch") and timing["epoch"][-1] == epoch:
                speed = (f"{1e3 * timing['step_time'][-1]:.1f} ms/step, {timing['images_per_second'][-1]:.0f} img/s, "
                         f"input wait {100 * timing['input_wait_fraction'][-1]:.0f}% - ")
            logger.info("Epoch %d/%d - %.1fs - %s%s", epoch + 1, self.epochs, seconds, speed, _fmt(logs))


def ensure_log_handler() -> None:
    """Kept for callers: the `jaxcnn` logger has its own stderr handler since import (see `_own_logging`)."""
    if not logger.handlers:  # someone removed every handler: put ours back
        _own_logging()


def plain_stderr_logging() -> None:
    """The command line's logging: the `jaxcnn` logger's lines on stderr, at INFO, not propagated."""
    _own_logging()
    logger.setLevel(logging.INFO)
