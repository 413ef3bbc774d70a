"""jaxcnn: JAX/Flax training for image CNNs, Keras-simple, from one CPU to many accelerators.

    import jaxcnn
    trainer = jaxcnn.train.Trainer(jaxcnn.models.get_model("mnist_cnn"), (28, 28, 1))
    trainer.fit(x, y, epochs=3); trainer.save("runs/mine")
    trainer = jaxcnn.load("runs/mine")     # in another process: the model, its weights, its card

The subpackages (`data`, `models`, `train`, `keras`, `weights`, `checkpoint`, `testing`, ...) load
on first use of `jaxcnn.NAME`, so `import jaxcnn` is quick and never imports TensorFlow (the
tf.data pipelines load it when they run).
"""

import importlib

__version__ = "0.1.0"

# Loaded on first attribute access (PEP 562), each exactly as `import jaxcnn.NAME` would.
_SUBMODULES = ("checkpoint", "cli", "compress", "config", "data", "experiment", "export", "keras", "models", "parallel",
               "predict", "report", "run", "testing", "train", "transfer", "viz", "weights")
# Functions loaded with their module on first use: name -> module.
_FUNCTIONS = {"load": "jaxcnn.predict"}
__all__ = ["__version__", *_SUBMODULES, "load"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_FUNCTIONS))
