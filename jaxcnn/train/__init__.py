"""Training: TrainState, losses, optimizers, the pure steps and the Keras-like loop."""

from jaxcnn.train.loop import Callback, NonFiniteLossError, Trainer
from jaxcnn.train.losses import LOSSES, get_loss
from jaxcnn.train.optim import get_optimizer
from jaxcnn.train.state import TrainState, create_train_state, init_variables
from jaxcnn.train.step import make_eval_step, make_train_step

__all__ = [
    "LOSSES", "Callback", "NonFiniteLossError", "Trainer", "TrainState", "create_train_state",
    "get_loss", "get_optimizer", "init_variables", "make_eval_step", "make_train_step",
]
