"""The experiment config: one tutorial recipe as a dataclass (Flax examples' `get_config()` shape).

An experiment file returns an `ExperimentConfig`; `jaxcnn.experiment.train_and_evaluate` runs it.
Its fields are typed, so `--set FIELD=VALUE` converts command-line strings from the annotations
(jaxcnn.config.overrides) and jaxcnn.config.checks holds their value checks.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class ExperimentConfig:
    """One tutorial recipe. `reported` holds the tutorial's own numbers, shown beside ours."""

    name: str
    model: str
    dataset: str = "mnist"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    loss: str = "sparse_categorical_crossentropy"
    optimizer: str = "adam"
    learning_rate: float | None = None
    epochs: int = 5
    batch_size: int = 32
    validation_split: float | None = None
    validate_on_test: bool = True  # the tutorials pass validation_data=(x_test, y_test)
    augment: Any = None  # a recipe name ("A", "B") or parameters, see jaxcnn.data.augment
    seed: int = 0
    road: str = "auto"  # input road: auto | pipeline | device (jaxcnn.train.ondevice)
    precision: str = "auto"  # compute dtype: auto (bf16 on GPU/TPU, f32 on CPU) | bf16 | f32
    data_dir: str | None = None
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)
    train_limit: int | None = None  # N training examples spread over the classes: smoke runs
    test_limit: int | None = None
    resize: tuple | None = None  # (height, width): resize images after the limits are taken
    strategy: str | None = None  # device strategy, see jaxcnn.parallel
    # Checkpoints in workdir/checkpoints (jaxcnn.checkpoint): at each epoch end, plus every N steps
    # when set; the last `checkpoint_keep` are kept and the best by `checkpoint_best`.
    checkpoint_every_steps: int | None = None
    checkpoint_keep: int = 3
    checkpoint_best: str | None = "val_accuracy"
    checkpoint_best_mode: str = "max"
    # Training extras (jaxcnn.train): metrics by name; {class: weight}; a learning-rate schedule
    # (cosine | exponential[:RATE] | piecewise:E=F,... with ,warmup=EPOCHS; see make_schedule);
    # early stopping on `early_stopping_monitor` after this many epochs without improvement
    # (the best epoch's weights are kept); TensorBoard event files in workdir/tensorboard.
    metrics: tuple = ("accuracy",)
    class_weight: dict | None = None
    lr_schedule: str | None = None
    early_stopping_patience: int | None = None
    early_stopping_monitor: str = "val_loss"
    tensorboard: bool = True
    profile: str | None = None  # "START:STOP": a jax.profiler trace of those global steps in workdir/tensorboard/train
    extras: tuple = ()  # names in EXTRAS: extra figures an experiment writes
    reported: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    # Transfer learning (jaxcnn.transfer): a folder written by `jaxcnn convert-weights` for the
    # model's `base`; the param prefixes that train (None: all); an optional second phase
    # {"trainable": prefixes, "learning_rate": lr, "epochs": n} that unfreezes more blocks.
    pretrained: str | None = None
    trainable: tuple | None = None
    finetune: dict | None = None
    # Named sets of field changes, chosen with --variant (e.g. the transfer heads a, b, c).
    variants: dict = dataclasses.field(default_factory=dict)
    # A jaxcnn.speedrun recipe (name, or {"base": name, **overrides}): train with it instead of
    # Trainer.fit (config.epochs and batch_size override the recipe's; no checkpoints).
    speedrun: Any = None
    # Smaller models (jaxcnn.compress): magnitude pruning by a spec ("0.8", "0.8,schedule=constant",
    # "nm=2:4", ...; see jaxcnn.compress.spec) and int8 quantization-aware training ("int8").
    prune: str | None = None
    quantize: str | None = None
