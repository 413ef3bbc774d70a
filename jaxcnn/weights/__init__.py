"""Old home of the Keras import and the weights folders, kept as a compatibility package.

`jaxcnn.keras` is the home of the Keras names (`from_keras`, `load_keras_h5`, ...) and
`jaxcnn.checkpoint` of the weights folders (`save_variables`, `restore_variables`,
`read_metadata`); this package re-exports them, so older code keeps working:

    model, variables = jaxcnn.weights.from_keras("model.keras")   # = jaxcnn.keras.from_keras
    variables = jaxcnn.weights.restore_variables("out_dir")       # = jaxcnn.checkpoint.restore_variables
"""

from __future__ import annotations

import importlib
import warnings

from jaxcnn.checkpoint.weights import read_metadata, restore_variables, save_variables
from jaxcnn.keras import (WeightConversionError, convert_keras_h5, download_keras_weights, from_keras,
                          import_keras, keras_spec, load_imported, load_keras_h5, load_keras_weights,
                          output_activations, read_keras_h5)

__all__ = ["WeightConversionError", "convert_keras_h5", "download_keras_weights", "from_keras", "import_keras",
           "keras_spec", "load_imported", "load_keras_h5", "load_keras_weights", "main_convert", "main_import",
           "output_activations", "read_keras_h5", "read_metadata", "restore_variables", "save_variables"]


def _command(name: str, argv) -> int:
    warnings.warn(f"jaxcnn.weights.main_{name.split('-')[0]} is deprecated: use "
                  f"jaxcnn.cli.main([{name!r}, ...])", DeprecationWarning, stacklevel=3)
    # The CLI builds on everything, this package included: looked up at call time.
    return importlib.import_module("jaxcnn.cli").main([name, *(argv or [])])


def main_convert(argv=None) -> int:
    """Deprecated: `jaxcnn.cli.main(["convert-weights", *argv])` (an exit status; errors are one line)."""
    return _command("convert-weights", argv)


def main_import(argv=None) -> int:
    """Deprecated: `jaxcnn.cli.main(["import-keras", *argv])` (an exit status; errors are one line)."""
    return _command("import-keras", argv)
