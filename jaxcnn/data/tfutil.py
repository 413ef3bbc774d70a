"""TensorFlow for the input pipeline only: found and imported lazily, kept off every GPU.

The lowest module of `jaxcnn.data` after `errors`: decoders (image folders, audio), augmentation
and the tf.data pipeline all take TensorFlow from here, so none of them imports another for it.
"""

from __future__ import annotations

import importlib.util
import os


def has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def import_tf():
    """TensorFlow for tf.data only: imported lazily and kept off every GPU (XLA owns them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialized; devices were hidden by an earlier call
        pass
    return tf
