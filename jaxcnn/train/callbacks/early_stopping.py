"""EarlyStopping: stop when a logged value stops improving (Keras' semantics)."""

from __future__ import annotations

import jax

from jaxcnn.train.callbacks.base import Callback
from jaxcnn.train.callbacks.monitor import better, monitor_mode
from jaxcnn.train.callbacks.progress import logger


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs (Keras' semantics).

    `restore_best_weights`: at the end of training, put back the params and BatchNorm
    statistics of the best epoch (as Keras 3 does; the optimizer state stays the latest).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False, start_from_epoch: int = 0):
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.mode = monitor_mode(mode, monitor)
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch

    def on_train_begin(self, trainer):
        self.wait, self.best, self.best_epoch, self.stopped_epoch, self._best_state = 0, None, None, None, None
        self.best_step = None  # the global step at the best epoch's end

    def get_state(self, trainer) -> dict:
        """What a checkpoint keeps; `arrays`: the best epoch's weights (`restore_best_weights`)."""
        state = {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                 "stopped_epoch": self.stopped_epoch, "best_step": self.best_step}
        if self._best_state is not None:
            state["arrays"] = self._best_state
        return state

    def set_state(self, trainer, state: dict) -> None:
        self.wait, self.best = state["wait"], state["best"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self.best_step = state.get("best_step")
        if state.get("arrays") is not None:
            self._best_state = state["arrays"]
        elif self.restore_best_weights and self.best_epoch is not None:
            # A checkpoint without the best weights (restore_best_weights was off when it was
            # written): exact at the best epoch's end; else the resumed ones stand in for them.
            if self.best_step != trainer.global_step:
                logger.warning("EarlyStopping: resumed without the weights of best epoch %d; "
                               "restore_best_weights will use the weights of a later best epoch, "
                               "else the resumed ones", self.best_epoch + 1)
            self._best_state = jax.device_get({"params": trainer.state.params,
                                               "batch_stats": trainer.state.batch_stats})

    def on_epoch_end(self, trainer, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            logger.warning("EarlyStopping: %r is not in the logs (%s)", self.monitor, ", ".join(logs))
            return
        if epoch < self.start_from_epoch:
            return
        if better(self.mode, float(value), self.best, self.min_delta):
            self.best, self.best_epoch, self.wait, self.best_step = float(value), epoch, 0, trainer.global_step
            if self.restore_best_weights:  # a host copy: the next step donates the device buffers
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
