"""Experiment configuration: the config dataclass, its value checks, `--set` and the flags.

    experiment_config   ExperimentConfig (one tutorial recipe)
    checks              every validator: FIELD_CHECKS, validate_config, argparse types
    overrides           `--set field=value` typed from a dataclass's annotations
    flags               FLAG_FIELDS, add_flags, apply_flags (the experiment command line)
"""

from jaxcnn.config.checks import (FIELD_CHECKS, argument_type, checkpoint_choice, non_negative_int,
                                  port_number, positive_float, positive_int, validate_config)
from jaxcnn.config.experiment_config import ExperimentConfig
from jaxcnn.config.flags import FLAG_FIELDS, add_flags, apply_flags
from jaxcnn.config.overrides import apply_overrides, convert, convert_field, field_types, parse_assignment

__all__ = [
    "ExperimentConfig", "FIELD_CHECKS", "validate_config", "argument_type", "positive_int", "non_negative_int",
    "positive_float", "port_number", "checkpoint_choice", "FLAG_FIELDS", "add_flags", "apply_flags",
    "apply_overrides", "convert", "convert_field", "field_types", "parse_assignment",
]
