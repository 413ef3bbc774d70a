"""N1 on MNIST, batch 32: jaxcnn vs the tutorial's own Keras model (TensorFlow backend), one run.

    python benchmarks/cpu_vs_keras.py [--epochs 2] [--data-dir DIR] [--out results.json]

Both train the same network on the same 60,000 images with Adam. Epoch 1 includes compilation
(tracing for Keras); the steady epoch time is the mean of the later epochs. Prints JSON with both
times and ratio = jaxcnn / keras (below 1: jaxcnn faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def run_keras(ds, epochs, batch_size):
    import keras

    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(64, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    x = ds.x_train.astype("float32") / 255.0
    model.fit(x, ds.y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[Timer()])
    acc = model.evaluate(ds.x_test.astype("float32") / 255.0, ds.y_test, verbose=0)[1]
    return times, float(acc), f"keras {keras.__version__} ({keras.backend.backend()})"


def run_jaxcnn(ds, epochs, batch_size, backend):
    import jax

    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer

    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", data_backend=backend)
    hist = trainer.fit(ds.x_train, ds.y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    acc = trainer.evaluate(ds.x_test, ds.y_test, batch_size=256)["accuracy"]
    return hist["seconds"], float(acc), f"jaxcnn (jax {jax.__version__}, {backend} input)"


def summary(times, acc, who):
    steady = float(np.mean(times[1:])) if len(times) > 1 else float(times[0])
    return {"who": who, "epoch_seconds": [round(t, 2) for t in times], "first_epoch_seconds": round(times[0], 2),
            "steady_epoch_seconds": round(steady, 2), "test_accuracy": round(acc, 4)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-dir")
    p.add_argument("--out")
    args = p.parse_args(argv)
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist", data_dir=args.data_dir)
    results = {"jaxcnn_tf_data": summary(*run_jaxcnn(ds, args.epochs, args.batch_size, "tf")),
               "jaxcnn_numpy": summary(*run_jaxcnn(ds, args.epochs, args.batch_size, "numpy")),
               "keras": summary(*run_keras(ds, args.epochs, args.batch_size))}
    keras_t = results["keras"]["steady_epoch_seconds"]
    for k in ("jaxcnn_tf_data", "jaxcnn_numpy"):
        results[k]["ratio_to_keras"] = round(results[k]["steady_epoch_seconds"] / keras_t, 3)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    results["config"] = {"model": "N1", "dataset": "MNIST 60k", "batch_size": args.batch_size, "epochs": args.epochs}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
