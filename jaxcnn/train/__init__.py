"""Training: TrainState, losses, metrics, optimizers, the pure steps, the Keras-like loop, its
input feeds, callbacks, and the record recipes (jaxcnn.train.recipes, imported on demand)."""

from jaxcnn.train.callbacks import (Callback, CheckpointCallback, CSVLogger, EarlyStopping, History, ReduceLROnPlateau,
                                    SummaryWriter, TensorBoard)
from jaxcnn.train.loop import NonFiniteLossError, Trainer
from jaxcnn.train.losses import LOSSES, get_loss
from jaxcnn.train.metrics import AUC, Metric, MeanMetric, PerClassAccuracy, get_metric
from jaxcnn.train.optim import get_optimizer, make_schedule
from jaxcnn.train.state import TrainState, create_train_state, init_variables
from jaxcnn.train.step import make_eval_step, make_train_step

__all__ = [
    "AUC", "LOSSES", "CSVLogger", "Callback", "CheckpointCallback", "EarlyStopping", "History", "MeanMetric", "Metric",
    "NonFiniteLossError", "PerClassAccuracy", "ReduceLROnPlateau", "SummaryWriter", "TensorBoard",
    "Trainer", "TrainState", "create_train_state", "get_loss", "get_metric", "get_optimizer",
    "init_variables", "make_eval_step", "make_schedule", "make_train_step",
]
