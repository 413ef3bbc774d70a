"""A VGG16 conv base pretrained by Keras on CIFAR-10 without cats and dogs, saved like the published files.

    python -m experiments.keras_pretrained.make_vgg16_base [--epochs 1] [--out runs/vgg16_cifar8]

Stands in for the ImageNet `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`, which cannot be
fetched here: tf_keras' own `VGG16(weights=None, include_top=False)` at 32x32 plus a small head
(Flatten, Dense 256, Dropout .5, Dense 8 softmax) trains on the 8 classes other than cat and dog
(40,000 images), inputs through `vgg16.preprocess_input` ("caffe": BGR, ImageNet mean off), Adam
1e-4, batch 64. The base is then saved the two ways Keras users save one:

  OUT/vgg16_cifar8_notop.h5          tf_keras `save_weights` (the published files' format)
  OUT/vgg16_cifar8_notop.weights.h5  Keras 3 `save_weights` (same weights, copied over)
  OUT/meta.json                      recipe, per-epoch test accuracy on the 8 classes, seconds

A second call with the same recipe finds meta.json and returns at once (the cache); `--force`
trains again. Cat vs dog, held out here, is the transfer task (`compare_vgg16_transfer`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

CLASSES8 = ("airplane", "automobile", "bird", "deer", "frog", "horse", "ship", "truck")
H5, WEIGHTS_H5, META = "vgg16_cifar8_notop.h5", "vgg16_cifar8_notop.weights.h5", "meta.json"
DEFAULT_OUT = os.path.join("runs", "vgg16_cifar8")


def recipe(epochs: int = 1, batch_size: int = 64, learning_rate: float = 1e-4, seed: int = 0,
           train_limit: int | None = None, steps: int | None = None, val_limit: int | None = 2000) -> dict:
    return {"model": "tf_keras VGG16(weights=None, include_top=False) + Flatten D256 Do.5 ->8s",
            "classes": list(CLASSES8), "size": 32, "preprocess": "vgg16.preprocess_input (caffe)",
            "optimizer": "adam", "learning_rate": learning_rate, "epochs": epochs,
            "batch_size": batch_size, "seed": seed, "train_limit": train_limit, "steps": steps,
            "val_limit": val_limit}


def load_cifar8(data_dir=None):
    """uint8 CIFAR-10 without cat and dog, labels 0..7 in CLASSES8 order (jaxcnn's cached loader)."""
    from jaxcnn.data import load_dataset

    return load_dataset("cifar10", data_dir=data_dir, classes=CLASSES8)


def keras_dataset(x, y, batch_size, shuffle_seed=None):
    """tf.data of (preprocess_input(x), y): images stay uint8 in memory, converted per batch."""
    import tensorflow as tf
    import tf_keras

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    prep = tf_keras.applications.vgg16.preprocess_input
    return ds.batch(batch_size).map(lambda a, b: (prep(tf.cast(a, tf.float32)), b),
                                    num_parallel_calls=2).prefetch(2)


def build_classifier(num_classes: int = 8, size: int = 32):
    """(base, model): Keras' VGG16 base and the pretraining classifier on top of it."""
    import tf_keras as K

    base = K.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    model = K.Sequential([base, K.layers.Flatten(), K.layers.Dense(256, activation="relu"),
                          K.layers.Dropout(0.5), K.layers.Dense(num_classes, activation="softmax")])
    return base, model


def save_base(base, out_dir: str) -> tuple[str, str]:
    """`base` as a tf_keras `.h5` and, weights copied into Keras 3's VGG16, a `.weights.h5`."""
    import keras

    h5, k3_path = os.path.join(out_dir, H5), os.path.join(out_dir, WEIGHTS_H5)
    base.save_weights(h5)
    k3 = keras.applications.VGG16(weights=None, include_top=False, input_shape=base.input_shape[1:])
    k3.set_weights(base.get_weights())
    k3.save_weights(k3_path)
    return h5, k3_path


def _stop_callback(max_steps, max_minutes):
    """Stops `fit` after `max_steps` steps or `max_minutes` of training (checked every step)."""
    import tf_keras as K

    class Stop(K.callbacks.Callback):
        steps, t0 = 0, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if ((max_steps and self.steps >= max_steps)
                    or (max_minutes and time.perf_counter() - self.t0 > 60 * max_minutes)):
                self.model.stop_training = True

    return Stop()


def make_base(out_dir: str = DEFAULT_OUT, data_dir=None, force: bool = False, verbose: int = 1,
              max_minutes: float | None = None, **recipe_kw) -> dict:
    """Train (or find cached) the base; returns the meta dict (paths, accuracy per epoch, seconds).

    `steps` (in the recipe) ends training after that many steps; `max_minutes` ends it after that
    much wall time (a budget on a busy machine): meta.json records the steps done, and
    `--steps N` repeats that run.
    """
    want = recipe(**recipe_kw)
    meta_path = os.path.join(out_dir, META)
    if not force and os.path.exists(meta_path):
        meta = json.load(open(meta_path))
        if meta.get("recipe") == want and all(os.path.exists(os.path.join(out_dir, f)) for f in (H5, WEIGHTS_H5)):
            if verbose:
                print(f"cached: {out_dir} (8-class test accuracy {meta['test_accuracy']:.4f})")
            return meta
    import tensorflow as tf
    import tf_keras as K

    tf.config.set_visible_devices([], "GPU")
    K.utils.set_random_seed(want["seed"])
    t0 = time.perf_counter()
    ds = load_cifar8(data_dir)
    x_train, y_train = ds.x_train, ds.y_train
    if want["train_limit"]:
        pick = np.random.default_rng(want["seed"]).permutation(len(x_train))[:want["train_limit"]]
        x_train, y_train = x_train[pick], y_train[pick]
    x_val, y_val = ds.x_test, ds.y_test
    if want["val_limit"]:
        pick = np.random.default_rng(want["seed"] + 1).permutation(len(x_val))[:want["val_limit"]]
        x_val, y_val = x_val[pick], y_val[pick]
    load_seconds = time.perf_counter() - t0
    base, model = build_classifier(len(CLASSES8))
    model.compile(K.optimizers.Adam(want["learning_rate"]), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    stop = _stop_callback(want["steps"], max_minutes)
    t1 = time.perf_counter()
    hist = model.fit(keras_dataset(x_train, y_train, want["batch_size"], shuffle_seed=want["seed"]),
                     validation_data=keras_dataset(x_val, y_val, 256), callbacks=[stop],
                     epochs=want["epochs"], verbose=verbose)
    train_seconds = time.perf_counter() - t1
    os.makedirs(out_dir, exist_ok=True)
    h5, k3_path = save_base(base, out_dir)
    meta = {"recipe": want, "train_examples": int(len(x_train)), "test_examples": int(len(x_val)),
            "steps_trained": stop.steps, "images_seen": stop.steps * want["batch_size"],
            "max_minutes": max_minutes,
            "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
            "test_accuracy": float(hist.history["val_accuracy"][-1]),
            "load_seconds": round(load_seconds, 1), "train_seconds": round(train_seconds, 1),
            "files": {"tf_keras_h5": H5, "keras3_weights_h5": WEIGHTS_H5},
            "machine": f"{os.cpu_count()}-core CPU (shared)", "tensorflow": tf.__version__}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    if verbose:
        print(f"saved {h5} and {k3_path}; 8-class test accuracy {meta['test_accuracy']:.4f} "
              f"after {stop.steps} steps of {want['batch_size']} ({train_seconds / 60:.1f} min)")
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--data-dir", help="datasets folder (default: $JAXCNN_DATA_DIR or ../shared/datasets)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--train-limit", type=int, help="a random subset of the 40,000 training images")
    ap.add_argument("--steps", type=int, help="stop after this many training steps")
    ap.add_argument("--max-minutes", type=float, help="stop after this much training time (busy machines)")
    ap.add_argument("--val-limit", type=int, default=2000,
                    help="accuracy on a random subset of the 8,000 test images (0: all)")
    ap.add_argument("--force", action="store_true", help="train again even if cached")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    return make_base(args.out, args.data_dir, args.force, verbose=0 if args.quiet else 1,
                     max_minutes=args.max_minutes, steps=args.steps, val_limit=args.val_limit or None,
                     epochs=args.epochs, batch_size=args.batch_size,
                     learning_rate=args.learning_rate, train_limit=args.train_limit)


if __name__ == "__main__":
    main()
