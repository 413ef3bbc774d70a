"""Old path of the whole-model Keras import, kept as a shim: see `jaxcnn.keras.model` (import),
`jaxcnn.keras.spec` (config -> spec) and `jaxcnn.keras.h5` (reading the files)."""

from jaxcnn.weights import main_import  # noqa: F401
from jaxcnn.keras.h5 import read_keras_model  # noqa: F401
from jaxcnn.keras.model import from_keras, import_keras, imported_module, load_imported, output_activations  # noqa: F401
from jaxcnn.keras.spec import SUPPORTED, keras_spec  # noqa: F401
