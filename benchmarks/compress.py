"""N1 on MNIST made smaller: float, pruned 50/80/90%, int8 post-training (TFLite), int8 QAT (Qwix);
beside Keras' own tfmot pruning and TFLite int8 on the same network. One run, CPU.

    nice python benchmarks/compress.py [--epochs 2] [--data-dir DIR] [--out benchmarks/results_compress_cpu_2core.json]
                                       [--plot docs/compression_accuracy_size.png]

Recipe (tfmot's own guides: train, then fine-tune compressed): the float model trains `--epochs`
epochs (batch 32, Adam); every variant then trains ONE more epoch from those weights: the float
one plainly ("float", the like-for-like reference), the pruned ones with a polynomial schedule
0 -> target over the first 2/3 of that epoch (every 100 steps, per layer), the QAT one with
Qwix int8 fake quantization. Keras does the same with tfmot's `prune_low_magnitude` (80%).
Sizes: the float32 weights, gzip of them (what zeros save on disk), TFLite file sizes (and
gzipped). Inference: milliseconds per 1000 test images on this CPU, JAX (jit, batch 1000) and
the TFLite interpreter (2 threads, batch 1000), measured in the same process.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot works on tf_keras
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn import export  # noqa: E402
from jaxcnn.compress import prune, pruning_from_spec, sparsity_report  # noqa: E402
from jaxcnn.compress.quantize import int8_size_bytes, qat_model  # noqa: E402
from jaxcnn.data import load_dataset  # noqa: E402
from jaxcnn.model_card import make_card  # noqa: E402
from jaxcnn.models import get_model  # noqa: E402
from jaxcnn.predict import Predictor  # noqa: E402
from jaxcnn.train import Trainer, get_optimizer  # noqa: E402

del prune  # imported for readers: pruning_from_spec builds it


def _gzip_len(data: bytes) -> int:
    return len(gzip.compress(data, 9))


def _params_bytes(params) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *[np.asarray(a) for a in jax.tree.leaves(params)])
    return buf.getvalue()


def _ms_per_1000(fn, x, repeats=3):
    fn(x[:1000])  # warm (compile)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / (len(x) / 1000.0)


def jax_row(name, trainer, ds, epochs, t_train):
    params = jax.device_get(trainer.state.params)
    counts = sparsity_report(params)
    raw = _params_bytes(params)
    acc = trainer.evaluate(ds.x_test, ds.y_test, batch_size=1000)["accuracy"]
    ms = _ms_per_1000(lambda x: np.asarray(trainer.predict(x, batch_size=1000)), ds.x_test[:5000])
    return {"variant": name, "runtime": "jax", "test_accuracy": round(float(acc), 4), "params": counts["params"],
            "nonzero": counts["nonzero"], "kernel_sparsity": round(counts["kernel_sparsity"], 4),
            "size_bytes": len(raw), "size_gzip_bytes": _gzip_len(raw), "int8_weights_bytes": int8_size_bytes(params),
            "ms_per_1000_images": round(ms, 1), "epochs": epochs, "train_seconds": round(t_train, 1)}


def _tflite_run(path, x, tf):
    interp = tf.lite.Interpreter(model_path=path, num_threads=2)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    shape = [None]

    def run(images):
        outs = []
        for i in range(0, len(images), 1000):
            batch = images[i:i + 1000]
            if shape[0] != batch.shape:
                interp.resize_tensor_input(inp["index"], batch.shape)
                interp.allocate_tensors()
                shape[0] = batch.shape
            interp.set_tensor(inp["index"], batch.astype(inp["dtype"]))
            interp.invoke()
            outs.append(interp.get_tensor(out["index"]).copy())
        return np.concatenate(outs)

    return run


def tflite_row(name, path, ds, reference=None, who="jaxcnn"):
    tf = export.import_tf()
    run = _tflite_run(path, ds.x_test, tf)
    probs = run(ds.x_test)
    data = open(path, "rb").read()
    row = {"variant": name, "runtime": "tflite", "by": who, "test_accuracy": round(float(np.mean(probs.argmax(1) ==
                                                                                                  ds.y_test)), 4),
           "size_bytes": len(data), "size_gzip_bytes": _gzip_len(data),
           "ms_per_1000_images": round(_ms_per_1000(run, ds.x_test[:5000]), 1)}
    if reference is not None:
        row["agreement_with_float"] = round(float(np.mean(probs.argmax(1) == reference)), 4)
    return row, probs


def predictor_of(trainer, ds):
    card = make_card(model="mnist_cnn", model_kwargs={"num_classes": 10}, input_shape=ds.input_shape,
                     input_dtype=ds.x_train.dtype, class_names=ds.class_names,
                     loss="sparse_categorical_crossentropy", dataset="mnist")
    return Predictor(card, trainer, "benchmark", None, batch_size=1000)


def fit(trainer, ds, epochs):
    t0 = time.perf_counter()
    trainer.fit(ds.x_train, ds.y_train, epochs=epochs, batch_size=32, verbose=0)
    return time.perf_counter() - t0


def run_jaxcnn(ds, epochs, tmp, log):
    rows, steps = [], len(ds.x_train) // 32
    base = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", seed=0)
    t_base = fit(base, ds, epochs)
    float_params = jax.device_get(base.state.params)
    rows.append(jax_row(f"float ({epochs} epochs)", base, ds, epochs, t_base))
    log(rows[-1])
    # the like-for-like float reference: one more epoch, as every compressed variant gets
    t = fit(base, ds, 1)
    rows.append(jax_row("float", base, ds, epochs + 1, t_base + t))
    log(rows[-1])
    pred = predictor_of(base, ds)
    sample = ds.take(200, 1).x_train  # calibration: 200 training images over the classes
    float_tfl = export.export(pred, "tflite", os.path.join(tmp, "float.tflite"))
    row, float_probs = tflite_row("float", float_tfl, ds)
    reference = float_probs.argmax(1)
    rows.append(row)
    log(row)
    int8 = export.export(pred, "tflite", os.path.join(tmp, "int8.tflite"), quantize="int8", representative=sample)
    rows.append(tflite_row("int8 PTQ", int8, ds, reference)[0])
    log(rows[-1])
    dyn = export.export(pred, "tflite", os.path.join(tmp, "dynamic.tflite"), quantize="dynamic")
    rows.append(tflite_row("dynamic-range PTQ", dyn, ds, reference)[0])
    log(rows[-1])
    for sparsity in (0.5, 0.8, 0.9):
        wrap = pruning_from_spec(str(sparsity), steps)
        tr = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer=lambda lr, w=wrap: w(get_optimizer("adam", lr)),
                     seed=0, params=float_params)
        t = fit(tr, ds, 1)
        rows.append(jax_row(f"pruned {int(sparsity * 100)}%", tr, ds, epochs + 1, t_base + t))
        log(rows[-1])
        if sparsity == 0.8:
            path = export.export(predictor_of(tr, ds), "tflite", os.path.join(tmp, "p80_int8.tflite"),
                                 quantize="int8", representative=sample)
            rows.append(tflite_row("pruned 80% + int8 PTQ", path, ds, reference)[0])
            log(rows[-1])
    qat = Trainer(qat_model(get_model("mnist_cnn")), (28, 28, 1), optimizer="adam", seed=0, params=float_params)
    t = fit(qat, ds, 1)
    rows.append(jax_row("int8 QAT (fake-quant, jax)", qat, ds, epochs + 1, t_base + t))
    log(rows[-1])
    path = export.export(predictor_of(qat, ds), "tflite", os.path.join(tmp, "qat_int8.tflite"), quantize="int8",
                         representative=sample)
    rows.append(tflite_row("int8 QAT", path, ds, reference)[0])
    log(rows[-1])
    return rows


def run_keras(ds, epochs, tmp, log):
    """The same network in tf_keras: float, tfmot 80% pruning fine-tune, TFLite float and int8."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    L = keras.layers
    model = keras.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                              L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                              L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, xt = ds.x_train.astype("float32") / 255.0, ds.x_test.astype("float32") / 255.0
    t0 = time.perf_counter()
    model.fit(x, ds.y_train, epochs=epochs, batch_size=32, verbose=0)
    t_base = time.perf_counter() - t0
    weights = model.get_weights()
    rows = []

    def keras_row(name, m, t):
        w = m.get_weights()
        raw = _params_bytes(w)
        kernels = [a for a in w if a.ndim >= 2]
        return {"variant": name, "runtime": "keras", "by": "keras", "test_accuracy":
                round(float(m.evaluate(xt, ds.y_test, verbose=0)[1]), 4), "params": int(sum(a.size for a in w)),
                "nonzero": int(sum(np.count_nonzero(a) for a in w)),
                "kernel_sparsity": round(1 - sum(np.count_nonzero(a) for a in kernels) / sum(a.size for a in kernels), 4),
                "size_bytes": len(raw), "size_gzip_bytes": _gzip_len(raw), "epochs": epochs + 1,
                "train_seconds": round(t, 1)}

    t0 = time.perf_counter()
    model.fit(x, ds.y_train, epochs=1, batch_size=32, verbose=0)
    rows.append(keras_row("float", model, t_base + time.perf_counter() - t0))
    log(rows[-1])

    def to_tflite(m, name, int8=False):
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        if int8:
            sample = ds.take(200, 1).x_train.astype("float32") / 255.0
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([sample[i:i + 1]] for i in range(len(sample)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        path = os.path.join(tmp, name)
        open(path, "wb").write(conv.convert())
        return path

    keras_test = _KerasScaled(ds, xt)
    float_path = to_tflite(model, "keras_float.tflite")
    row, probs = tflite_row("float", float_path, keras_test, who="keras")
    rows.append(row)
    log(row)
    rows.append(tflite_row("int8 PTQ", to_tflite(model, "keras_int8.tflite", int8=True), keras_test,
                           probs.argmax(1), who="keras")[0])
    log(rows[-1])
    base = keras.models.clone_model(model)
    base.set_weights(weights)
    steps = len(x) // 32
    end = (2 * steps) // 3  # as pruning_from_spec: to the target at 2/3 of the epoch, every min(100, end/10) steps
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=end,
                                                    frequency=max(1, min(100, end // 10)))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    pruned.fit(x, ds.y_train, epochs=1, batch_size=32, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    stripped.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rows.append(keras_row("pruned 80% (tfmot)", stripped, t_base + time.perf_counter() - t0))
    log(rows[-1])
    return rows


class _KerasScaled:
    """The dataset with float [0, 1] test images (the Keras models take them scaled)."""

    def __init__(self, ds, xt):
        self.x_test, self.y_test = xt, ds.y_test


def plot(rows, path):
    """Accuracy against gzip-compressed size; one point per model (float once per library)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    shown = [r for r in rows if not r["variant"].startswith("float (") and r["variant"] != "dynamic-range PTQ"
             and not (r["variant"] == "float" and r["runtime"] == "tflite")]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, r in enumerate(shown):
        size = r["size_gzip_bytes"] / 1024
        keras = r.get("by") == "keras"
        ax.scatter(size, r["test_accuracy"], marker="^" if keras else ("s" if r["runtime"] == "tflite" else "o"),
                   color="tab:orange" if keras else "tab:blue", zorder=3)
        label = ("Keras " if keras else "") + r["variant"] + (" .tflite" if r["runtime"] == "tflite" else "")
        ax.annotate(label, (size, r["test_accuracy"]), fontsize=7, textcoords="offset points",
                    xytext=(5, -9 if keras else 3), ha="left")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([50, 100, 200, 450])
    ax.set_xlabel("size gzip-compressed, KiB (log): weights as npz, or the .tflite file")
    ax.set_ylabel("test accuracy (MNIST, 10,000 images)")
    ax.set_title("N1 on MNIST: accuracy against size (blue jaxcnn, orange Keras/tfmot)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2, help="float training epochs before the one fine-tune epoch")
    p.add_argument("--data-dir")
    p.add_argument("--limit", type=int, help="N training and N test images (a smoke run)")
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--out")
    p.add_argument("--plot")
    p.add_argument("--replot", metavar="JSON", help="only draw --plot from an earlier run's results")
    args = p.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        plot(saved["jaxcnn"] + saved["keras"], args.plot)
        return
    ds = load_dataset("mnist", data_dir=args.data_dir)
    if args.limit:
        ds = ds.take(args.limit, args.limit)
    log = lambda row: print(json.dumps(row), file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_jaxcnn(ds, args.epochs, tmp, log)
        keras_rows = [] if args.no_keras else run_keras(ds, args.epochs, tmp, log)
    result = {"jaxcnn": rows, "keras": keras_rows,
              "config": {"model": "N1 (mnist_cnn)", "dataset": f"MNIST {len(ds.x_train)} train / {len(ds.x_test)} test",
                         "float_epochs": args.epochs, "fine_tune_epochs": 1, "batch_size": 32,
                         "prune_schedule": "polynomial 0 -> target over the first 2/3 of the fine-tune epoch, "
                                           "every 100 steps, per layer (kernels only)",
                         "qat": "qwix QtProvider int8 weights (per channel) and activations (dynamic)"},
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared and loaded; run under nice",
              "jax_version": jax.__version__, "wall_seconds": round(time.perf_counter() - t0, 1)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.plot:
        plot(rows + keras_rows, args.plot)


if __name__ == "__main__":
    main()
