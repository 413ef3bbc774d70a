"""Old home of `KerasGraph`, kept so that `jaxcnn.models.keras_graph.KerasGraph` still imports: use `jaxcnn.keras.graph`."""

from jaxcnn.keras.graph import (ACTIVATIONS, MODEL_CLASSES, WEIGHT_ORDER, KerasGraph, eval_variables,  # noqa: F401
                                init_shapes, weight_roles)
