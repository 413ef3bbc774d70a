"""Callbacks for `Trainer.fit`, Keras-like, plus the History that `fit` returns.

Hooks (define any; a callback need not subclass `Callback`):

    on_train_begin(trainer)                  before the first step (a checkpoint may restore here)
    on_epoch_begin(trainer, epoch)
    on_step_end(trainer, epoch, step)        after each step (pipeline road) or chunk of steps
                                             (device road); `step` is the position in the epoch
    on_log(trainer, step, logs)              every `log_every` steps: running epoch means, the
                                             learning rate; `step` is the global step
    on_epoch_end(trainer, epoch, logs)       the epoch's metrics, `val_*`, learning rate, seconds
    on_train_end(trainer)

Metrics stay on the device between logs; `on_log` is called only at log points (fetching them
waits for the device), `fit(log_every=1)` makes it per step. `trainer.global_step` is the step
count on the host (it mirrors `trainer.state.step` without a device sync).
"""

from __future__ import annotations

import collections.abc
import logging
import math
import sys

logger = logging.getLogger("jaxcnn")

HOOKS = ("on_train_begin", "on_epoch_begin", "on_step_end", "on_log", "on_epoch_end", "on_train_end")


class Callback:
    """Base class with every hook doing nothing."""

    def on_train_begin(self, trainer) -> None: ...
    def on_epoch_begin(self, trainer, epoch: int) -> None: ...
    def on_step_end(self, trainer, epoch: int, step: int) -> None: ...
    def on_log(self, trainer, step: int, logs: dict) -> None: ...
    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None: ...
    def on_train_end(self, trainer) -> None: ...


class CallbackList:
    """Calls a hook on every callback that defines it, in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides `hook` (the base class's no-op does not count)."""
        return any(getattr(type(cb), hook, None) not in (None, getattr(Callback, hook))
                   for cb in self.callbacks)

    def __getattr__(self, hook):
        if hook not in HOOKS:
            raise AttributeError(hook)

        def call(*args):
            for cb in self.callbacks:
                fn = getattr(cb, hook, None)
                if fn is not None:
                    fn(*args)

        return call


class History(collections.abc.Mapping):
    """What `fit` returns: `.history` (metric -> list per epoch), `.epoch`, `.params`.

    One per `fit` call. A run resumed from a checkpoint continues the run's history. It is also
    a read-only mapping over `.history` (`history["loss"]`).
    """

    def __init__(self, params: dict | None = None):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.params = dict(params or {})

    def record(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def restore(self, history: dict, epochs: list[int] | None = None) -> None:
        """Take over a resumed run's earlier epochs."""
        self.history = {k: list(v) for k, v in history.items()}
        n = max((len(v) for v in self.history.values()), default=0)
        self.epoch = list(epochs) if epochs is not None else list(range(n))

    def __getitem__(self, key):
        return self.history[key]

    def __iter__(self):
        return iter(self.history)

    def __len__(self):
        return len(self.history)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


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

    Epoch lines go to the `jaxcnn` logger (INFO); without a logging configuration they go to
    stderr (see `ensure_log_handler`).
    """

    def __init__(self, verbose: int, epochs: int, steps: int):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.bar = None
        if verbose:
            ensure_log_handler()

    def begin(self, epoch: int, start: int) -> None:
        if self.verbose == 1:
            from jaxcnn._compat import tqdm

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

    def end(self, epoch: int, logs: dict) -> None:
        self.close()
        if self.verbose:
            seconds = logs.get("seconds", math.nan)
            logger.info("Epoch %d/%d - %.1fs - %s", epoch + 1, self.epochs, seconds, _fmt(logs))


class _StderrHandler(logging.StreamHandler):
    """Plain `message` lines to whatever `sys.stderr` is at the time of each record."""

    def __init__(self):
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def ensure_log_handler() -> None:
    """Let the `jaxcnn` logger's INFO lines reach stderr when nobody configured logging.

    With a handler on the root logger (logging.basicConfig, absl) nothing is added: records
    propagate there. Otherwise one plain stderr handler is attached to the `jaxcnn` logger.
    """
    if logger.handlers or logging.getLogger().handlers:
        if logger.level == logging.NOTSET and logging.getLogger().level > logging.INFO:
            logger.setLevel(logging.INFO)
        return
    plain_stderr_logging()


def plain_stderr_logging() -> None:
    """The command line's logging: the `jaxcnn` logger's lines as they are, on stderr, at INFO.

    (Some libraries configure the root logger on import, which would prefix every line.)
    """
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _better(mode: str, value: float, best: float | None, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _mode(mode: str, monitor: str) -> str:
    if mode == "auto":
        return "max" if any(k in monitor for k in ("acc", "auc")) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs (Keras' semantics).

    `restore_best_weights`: at the end of training, put back the params and BatchNorm
    statistics of the best epoch (as Keras 3 does; the optimizer state stays the latest).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False, start_from_epoch: int = 0):
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.mode = _mode(mode, monitor)
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch

    def on_train_begin(self, trainer):
        self.wait, self.best, self.best_epoch, self.stopped_epoch, self._best_state = 0, None, None, None, None

    def on_epoch_end(self, trainer, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            logger.warning("EarlyStopping: %r is not in the logs (%s)", self.monitor, ", ".join(logs))
            return
        if epoch < self.start_from_epoch:
            return
        if _better(self.mode, float(value), self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            if self.restore_best_weights:  # a host copy: the next step donates the device buffers
                import jax

                self._best_state = jax.device_get({"params": trainer.state.params,
                                                   "batch_stats": trainer.state.batch_stats})
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best_weights and self._best_state is not None:
            best = trainer.strategy.replicate(self._best_state)
            trainer.state = trainer.state.replace(params=best["params"], batch_stats=best["batch_stats"])
            logger.info("EarlyStopping: restored the weights of epoch %d (%s %.4f)", self.best_epoch + 1,
                        self.monitor, self.best)
        if self.stopped_epoch is not None:
            logger.info("EarlyStopping: stopped after epoch %d", self.stopped_epoch + 1)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` stalls for `patience` epochs (Keras').

    Uses `Trainer.set_learning_rate` (an optimizer by name or a factory; one recompile per
    change). For a per-step plateau rule inside the optimizer, optax has
    `optax.contrib.reduce_on_plateau`.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.mode, self.min_delta = _mode(mode, monitor), min_delta
        self.cooldown, self.min_lr = cooldown, min_lr

    def on_train_begin(self, trainer):
        self.wait, self.cooldown_left, self.best = 0, 0, None

    def on_epoch_end(self, trainer, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            logger.warning("ReduceLROnPlateau: %r is not in the logs (%s)", self.monitor, ", ".join(logs))
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if _better(self.mode, float(value), self.best, self.min_delta):
            self.best, self.wait = float(value), 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            lr = trainer.current_learning_rate()
            if lr is not None and lr > self.min_lr:
                new = max(lr * self.factor, self.min_lr)
                trainer.set_learning_rate(new)
                logger.info("ReduceLROnPlateau: learning rate %.3g -> %.3g after epoch %d", lr, new, epoch + 1)
            self.cooldown_left, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """One CSV row per epoch (`epoch` and every log), like Keras' CSVLogger; process 0 writes."""

    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        self.filename, self.separator, self.append = filename, separator, append
        self.keys: list[str] | None = None

    def on_train_begin(self, trainer):
        import os

        self.keys = None
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                header = f.readline().strip()
            self.keys = header.split(self.separator)[1:] if header else None

    def on_epoch_end(self, trainer, epoch, logs):
        import csv

        import jax

        if jax.process_index() != 0:
            return
        new_file = self.keys is None
        if new_file:
            self.keys = list(logs)
        mode = "w" if new_file and not self.append else "a"
        with open(self.filename, mode, newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if new_file:
                writer.writerow(["epoch", *self.keys])
            writer.writerow([epoch, *(logs.get(k, "") for k in self.keys)])
