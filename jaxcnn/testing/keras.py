"""`assert_keras_parity`: a Keras model and its jaxcnn import compute the same outputs.

    from jaxcnn.testing import assert_keras_parity
    assert_keras_parity(None, keras_model, x)           # whole model through `from_keras`
    assert_keras_parity("mnist_cnn", keras_model, x)    # its weights in a registered model

Keras (tf_keras or Keras 3) is imported by the caller; this module only calls the model.
"""

from __future__ import annotations

import os
import tempfile

import jax
import numpy as np

from jaxcnn.keras import from_keras, load_keras_weights


def _keras_outputs(keras_model, inputs) -> list[np.ndarray]:
    out = keras_model(inputs if len(inputs) > 1 else inputs[0], training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o) for o in out]


def _output_activation(keras_model) -> str:
    act = getattr(keras_model.layers[-1], "activation", None)
    return getattr(act, "__name__", "linear")


def _save_weights(keras_model, tmp: str) -> str:
    module = type(keras_model).__module__
    if module.startswith(("tf_keras", "keras.src.engine", "tensorflow")):
        path = os.path.join(tmp, "weights.h5")
    else:
        path = os.path.join(tmp, "model.weights.h5")
    keras_model.save_weights(path)
    return path


def assert_keras_parity(model_or_name, keras_model, inputs, rtol: float = 1e-5):
    """Import `keras_model` through jaxcnn's public importers and compare outputs on `inputs`.

    model_or_name: None (or "keras") for the whole model through `jaxcnn.keras.from_keras`
      (final softmax/sigmoid kept); a registered model name or a jaxcnn module instance to load
      the Keras weights into it (`load_keras_weights`); its logits then go through the Keras
      model's final softmax/sigmoid before the comparison.
    inputs: one array, or a list of arrays for a model with several inputs.
    rtol: bound on max |ours - Keras| / max |Keras| for each output.

    Raises AssertionError naming the output that differs, where and by how much.
    Returns the jaxcnn (model, variables).
    """
    inputs = [np.asarray(x, np.float32) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    expected = _keras_outputs(keras_model, inputs)
    if model_or_name is None or model_or_name == "keras":
        model, variables = from_keras(keras_model, logits=False)
        ours = model.apply(variables, *inputs, train=False)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            model, variables = load_keras_weights(model_or_name, _save_weights(keras_model, tmp),
                                                  input_shape=inputs[0].shape[1:])
        ours = model.apply(variables, *inputs, train=False)
        act = _output_activation(keras_model)
        if act == "softmax":
            ours = jax.nn.softmax(ours, axis=-1)
        elif act == "sigmoid":
            ours = jax.nn.sigmoid(ours)
    ours = [np.asarray(o) for o in (ours if isinstance(ours, tuple) else (ours,))]
    if len(ours) != len(expected):
        raise AssertionError(f"the jaxcnn model gives {len(ours)} outputs, Keras {len(expected)}")
    names = getattr(keras_model, "output_names", None) or [f"output {i}" for i in range(len(expected))]
    for i, (a, b) in enumerate(zip(ours, expected)):
        if a.shape != b.shape:
            raise AssertionError(f"Keras output {i} ({names[i]}): shape {a.shape} in jaxcnn, {b.shape} in Keras")
        diff = np.abs(a.astype(np.float64) - b)
        scale = float(np.abs(b).max()) or 1.0
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
        if diff.size and diff[worst] > rtol * scale:
            raise AssertionError(
                f"Keras output {i} ({names[i]}) differs: max |jaxcnn - Keras| = {diff[worst]:.3g} at "
                f"index {tuple(int(j) for j in worst)} (jaxcnn {a[worst]:.6g}, Keras {b[worst]:.6g}), "
                f"{diff[worst] / scale:.3g} of max |Keras| {scale:.3g} > rtol {rtol:g}")
    return model, variables
