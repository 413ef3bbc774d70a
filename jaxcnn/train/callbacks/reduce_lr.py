"""ReduceLROnPlateau: lower the learning rate when a logged value stalls (Keras' semantics)."""

from __future__ import annotations

from jaxcnn.train.callbacks.base import Callback
from jaxcnn.train.callbacks.monitor import better, monitor_mode
from jaxcnn.train.callbacks.progress import logger


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
        self.mode, self.min_delta = monitor_mode(mode, monitor), min_delta
        self.cooldown, self.min_lr = cooldown, min_lr

    def on_train_begin(self, trainer):
        self.wait, self.cooldown_left, self.best = 0, 0, None
        self.learning_rate = None  # the rate this callback set last

    def get_state(self, trainer) -> dict:
        return {"wait": self.wait, "cooldown_left": self.cooldown_left, "best": self.best,
                "learning_rate": self.learning_rate}

    def set_state(self, trainer, state: dict) -> None:
        """Back to a checkpoint's state, the learning rate it had lowered to included."""
        self.wait, self.cooldown_left, self.best = state["wait"], state["cooldown_left"], state["best"]
        self.learning_rate = state.get("learning_rate")
        if self.learning_rate is not None and self.learning_rate != trainer.current_learning_rate():
            trainer.set_learning_rate(self.learning_rate)

    def on_epoch_end(self, trainer, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            logger.warning("ReduceLROnPlateau: %r is not in the logs (%s)", self.monitor, ", ".join(logs))
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if better(self.mode, float(value), self.best, self.min_delta):
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
                self.learning_rate = new
                logger.info("ReduceLROnPlateau: learning rate %.3g -> %.3g after epoch %d", lr, new, epoch + 1)
            self.cooldown_left, self.wait = self.cooldown, 0
