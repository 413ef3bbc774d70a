"""Old home of the Keras import, kept as a compatibility package: `jaxcnn.keras` is the home now.

    model, variables = jaxcnn.weights.from_keras("model.keras")   # = jaxcnn.keras.from_keras
    variables = jaxcnn.weights.restore_variables("out_dir")       # jaxcnn.weights.store

The store functions load here; the Keras names (`from_keras`, `load_keras_h5`, ...) are the
objects of `jaxcnn.keras`, loaded on first access (module `__getattr__`), because
`jaxcnn.keras` itself saves through `jaxcnn.weights.store`: an eager import here would run
into `jaxcnn.keras` half-initialized whenever that package is imported first.
"""

from __future__ import annotations

import importlib
import warnings

from jaxcnn.weights.store import read_metadata, restore_variables, save_variables

# The names of this package that now live in jaxcnn.keras.
_MOVED = ("WeightConversionError", "convert_keras_h5", "download_keras_weights", "from_keras",
          "import_keras", "keras_spec", "load_imported", "load_keras_h5", "load_keras_weights",
          "output_activations", "read_keras_h5")

__all__ = sorted(_MOVED + ("main_convert", "main_import", "read_metadata", "restore_variables",
                           "save_variables"))


def _command(name: str, argv) -> int:
    warnings.warn(f"jaxcnn.weights.main_{name.split('-')[0]} is deprecated: use "
                  f"jaxcnn.cli.main([{name!r}, ...])", DeprecationWarning, stacklevel=3)
    return importlib.import_module("jaxcnn.cli").main([name, *(argv or [])])


def main_convert(argv=None) -> int:
    """Deprecated: `jaxcnn.cli.main(["convert-weights", *argv])` (an exit status; errors are one line)."""
    return _command("convert-weights", argv)


def main_import(argv=None) -> int:
    """Deprecated: `jaxcnn.cli.main(["import-keras", *argv])` (an exit status; errors are one line)."""
    return _command("import-keras", argv)


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(importlib.import_module("jaxcnn.keras"), name)
    raise AttributeError(f"module 'jaxcnn.weights' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MOVED))
