"""Record-style training recipes ("speedruns") run by `Trainer.fit`: the fewest seconds to a
target test accuracy.

A recipe supplies what changes, never the loop: the optimizer (PyTorch-exact SGD per group
under a triangular schedule, `sgd`), the step (label smoothing, sum or mean reduction, the
lookahead pull: `step`, `state`), the device augmentation and data order (`augment`, `order`),
the whitening layer (`whiten`), and the record callbacks (jaxcnn.train.callbacks.TestScore,
RecordClock: integer test counts, TTA at the end, training seconds to the target, compile
ahead of the clock). `run.fit(trainer, ...)` puts them together; `jaxcnn.speedrun` is the old
import path.
"""

from jaxcnn.train.callbacks.record_clock import required_correct
from jaxcnn.train.callbacks.test_score import batched_test_set, make_count_correct, tta_logits
from jaxcnn.train.recipes.augment import AUGMENTS, flip_translate
from jaxcnn.train.recipes.order import StreamOrder
from jaxcnn.train.recipes.recipe import CIFAR10_FAST, MNIST_FAST, RECIPES, Recipe, get_recipe
from jaxcnn.train.recipes.run import fit, plan, prepare_state, train
from jaxcnn.train.recipes.sgd import lr_factor, make_optimizer, param_groups
from jaxcnn.train.recipes.state import SpeedState, init_state, lookahead
from jaxcnn.train.recipes.step import make_train_step
from jaxcnn.train.recipes.whiten import whitening_kernel

__all__ = [
    "AUGMENTS", "CIFAR10_FAST", "MNIST_FAST", "RECIPES", "Recipe", "SpeedState", "StreamOrder",
    "batched_test_set", "fit", "flip_translate", "get_recipe", "init_state", "lookahead", "lr_factor",
    "make_count_correct", "make_optimizer", "make_train_step", "param_groups", "plan", "prepare_state",
    "required_correct", "train", "tta_logits", "whitening_kernel",
]
