"""Record-style training runs ("speedruns"): the fewest seconds to a target test accuracy.

The recipes (`MNIST_FAST`, `CIFAR10_FAST`) follow what published speed records do: small
BatchNorm networks without the affine scale (jaxcnn.models.fast), large batches, SGD with
Nesterov momentum and a triangular per-step learning rate, label smoothing, the whole dataset on
the device (one dispatch per epoch through the device feed, augmentation on the device),
lookahead averaging of the weights, test-time augmentation, and for CIFAR-10 airbench94's frozen
whitening first layer. The optimizer follows PyTorch's SGD exactly (coupled weight decay,
Nesterov as `g + m * buf`) so the PyTorch peer in benchmarks/ runs the same math.

    state, history = train(get_model("mnist_fast"), x, y, x_test, y_test, MNIST_FAST)

They run through `Trainer.fit` (jaxcnn.train.recipes, where they live; this module is their
public name). Compilation happens ahead of the clock; `history` gives per epoch the training
seconds so far and the test accuracy from integer correct counts, and `train_seconds_to_target`
the training time until the test accuracy first reached the target.
"""

from jaxcnn.train.recipes import (AUGMENTS, CIFAR10_FAST, MNIST_FAST, RECIPES, Recipe, SpeedState, StreamOrder,
                                  batched_test_set, fit, flip_translate, get_recipe, init_state, lookahead,
                                  lr_factor, make_count_correct, make_optimizer, make_train_step, param_groups,
                                  plan, prepare_state, required_correct, train, tta_logits, whitening_kernel)

__all__ = [
    "AUGMENTS", "CIFAR10_FAST", "MNIST_FAST", "RECIPES", "Recipe", "SpeedState", "StreamOrder",
    "batched_test_set", "fit", "flip_translate", "get_recipe", "init_state", "lookahead", "lr_factor",
    "make_count_correct", "make_optimizer", "make_train_step", "param_groups", "plan", "prepare_state",
    "required_correct", "train", "tta_logits", "whitening_kernel",
]
