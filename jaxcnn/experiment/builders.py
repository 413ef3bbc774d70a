"""What a run is built from, given its config: the data, the model card, the Trainer, callbacks.

Importable one by one, so user code can assemble the same pieces as `train_and_evaluate`
(e.g. `build_trainer(config, ...)` to evaluate a converted model without training).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import warnings

from jaxcnn.compress import pruning_from_spec
from jaxcnn.compress.quantize import qat_model
from jaxcnn.config import ExperimentConfig
from jaxcnn.data import load_dataset
from jaxcnn.data.image_folder import resize_images
from jaxcnn.data.sources import DATA_DIR_ENV
from jaxcnn.errors import UsageError
from jaxcnn.model_card import make_card
from jaxcnn.models import get_model
from jaxcnn.run import RunFolder, is_writer
from jaxcnn.train import CheckpointCallback, EarlyStopping, Trainer, get_optimizer
from jaxcnn.train.callbacks.profile import ProfileSteps
from jaxcnn.train.optim import default_learning_rate, make_schedule
from jaxcnn.train.tensorboard import TensorBoard
from jaxcnn.transfer import init_with_pretrained_base, make_transfer_optimizer


def data_source(config: ExperimentConfig) -> str:
    """Where the data comes from: the config's data_dir, $JAXCNN_DATA_DIR, or "bundled" (MNIST only)."""
    return config.data_dir or os.environ.get(DATA_DIR_ENV) or "bundled"


def load_data(config: ExperimentConfig):
    """The config's dataset, limited (train_limit, test_limit) and resized as the config says."""
    if data_source(config) == "bundled" and config.dataset == "mnist" and is_writer():
        print(f"{config.name}: no data directory given (--data-dir, ${DATA_DIR_ENV}): "
              "using the MNIST copy bundled with jaxcnn", file=sys.stderr)
    prepared = config.dataset.startswith("prepared:")
    # A prepared folder was decoded and resized by `jaxcnn prepare`: the recipe's loader options
    # (image_size, classes, ...) were the original loader's.
    ds = load_dataset(config.dataset, data_dir=config.data_dir, **({} if prepared else config.dataset_kwargs))
    if config.train_limit or config.test_limit:
        ds = ds.take(config.train_limit, config.test_limit)
    if config.resize and prepared:
        raise UsageError(f"{config.dataset}: a prepared dataset is not resized while training; "
                         f"prepare it with --image-size {config.resize[0]} {config.resize[1]}")
    if config.resize:
        ds = dataclasses.replace(ds, x_train=resize_images(ds.x_train, config.resize),
                                 x_test=resize_images(ds.x_test, config.resize))
    return ds


def model_kwargs(config: ExperimentConfig, num_classes: int) -> dict:
    """The model constructor's keyword arguments: the config's, plus the dataset's class count."""
    kwargs = dict(config.model_kwargs)
    if config.loss != "binary_crossentropy":
        kwargs.setdefault("num_classes", num_classes)
    return kwargs


def model_card(config: ExperimentConfig, ds):
    """What inference needs (model.json, see jaxcnn.model_card): model, input, scaling, classes."""
    return make_card(model=config.model, model_kwargs=model_kwargs(config, ds.num_classes),
                     input_shape=ds.input_shape, input_dtype=ds.x_train.dtype, class_names=ds.class_names,
                     loss=config.loss, dataset=config.dataset, experiment=config.name)


def build_trainer(config: ExperimentConfig, input_shape, num_classes: int, variables=None,
                  trainable=None, learning_rate=None, steps_per_epoch: int | None = None,
                  epochs: int | None = None):
    """The config's model and optimizer in a Trainer; `variables` and `trainable` for transfer.

    With `config.lr_schedule` the learning rate follows that schedule over `epochs` epochs of
    `steps_per_epoch` steps (see jaxcnn.train.optim.make_schedule); `config.prune` wraps the
    optimizer in magnitude pruning over that many steps, `config.quantize` trains the model with
    int8 fake quantization (jaxcnn.compress).
    """
    if config.speedrun is not None and (config.prune or config.quantize):
        raise UsageError(f"{config.name}: --prune and --quantize apply to Trainer.fit runs, not to the speedrun "
                         "recipe (which builds its own optimizer); drop one of them")
    model = get_model(config.model, **model_kwargs(config, num_classes))
    if config.quantize:
        model = qat_model(model, config.quantize)
    pruning = None
    if config.prune:
        if not steps_per_epoch:
            raise ValueError("pruning needs the steps per epoch")
        pruning = pruning_from_spec(config.prune, steps_per_epoch * (epochs or config.epochs))
    lr = learning_rate or config.learning_rate or default_learning_rate(config.optimizer)
    if config.lr_schedule and config.lr_schedule != "constant":
        if not steps_per_epoch:
            raise ValueError("a learning-rate schedule needs the steps per epoch")
        lr = make_schedule(config.lr_schedule, lr, steps_per_epoch=steps_per_epoch,
                           epochs=epochs or config.epochs)

    def tx(lr):  # a factory: the Trainer knows (and logs, and may change) the learning rate
        opt = get_optimizer(config.optimizer, lr)
        if pruning is not None:
            opt = pruning(opt)
        if trainable is not None:
            opt = make_transfer_optimizer(opt, trainable=trainable)
        return opt

    if variables is None and config.pretrained:
        variables = init_with_pretrained_base(model, input_shape, config.pretrained, config.seed)
    elif variables is None and config.trainable is not None:
        warnings.warn(f"{config.name}: no pretrained weights given (--weights PATH): the base starts "
                      "from random initialization, so this run does not measure transfer learning",
                      stacklevel=2)
    variables = variables or {}
    return Trainer(model, input_shape, loss=config.loss, optimizer=tx, learning_rate=lr, seed=config.seed,
                   params=variables.get("params"), batch_stats=variables.get("batch_stats"),
                   strategy=config.strategy, compute_dtype=config.precision, road=config.road,
                   metrics=config.metrics)


def steps_per_epoch(config: ExperimentConfig, n_train: int) -> int:
    """Training steps per epoch: the examples left after the validation split, in whole batches."""
    n = int(n_train * (1.0 - config.validation_split)) if config.validation_split else n_train
    return max(1, n // config.batch_size)


def callbacks(config: ExperimentConfig, workdir: str, phase: str = "") -> list:
    """The config's callbacks besides checkpoints: early stopping, TensorBoard, a profile."""
    out = []
    if config.early_stopping_patience is not None:
        out.append(EarlyStopping(config.early_stopping_monitor, patience=config.early_stopping_patience,
                                 restore_best_weights=True))
    tensorboard_dir = RunFolder(workdir).tensorboard_dir(phase)
    profile = config.profile if not phase else None  # the steps count over the first phase
    if config.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            warnings.warn("no TensorBoard logs: the `tensorboard` package is not installed", stacklevel=2)
        else:
            out.append(TensorBoard(tensorboard_dir, profile_steps=profile))
            profile = None
    if profile:
        out.append(ProfileSteps(os.path.join(tensorboard_dir, "train"), profile))
    return out


def checkpoint_callback(config: ExperimentConfig, workdir: str, verbose: int, phase: str = ""):
    """The config's checkpoint policy (every N steps, keep K, best by a metric) in the run folder's
    checkpoints/ (checkpoints_finetune/ for phase FINETUNE_SUFFIX)."""
    return CheckpointCallback(
        RunFolder(workdir).checkpoints_dir(phase), every_n_steps=config.checkpoint_every_steps,
        max_to_keep=config.checkpoint_keep, best_metric=config.checkpoint_best,
        best_mode=config.checkpoint_best_mode, verbose=bool(verbose))

