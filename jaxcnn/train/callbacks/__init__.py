"""Callbacks for `Trainer.fit`, Keras-like, one per module, plus the History that `fit` returns.

base (Callback, CallbackList, History, the hooks), progress (the logger, progress bar, epoch
lines), checkpoint (save and resume the run), early_stopping, reduce_lr, csv_logger,
tensorboard, timing (step time, input wait, images/s), profile (jax.profiler traces of chosen
steps), and the speed-record pair test_score (integer test-set counts, TTA) and
record_clock (training seconds to a target).
"""

from jaxcnn.train.callbacks.base import HOOKS, Callback, CallbackList, History
from jaxcnn.train.callbacks.checkpoint import CheckpointCallback
from jaxcnn.train.callbacks.csv_logger import CSVLogger
from jaxcnn.train.callbacks.early_stopping import EarlyStopping
from jaxcnn.train.callbacks.profile import ProfileSteps
from jaxcnn.train.callbacks.progress import (Progress, ensure_log_handler, logger, plain_stderr_logging,
                                             resolve_verbose)
from jaxcnn.train.callbacks.record_clock import RecordClock, required_correct
from jaxcnn.train.callbacks.reduce_lr import ReduceLROnPlateau
from jaxcnn.train.callbacks.tensorboard import SummaryWriter, TensorBoard
from jaxcnn.train.callbacks.test_score import TestScore, tta_logits
from jaxcnn.train.callbacks.timing import StepTiming

__all__ = [
    "CSVLogger", "Callback", "CallbackList", "CheckpointCallback", "EarlyStopping", "HOOKS", "History", "ProfileSteps", "Progress", "RecordClock",
    "ReduceLROnPlateau", "StepTiming", "SummaryWriter", "TensorBoard", "TestScore", "ensure_log_handler", "logger",
    "plain_stderr_logging", "required_correct", "resolve_verbose", "tta_logits",
]
