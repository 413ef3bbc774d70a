"""Keras models and weight files -> Flax modules and variables (h5py only; no TensorFlow).

    model, variables = jaxcnn.keras.from_keras("model.keras")        # architecture + weights
    model, variables = jaxcnn.keras.load_keras_weights("mnist_cnn", "weights.h5")  # into ours
    variables = jaxcnn.keras.load_keras_h5("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    jaxcnn.keras.convert_keras_h5("vgg16", "in.h5", "out_dir")   # same, saved with Orbax
    jaxcnn.keras.import_keras("model.keras", "weights/my_model")  # then get_model("keras:weights/my_model")

Modules: `h5` reads the files, `spec` turns a Keras config into the layer spec that the linen
module `graph.KerasGraph` runs (`options`: the layers and options carried, `ops` and
`layers_conv`: their jax implementations, `regularizers`: Keras' penalties), `model` imports whole models, `convert` loads weights into the
registered jaxcnn models, `builders` writes the seed networks in Keras layers (for export and
the parity tests). This package
builds on `jaxcnn.models`, never the reverse: importing it registers the `keras:` model name
prefix with `jaxcnn.models.registry` (which imports this package on a first `keras:` name).
`jaxcnn.weights` is the old home of these names and re-exports them.
"""

from jaxcnn.keras.builders import BUILDERS, EXPORT_BUILDERS, keras_layers
from jaxcnn.keras.convert import (ARCHS, PUBLISHED, convert_keras_h5, download_keras_weights, load_keras_h5,
                                  load_keras_weights)
from jaxcnn.keras.errors import WeightConversionError
from jaxcnn.keras.graph import KerasGraph
from jaxcnn.keras.h5 import read_keras_h5, read_keras_model
from jaxcnn.keras.model import from_keras, import_keras, imported_module, load_imported, output_activations
from jaxcnn.keras.options import supported_text
from jaxcnn.keras.spec import SUPPORTED, keras_spec
from jaxcnn.models.registry import register_prefix

register_prefix("keras:", imported_module)

__all__ = ["ARCHS", "BUILDERS", "EXPORT_BUILDERS", "KerasGraph", "PUBLISHED", "SUPPORTED",
           "WeightConversionError", "convert_keras_h5", "download_keras_weights", "from_keras",
           "import_keras", "imported_module", "keras_layers", "keras_spec", "load_imported",
           "load_keras_h5", "load_keras_weights", "output_activations",
           "read_keras_h5", "read_keras_model", "supported_text"]
