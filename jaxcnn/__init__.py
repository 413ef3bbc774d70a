"""jaxcnn: JAX/Flax training for image CNNs, Keras-simple, from one CPU to many accelerators.

    import jaxcnn
    trainer = jaxcnn.train.Trainer(jaxcnn.models.get_model("mnist_cnn"), (28, 28, 1))

The subpackages (`data`, `models`, `train`, `keras`, `weights`, `checkpoint`, `testing`, ...) load
on first use of `jaxcnn.NAME`, so `import jaxcnn` is quick and never imports TensorFlow (the
tf.data pipelines load it when they run).
"""

import importlib

__version__ = "0.1.0"

# Loaded on first attribute access (PEP 562), each exactly as `import jaxcnn.NAME` would.
_SUBMODULES = ("checkpoint", "cli", "compress", "config", "data", "experiment", "export", "keras", "models", "parallel",
               "predict", "report", "run", "testing", "train", "transfer", "viz", "weights")
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
