"""Export a trained run to where models are served: SavedModel, TFLite, ONNX, Keras 3.

    jaxcnn export runs/mnist_cnn --format savedmodel     # also: tflite, onnx, keras

Every format takes a batch of images of any size (the batch dimension is symbolic) in the run's
input dtype (uint8 [0, 255] when it trained on uint8 images, float32 otherwise) and returns the
class probabilities (softmax; sigmoid for binary models): the scaling and the output activation
are inside the exported model, so a server feeds raw pixels.

- savedmodel: `jax2tf.convert` with a polymorphic batch; one `serving_default` signature with
  the input named `image` and the output `probabilities`. The graph holds the model as StableHLO
  (an `XlaCallModule` op, lowered for CPU, CUDA and TPU), which TensorFlow and TF Serving run.
- tflite: the TFLite converter reads that SavedModel and lowers the StableHLO to TFLite builtins.
- onnx: tf2onnx converts the TFLite model. tf2onnx cannot read the SavedModel's `XlaCallModule`;
  jax2onnx (JAX -> ONNX directly) pins orbax-checkpoint below the version jaxcnn uses and pulls
  equinox, netron and a hub client, so the TFLite graph, already lowered to plain ops, is the
  route that needs no new heavy dependency. The batch dimension stays symbolic.
- keras: a Keras 3 functional model with the same layers, names and weights, built for the
  registered models whose layers Keras has (the MNIST/CIFAR CNNs and MLP, the BatchNorm CNN) by
  their twins in `jaxcnn.keras.builders`.

`check_export` runs an exported file in its own runtime (TensorFlow, the TFLite interpreter,
ONNX Runtime, Keras) and compares with jaxcnn's probabilities.

Post-training quantization (`quantize=`, tflite and onnx): "int8" is full-integer (int8 weights
and activations, scales calibrated on `representative` images, e.g. the run's training data;
the input and output keep their types, so a server still feeds raw pixels), "dynamic" stores
int8 weights and quantizes activations on the fly. TFLite quantizes with its own converter; ONNX
takes the float ONNX model through `onnxruntime.quantization` (static QDQ, per channel; or
dynamic). A quantized model is checked by `check_quantized`: the share of test images whose
predicted class agrees with jaxcnn's, and both accuracies.

Every export carries a sha256 record (jaxcnn.checkpoint.integrity): a folder its
`jaxcnn_checksums.json` inside, a file `NAME.jaxcnn_checksums.json` beside it. `run_exported`
(and so `check_export`) verifies it before loading.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings

import jax
import numpy as np

from jaxcnn.checkpoint.integrity import (Corrupt, file_record_path, verify_checksums, verify_file_checksum,
                                         write_checksums, write_file_checksum)
from jaxcnn.data.pipeline import import_tf
from jaxcnn.errors import UsageError
from jaxcnn.keras.builders import EXPORT_BUILDERS

FORMATS = ("savedmodel", "tflite", "onnx", "keras")
# The modules each format needs, and the extra that installs them.
REQUIREMENTS = {
    "savedmodel": (("tensorflow",), "jaxcnn[tf]"),
    "tflite": (("tensorflow",), "jaxcnn[tf]"),
    "onnx": (("tensorflow", "tf2onnx", "onnxruntime"), "jaxcnn[export]"),
    "keras": (("keras",), "jaxcnn[export]"),
}
DEFAULT_NAMES = {"savedmodel": "savedmodel", "tflite": "model.tflite", "onnx": "model.onnx", "keras": "model.keras"}
# Largest allowed max|exported - jaxcnn| / max|jaxcnn| per format (TFLite's kernels sum differently).
TOLERANCE = {"savedmodel": 1e-5, "tflite": 1e-4, "onnx": 1e-5, "keras": 1e-5}
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
QUANTIZE = ("int8", "dynamic")  # post-training quantization, tflite and onnx
QUANTIZABLE = ("tflite", "onnx")
# A quantized export must agree with jaxcnn's predicted class on at least this share of images.
MIN_AGREEMENT = 0.97
SERVING_PLATFORMS = ("cpu", "cuda", "tpu")


class ExportError(RuntimeError):
    """An export that failed or cannot be made here."""


class ExportUnavailableError(ExportError, UsageError):
    """A format that cannot be made here: a missing runtime, a model Keras has no layers for (the
    user's choice to change, so the command line exits 2)."""


class ExportMismatchError(ExportError):
    """An exported model whose outputs differ from jaxcnn's beyond the format's tolerance."""


def require(fmt: str) -> None:
    """Raise ExportError naming the extra to install when a format's runtime is missing."""
    if fmt not in FORMATS:
        raise ExportUnavailableError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    modules, extra = REQUIREMENTS[fmt]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportUnavailableError(f"--format {fmt} needs {', '.join(missing)}, which is not installed: "
                          f"pip install '{extra}'")


def serving_function(predictor, activation: bool = True):
    """`f(images) -> probabilities` in JAX: scaling, model and output activation, weights as constants
    (`activation=False`: the logits).

    The convolutions take XLA's form here: with a symbolic batch, `layers.conv_general_dilated`
    keeps `lax.conv_general_dilated`, which every serving runtime has as one op.
    """

    card, model, variables = predictor.card, predictor.card.build_model(), predictor.variables

    def f(images):
        logits = model.apply(variables, card.scale(images), train=False)
        if not activation:
            return logits
        if card.output_activation == "sigmoid":
            p = jax.nn.sigmoid(logits).reshape(logits.shape[0])
            return jax.numpy.stack([1.0 - p, p], axis=1)  # the same [n, 2] as Predictor.predict
        return jax.nn.softmax(logits, axis=-1)

    return f


def _tf():
    return import_tf()


def _input_spec(tf, card):
    dtype = tf.uint8 if card.input_dtype == "uint8" else tf.float32
    return tf.TensorSpec([None, *card.input_shape], dtype, name=INPUT_NAME)


def _tf_activation(tf, card, logits):
    if card.output_activation == "sigmoid":
        p = tf.reshape(tf.sigmoid(logits), [-1])
        return tf.stack([1.0 - p, p], axis=1)
    return tf.nn.softmax(logits, axis=-1)


def export_savedmodel(predictor, path: str, tf_activation: bool = False) -> str:
    """`tf_activation`: the output activation as a TensorFlow op after the JAX graph, so that the
    TFLite converter makes it its SOFTMAX/LOGISTIC builtin, which has an int8 kernel (JAX's
    exp/sum/div, quantized to int8, can divide by a zero sum)."""
    from jax.experimental import jax2tf

    tf = _tf()
    card = predictor.card
    poly = "(b, " + ", ".join(str(d) for d in card.input_shape) + ")"
    # Lowered for every serving platform, not only the one exporting (a GPU host's export runs on CPU).
    converted = jax2tf.convert(serving_function(predictor, activation=not tf_activation), polymorphic_shapes=[poly],
                               with_gradient=False, native_serialization_platforms=SERVING_PLATFORMS)
    module = tf.Module()

    @tf.function(autograph=False, input_signature=[_input_spec(tf, card)])
    def serve(image):
        out = converted(image)
        return {OUTPUT_NAME: _tf_activation(tf, card, out) if tf_activation else out}

    module.serve = serve
    module.class_names = tf.constant(list(card.class_names))  # kept beside the graph for servers
    _replace(path, lambda tmp: tf.saved_model.save(module, tmp, signatures={"serving_default": serve}))
    return path


def export_tflite(predictor, path: str, quantize: str | None = None, representative=None) -> str:
    tf = _tf()
    with tempfile.TemporaryDirectory() as tmp:
        saved = export_savedmodel(predictor, os.path.join(tmp, "savedmodel"), tf_activation=bool(quantize))
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "int8":
            batches = _representative_batches(predictor, representative)
            converter.representative_dataset = lambda: ([b] for b in batches)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        flat = converter.convert()
    _replace(path, lambda tmp: open(tmp, "wb").write(flat))
    return path


def _representative_batches(predictor, images) -> list:
    """Calibration batches (of 1 image, as converters feed them) in the model's input dtype."""
    if images is None or len(images) == 0:
        raise ExportUnavailableError("--quantize int8 needs representative images (the run's training data) "
                                     "to calibrate activation ranges")
    images = predictor.check_images(np.asarray(images))
    return [images[i:i + 1] for i in range(len(images))]


def _quantize_onnx(src: str, dst: str, quantize: str, predictor, representative) -> None:
    from onnxruntime import quantization as q

    if quantize == "dynamic":
        q.quantize_dynamic(src, dst, weight_type=q.QuantType.QInt8)
        return
    batches = _representative_batches(predictor, representative)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {INPUT_NAME: b}

    q.quantize_static(src, dst, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8)


def export_onnx(predictor, path: str, opset: int = 17, quantize: str | None = None, representative=None) -> str:
    import tf2onnx

    with tempfile.TemporaryDirectory() as tmp:
        lite = export_tflite(predictor, os.path.join(tmp, "model.tflite"))
        proto, _ = tf2onnx.convert.from_tflite(lite, opset=opset)
    inp = proto.graph.input[0]
    for vi in (inp, proto.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"  # tf2onnx names it unk__N
    _rename_io(proto, inp.name, INPUT_NAME)
    _rename_io(proto, proto.graph.output[0].name, OUTPUT_NAME)
    if not quantize:
        _replace(path, lambda tmp: open(tmp, "wb").write(proto.SerializeToString()))
        return path
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float.onnx")
        with open(src, "wb") as f:
            f.write(proto.SerializeToString())
        _replace(path, lambda out: _quantize_onnx(src, out, quantize, predictor, representative))
    return path


def _rename_io(proto, old: str, new: str) -> None:
    for vi in list(proto.graph.input) + list(proto.graph.output):
        if vi.name == old:
            vi.name = new
    for node in proto.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _replace(path: str, write) -> None:
    """Write to a temporary sibling, with its checksum record, then move into place: a failed
    export leaves no half file."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    ext = os.path.splitext(path)[1]
    if ext:
        tmp += ext  # keras insists on the .keras suffix
    try:
        write(tmp)
        if os.path.isdir(tmp):
            write_checksums(tmp)
        elif os.path.exists(file_record_path(path)):
            os.remove(file_record_path(path))  # the old file's record goes before the old file
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        os.replace(tmp, path)
        if os.path.isfile(path):
            write_file_checksum(path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


# -- Keras ------------------------------------------------------------------------------------------
def keras_model(predictor):
    """A Keras 3 functional model with the run's layers and weights (raw pixels in, probabilities out)."""
    import keras

    card, model = predictor.card, predictor.card.build_model()
    builders = EXPORT_BUILDERS
    build = builders.get(type(model))
    if build is None:
        known = ", ".join(sorted(c.__name__ for c in builders))
        raise ExportUnavailableError(f"--format keras: no Keras layers for model {card.model!r} ({type(model).__name__}); "
                          f"Keras export covers {known}. Use --format savedmodel or onnx")
    L = keras.layers
    inputs = keras.Input(shape=card.input_shape, dtype=card.input_dtype, name=INPUT_NAME)
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs) if card.input_scaling == "divide_by_255" else inputs
    logits = build(L, model, x)
    if card.output_activation == "sigmoid":  # one logit -> [1 - p, p], like Predictor.predict
        p = L.Activation("sigmoid", name="sigmoid")(logits)
        out = L.Concatenate(name=OUTPUT_NAME)([L.Rescaling(-1.0, offset=1.0, name="one_minus")(p), p])
    else:
        out = L.Activation("softmax", name=OUTPUT_NAME)(logits)
    kmodel = keras.Model(inputs, out, name=card.model)
    _copy_weights(kmodel, predictor.variables)
    return kmodel


def _copy_weights(kmodel, variables) -> None:
    params, stats = variables["params"], variables.get("batch_stats", {})
    for layer in kmodel.layers:
        if not layer.weights or layer.name not in params:
            continue
        p = params[layer.name]
        if "scale" in p:  # BatchNormalization: gamma, beta, moving mean, moving variance
            s = stats[layer.name]
            layer.set_weights([np.asarray(p["scale"]), np.asarray(p["bias"]), np.asarray(s["mean"]),
                               np.asarray(s["var"])])
        else:
            layer.set_weights([np.asarray(p["kernel"]), np.asarray(p["bias"])])


def export_keras(predictor, path: str) -> str:
    kmodel = keras_model(predictor)
    _replace(path, lambda tmp: kmodel.save(tmp))
    return path


# -- export and check -------------------------------------------------------------------------------
_EXPORTERS = {"savedmodel": export_savedmodel, "tflite": export_tflite, "onnx": export_onnx, "keras": export_keras}


def require_quantize(fmt: str, quantize: str | None) -> None:
    if quantize is None:
        return
    if quantize not in QUANTIZE:
        raise ExportUnavailableError(f"unknown --quantize {quantize!r}; known: {', '.join(QUANTIZE)}")
    if fmt not in QUANTIZABLE:
        raise ExportUnavailableError(f"--quantize works with --format {' or '.join(QUANTIZABLE)}, not {fmt}")


def export(predictor, fmt: str, path: str, quantize: str | None = None, representative=None) -> str:
    """Write `predictor`'s model in format `fmt` to `path`; returns the path. `quantize`: "int8"
    (full integer, calibrated on `representative` images) or "dynamic", for tflite and onnx."""
    require(fmt)
    require_quantize(fmt, quantize)
    if quantize == "int8":
        _representative_batches(predictor, representative)  # refused before any conversion
    if quantize:
        return _EXPORTERS[fmt](predictor, path, quantize=quantize, representative=representative)
    return _EXPORTERS[fmt](predictor, path)


class ExportCorruptError(ExportError):
    """An exported file or folder whose bytes differ from its checksum record."""


def verify_export(path: str) -> bool:
    """Check an export against its checksum record (False: none, an export from an older jaxcnn);
    raise ExportCorruptError naming the damaged file."""
    try:
        return verify_checksums(path) if os.path.isdir(path) else verify_file_checksum(path)
    except Corrupt as e:
        raise ExportCorruptError(f"{path}: {e}; export it again") from None


def run_exported(fmt: str, path: str, images: np.ndarray) -> np.ndarray:
    """The exported model's outputs for `images`, computed in the format's own runtime (after
    checking its checksum record)."""
    require(fmt)
    verify_export(path)
    if fmt == "savedmodel":
        tf = _tf()
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return serve(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()
    if fmt == "tflite":
        tf = _tf()
        with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to ai_edge_litert
            warnings.simplefilter("ignore", UserWarning)
            interp = tf.lite.Interpreter(model_path=path)
        inp = interp.get_input_details()[0]
        interp.resize_tensor_input(inp["index"], images.shape)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], images.astype(inp["dtype"], copy=False))
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    import keras

    return np.asarray(keras.models.load_model(path).predict(images, verbose=0))


def relative_error(got, want) -> float:
    """max |got - want| / max |want|: the error measured against the outputs' scale."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def check_export(predictor, fmt: str, path: str, images: np.ndarray) -> float:
    """Run the export on `images` in its runtime; raise ExportMismatchError beyond TOLERANCE[fmt]."""
    images = predictor.check_images(images)
    want = predictor.predict(images)
    got = run_exported(fmt, path, images)
    err = relative_error(got, want)
    if not err <= TOLERANCE[fmt]:
        raise ExportMismatchError(f"{path}: {fmt} outputs differ from jaxcnn's by {err:.3g} (relative; "
                                  f"allowed {TOLERANCE[fmt]:g}) on {len(images)} images")
    return err


def check_quantized(predictor, fmt: str, path: str, images: np.ndarray, labels=None) -> dict:
    """A quantized export against jaxcnn's float model on `images`: `{"agreement"}` (same predicted
    class), and with `labels` both accuracies. Raises ExportMismatchError below MIN_AGREEMENT."""
    images = predictor.check_images(images)
    want, got = predictor.predict(images), run_exported(fmt, path, images)
    if got.shape != want.shape:
        raise ExportMismatchError(f"{path}: outputs of shape {got.shape}, expected {want.shape}")
    out = {"images": len(images), "agreement": float(np.mean(got.argmax(1) == want.argmax(1)))}
    if labels is not None:
        y = np.asarray(labels)
        y = y.argmax(1) if y.ndim == 2 else y.astype(int).reshape(-1)
        out.update(accuracy=float(np.mean(got.argmax(1) == y)), float_accuracy=float(np.mean(want.argmax(1) == y)))
    if out["agreement"] < MIN_AGREEMENT:
        raise ExportMismatchError(f"{path}: the quantized model predicts jaxcnn's class on {out['agreement']:.3f} "
                                  f"of {len(images)} images (at least {MIN_AGREEMENT} wanted)")
    return out
