"""Keras models and weights -> Flax modules and variables, stored as Orbax checkpoints.

    model, variables = jaxcnn.weights.from_keras("model.keras")        # architecture + weights
    model, variables = jaxcnn.weights.load_keras_weights("mnist_cnn", "weights.h5")  # into ours
    variables = jaxcnn.weights.load_keras_h5("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    jaxcnn.weights.convert_keras_h5("vgg16", "in.h5", "out_dir")   # same, saved with Orbax
    variables = jaxcnn.weights.restore_variables("out_dir")
"""

from jaxcnn.weights.keras_h5 import (WeightConversionError, convert_keras_h5, download_keras_weights,
                                     load_keras_h5, load_keras_weights, main_convert, read_keras_h5)
from jaxcnn.weights.keras_model import (from_keras, import_keras, keras_spec, load_imported,
                                        main_import, output_activations)
from jaxcnn.weights.store import read_metadata, restore_variables, save_variables

__all__ = ["WeightConversionError", "convert_keras_h5", "download_keras_weights", "from_keras",
           "import_keras", "keras_spec", "load_imported", "load_keras_h5", "load_keras_weights",
           "main_convert", "main_import", "output_activations", "read_keras_h5", "read_metadata",
           "restore_variables", "save_variables"]
