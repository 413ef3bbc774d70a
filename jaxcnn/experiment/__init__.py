"""Experiments as data: a config plus `train_and_evaluate(config, workdir)` (Flax examples' shape).

An experiment file holds `get_config()` and nothing else of substance; every step it takes is an
importable function, so users can run the same recipe from their own code:

    runner     train_and_evaluate, run, main (the command-line entry), the fine-tune phase
    builders   load_data, model_card, build_trainer, callbacks
    extras     EXTRAS, register_extra: extra figures and metrics some tutorials show

The config, its checks and its flags live in jaxcnn.config; the run folder in jaxcnn.run. Their
names are importable from here too, as they were when this was one module.
"""

import dataclasses  # noqa: F401 - `jaxcnn.experiment.dataclasses.replace`, as before the split

from jaxcnn import config_flags  # noqa: F401 - the old module attribute
from jaxcnn.config import (FIELD_CHECKS, FLAG_FIELDS, ExperimentConfig, add_flags, apply_flags,
                           positive_int, validate_config)
from jaxcnn.experiment.builders import (build_trainer, callbacks, checkpoint_callback, data_source, load_data,
                                        model_card, model_kwargs, steps_per_epoch)
from jaxcnn.experiment.extras import EXTRAS, register_extra
from jaxcnn.experiment.runner import RecordProgress, _progress_recorder, main, run, train_and_evaluate
from jaxcnn.run import (CONFIG_FILE, RERUN_FREE_FIELDS, RunFolder, check_workdir, config_differences,
                        config_record, prepare_workdir, strict_json)
from jaxcnn.run import write_json as _write_json  # noqa: F401 - the old private name (tests use it)

__all__ = [
    "ExperimentConfig", "FIELD_CHECKS", "FLAG_FIELDS", "add_flags", "apply_flags", "validate_config", "positive_int",
    "build_trainer", "callbacks", "checkpoint_callback", "data_source", "load_data", "model_card", "model_kwargs",
    "steps_per_epoch", "EXTRAS", "register_extra", "RecordProgress", "main", "run", "train_and_evaluate",
    "CONFIG_FILE", "RERUN_FREE_FIELDS", "RunFolder", "check_workdir", "config_differences", "config_record",
    "prepare_workdir", "strict_json",
]
