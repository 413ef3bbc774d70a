"""Old path of the Keras weight-file conversion, kept as a shim: see `jaxcnn.keras.convert`
(loading into registered models) and `jaxcnn.keras.h5` (reading the files)."""

from jaxcnn.weights import main_convert  # noqa: F401
from jaxcnn.keras.convert import (ARCHS, PUBLISHED, TOP_LAYERS, build_model, convert_keras_h5,  # noqa: F401
                                  convert_layers, download_keras_weights, load_keras_h5, load_keras_weights,
                                  match_layers)
from jaxcnn.keras.errors import WeightConversionError  # noqa: F401
from jaxcnn.keras.h5 import k3_arrays, read_keras_h5  # noqa: F401
