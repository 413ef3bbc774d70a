"""The experiment command line: every flag of `jaxcnn train NAME` and `python -m experiments.NAME`.

Every config field is settable with `--set FIELD=VALUE` (typed from ExperimentConfig, checked by
FIELD_CHECKS); the named flags in FLAG_FIELDS are shorthands for the common ones, with the same
conversion and checks, applied in command-line order by `apply_flags`.
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxcnn.config.checks import FIELD_CHECKS, positive_int, validate_config
from jaxcnn.config.experiment_config import ExperimentConfig
from jaxcnn.config.overrides import apply_overrides, convert_field, parse_assignment
from jaxcnn.errors import UsageError

# The documented flags, each a shorthand for `--set FIELD=VALUE` (same conversion, same checks):
# flag -> (config fields it sets, metavar, help).
FLAG_FIELDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "--epochs": (("epochs",), "N", "override the recipe's epochs"),
    "--batch-size": (("batch_size",), "N", "override the recipe's (global) batch size"),
    "--data": (("dataset",), "NAME", "the recipe's dataset replaced: a name, image_folder:PATH, tfds:NAME "
                                     "or prepared:DIR (streamed from `jaxcnn prepare` records)"),
    "--data-dir": (("data_dir",), "DIR", "folder holding the datasets (default: $JAXCNN_DATA_DIR)"),
    "--road": (("road",), "auto|pipeline|device",
               "input road: per-step pipeline, data on the device, or auto (default)"),
    "--precision": (("precision",), "auto|bf16|f32",
                    "compute dtype (params stay float32); auto: bf16 on GPU/TPU, f32 on CPU"),
    "--seed": (("seed",), "N", "override the seed (0 or more)"),
    "--augment": (("augment",), "SPEC", "augmentation recipe (A, B, none) or key=value,... parameters"),
    "--limit": (("train_limit", "test_limit"), "N", "use only N train and N test examples, spread over the classes (smoke runs)"),
    "--strategy": (("strategy",), "jit|pmap", "device strategy: jit (default) or pmap"),
    "--checkpoint-every": (("checkpoint_every_steps",), "N",
                           "also checkpoint every N steps (default: at epoch ends only)"),
    "--weights": (("pretrained",), "DIR", "pretrained base: a folder written by `jaxcnn convert-weights`"),
    "--lr-schedule": (("lr_schedule",), "SPEC",
                      "learning-rate schedule: cosine | exponential[:RATE] | piecewise:EPOCH=FACTOR,... | "
                      "constant, optionally ,warmup=EPOCHS (e.g. cosine,warmup=1)"),
    "--prune": (("prune",), "SPEC", "magnitude pruning to a sparsity, e.g. 0.8 or 0.8,schedule=constant,"
                                    "scope=global or nm=2:4 (see docs/compression.md)"),
    "--quantize": (("quantize",), "int8", "quantization-aware training: int8 weights and activations"),
    "--profile": (("profile",), "START:STOP",
                  "write a jax.profiler trace of global steps START..STOP-1 to WORKDIR/tensorboard/train "
                  "(TensorBoard's profile tab, Perfetto)"),
    "--early-stopping": (("early_stopping_patience",), "PATIENCE",
                         "stop after PATIENCE epochs without a better val_loss; keep the best weights"),
}


class _SetFields(argparse.Action):
    """Appends (field, value) pairs to `namespace.overrides`, in command-line order."""

    def __init__(self, option_strings, dest, fields=(), **kwargs):
        self.fields = fields
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        pairs = [(f, values) for f in self.fields] if self.fields else [values]
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), *pairs]


def _flag_type(field: str):
    """argparse `type=` for a flag of `field`: argparse then names the flag in its error."""

    def convert(raw: str):
        try:
            return convert_field(ExperimentConfig, field, raw, FIELD_CHECKS)
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{field}: ")) from None

    convert.__name__ = field
    return convert


def _assignment(text: str):
    try:
        return parse_assignment(ExperimentConfig, text, FIELD_CHECKS)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every experiment takes (`jaxcnn train NAME ...`, `python -m experiments.NAME ...`).

    Every config field is settable with `--set FIELD=VALUE` (typed from ExperimentConfig; an
    unknown field is an error); the named flags are shorthands for the common ones.
    """
    parser.set_defaults(overrides=None)
    for flag, (fields, metavar, help_) in FLAG_FIELDS.items():
        parser.add_argument(flag, action=_SetFields, fields=fields, dest="overrides", metavar=metavar,
                            type=_flag_type(fields[0]), help=help_, default=None)
    parser.add_argument("--set", action=_SetFields, dest="overrides", metavar="FIELD=VALUE",
                        type=_assignment, default=None,
                        help="set any config field, e.g. --set learning_rate=3e-4 --set "
                             "model_kwargs.dropout=0.3 (repeatable; applied in order with the flags)")
    parser.add_argument("--workdir", help="where results go (default: runs/NAME)")
    parser.add_argument("--fresh", action="store_true",
                        help="move a previous run in the workdir aside (WORKDIR.old-TIME) and start over")
    parser.add_argument("--variant", help="a named variant of the recipe (see the experiment's variants)")
    parser.add_argument("--fake-devices", type=positive_int, metavar="K",
                        help="run on K fake CPU devices (rehearse multi-device runs on one CPU)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar or epoch lines; the final result line still prints")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: JAXCNN_DEBUG=1)")


def apply_flags(config: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    """The config with the command line's variant, then its flags and `--set`s in order, checked."""
    variant = getattr(args, "variant", None)
    if variant:
        if variant not in config.variants:
            raise UsageError(f"{config.name}: unknown variant {variant!r}; known: "
                             f"{', '.join(config.variants) or 'none'}")
        config = dataclasses.replace(config, **config.variants[variant])
    config = apply_overrides(config, getattr(args, "overrides", None) or [])
    validate_config(config)
    return config
