"""Transfer from a Keras-pretrained VGG16 base: Keras vs jaxcnn on the same file vs a random base.

    python -m experiments.keras_pretrained.make_vgg16_base          # the base (cached)
    jaxcnn convert-weights vgg16 runs/vgg16_cifar8/vgg16_cifar8_notop.h5 runs/vgg16_cifar8/jaxcnn
    python -m experiments.keras_pretrained.compare_vgg16_transfer [--parts features,keras,jaxcnn,random]

The task is N11 (tutorial B's head b) on CIFAR-10 cat vs dog, the two classes the base never
saw, at the base's 32x32: Flatten D256 Do.5 ->1 sigmoid, binary CE, RMSprop 2e-5, base frozen,
100 steps of 32 per epoch (a balanced random 3,200 of the 10,000 training images), 5 epochs,
then block5 unfrozen and fine-tuned at 1e-5 for 2 more. Test accuracy after every epoch on a
balanced random 1,000 of the 2,000 test images (tutorial B validates on 50 steps of 32 = 1,600;
fewer here to fit a 2-core CPU; `--n-test 1600` for the tutorial's).

By default the frozen blocks 1-4 run once per image (block4_pool cached) and block5 + head b
train on those maps, in both frameworks: exact for this recipe (no augmentation, no BatchNorm,
dropout only in the head; a smoke run gives the same losses to 4 digits either way), and about
a tenth of the CPU time. `--full` runs the whole network every step, as the recipe is written.

Parts (each cached as OUT/compare/PART.json; --force reruns):
  features  the converted base (`jaxcnn convert-weights`, from the tf_keras .h5; the Keras 3
            .weights.h5 converted too and required identical) against Keras' own base on the
            test images: max |difference| of the block5_pool features; and the speed of
            `jaxcnn.transfer.extract_features` beside Keras' `predict` on the same images.
  keras     tutorial B's own Keras code on the same file (`conv_base.load_weights(h5)`).
  jaxcnn    `vgg16_transfer --variant b` (its optimizer, learning rates, fine-tune phase) with
            the converted folder as its --weights, built by `jaxcnn.experiment.build_trainer`.
  random    the same without --weights: a randomly initialized base.
  heads_ac  heads a and c (N10, N12) on all 10 classes (2,000 train / 1,000 test images), on the
            features of the converted base and of a random one.
The report (README table, JSON under benchmarks/) is written by `--json PATH` from the parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
import warnings

import flax.linen as nn
import numpy as np

from experiments.keras_pretrained.make_vgg16_base import DEFAULT_OUT, H5, WEIGHTS_H5, make_base
from jaxcnn.models.layers import Conv, glorot_uniform, max_pool
from jaxcnn.models.transfer import TransferHead

PARTS = ("features", "keras", "jaxcnn", "random", "heads_ac")
SIZE = 32
RECIPE = {"n_train": 3200, "n_test": 1000, "batch_size": 32, "epochs": 5, "finetune_epochs": 2,
          "learning_rate": 2e-5, "finetune_learning_rate": 1e-5, "seed": 0}


def cats_vs_dogs(data_dir=None, n_train=RECIPE["n_train"], n_test=RECIPE["n_test"], seed=0):
    """Balanced random subsets of CIFAR-10 cat (0) vs dog (1), uint8 32x32, in shuffled order.

    (The loader groups examples by class, so a plain first-N slice would hold cats only.)
    """
    from jaxcnn.data import load_dataset

    ds = load_dataset("cifar10", data_dir=data_dir, classes=("cat", "dog"))
    rng = np.random.default_rng(seed)

    def pick(y, n):
        idx = np.concatenate([rng.permutation(np.nonzero(y == c)[0])[:n // 2] for c in (0, 1)])
        return rng.permutation(idx)

    tr, te = pick(ds.y_train, n_train), pick(ds.y_test, n_test)
    return ds.x_train[tr], ds.y_train[tr], ds.x_test[te], ds.y_test[te]


def convert(base_dir: str) -> str:
    """`jaxcnn convert-weights vgg16 BASE.h5 DIR`; the Keras 3 file must convert to the same arrays."""
    from jaxcnn.cli import main as cli_main
    from jaxcnn.keras import load_keras_h5
    from jaxcnn.checkpoint.weights import restore_variables

    out = os.path.join(base_dir, "jaxcnn")
    if cli_main(["convert-weights", "vgg16", os.path.join(base_dir, H5), out]):
        raise SystemExit(f"converting {os.path.join(base_dir, H5)} failed")
    ours, k3 = restore_variables(out)["params"], load_keras_h5("vgg16", os.path.join(base_dir, WEIGHTS_H5))["params"]
    for layer, weights in ours.items():
        for name, a in weights.items():
            if not np.array_equal(a, k3[layer][name]):
                raise AssertionError(f"{layer}/{name}: the .h5 and .weights.h5 conversions differ")
    return out


def _keras_base(h5_path):
    import tensorflow as tf
    import tf_keras as K

    tf.config.set_visible_devices([], "GPU")
    base = K.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    base.load_weights(h5_path)
    return base


def _timed(fn, warmup):
    """(result, seconds) of `fn()`, after `warmup()` (compilation, first-call setup)."""
    warmup()
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def part_features(base_dir, conv_dir, data, batch_size=64) -> dict:
    """Converted base vs Keras' base on the test images: features and extraction speed."""
    import tf_keras as K

    from jaxcnn.models.vgg import VGG16, preprocess_input
    from jaxcnn.transfer import extract_features
    from jaxcnn.checkpoint.weights import restore_variables

    x = data[2]
    x_pre = K.applications.vgg16.preprocess_input(x.astype(np.float32))
    np.testing.assert_array_equal(x_pre, preprocess_input(x.astype(np.float32)))
    base = _keras_base(os.path.join(base_dir, H5))
    ref, keras_s = _timed(lambda: base.predict(x_pre, batch_size=batch_size, verbose=0),
                          lambda: base.predict(x_pre[:batch_size], batch_size=batch_size, verbose=0))
    variables = {"params": restore_variables(conv_dir)["params"]}
    apply = VGG16(include_top=False).apply
    # extract_features jits a fresh function per call, so each call compiles: its steady rate is
    # (n - one batch) / (time of the whole call - time of a one-batch call).
    _, one_s = _timed(lambda: extract_features(apply, variables, x_pre[:batch_size], batch_size=batch_size),
                      lambda: None)
    ours, jax_s = _timed(lambda: extract_features(apply, variables, x_pre, batch_size=batch_size), lambda: None)
    diff = np.abs(ours - ref)
    return {"images": int(len(x)), "feature_shape": list(ref.shape[1:]),
            "max_abs_diff": float(diff.max()), "max_abs_feature": float(np.abs(ref).max()),
            "mean_abs_feature": float(np.abs(ref).mean()),
            "max_rel_diff": float(diff.max() / np.abs(ref).max()),
            "equal_to_1e-4": bool(diff.max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))),
            "extract_batch_size": batch_size,
            "jaxcnn_extract_features_seconds_incl_compile": round(jax_s, 1),
            "jaxcnn_extract_features_one_batch_seconds": round(one_s, 1),
            "jaxcnn_extract_features_images_per_s": round((len(x) - batch_size) / max(jax_s - one_s, 1e-9), 1),
            "keras_predict_images_per_s": round(len(x) / keras_s, 1)}


def part_keras(base_dir, data, r=RECIPE) -> dict:
    """Tutorial B's code: frozen conv_base + Flatten D256 Do.5 ->1 sigmoid, then block5 fine-tuned."""
    import tf_keras as K
    from tf_keras import layers, models, optimizers

    K.utils.set_random_seed(r["seed"])
    x_train, y_train, x_test, y_test = data
    prep = K.applications.vgg16.preprocess_input
    x_train, x_test = prep(x_train.astype(np.float32)), prep(x_test.astype(np.float32))
    conv_base = _keras_base(os.path.join(base_dir, H5))
    model = models.Sequential()
    model.add(conv_base)
    model.add(layers.Flatten())
    model.add(layers.Dense(256, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(1, activation="sigmoid"))
    conv_base.trainable = False
    model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(learning_rate=r["learning_rate"]),
                  metrics=["acc"])
    t = time.perf_counter()
    h1 = model.fit(x_train, y_train, batch_size=r["batch_size"], epochs=r["epochs"],
                   validation_data=(x_test, y_test), verbose=2)
    frozen_s = time.perf_counter() - t
    conv_base.trainable = True
    set_trainable = False
    for layer in conv_base.layers:
        if layer.name == "block5_conv1":
            set_trainable = True
        layer.trainable = set_trainable
    model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(learning_rate=r["finetune_learning_rate"]),
                  metrics=["acc"])
    t = time.perf_counter()
    h2 = model.fit(x_train, y_train, batch_size=r["batch_size"], epochs=r["finetune_epochs"],
                   validation_data=(x_test, y_test), verbose=2)
    return _run_record(h1.history["val_acc"] + h2.history["val_acc"],
                       h1.history["loss"] + h2.history["loss"], frozen_s, time.perf_counter() - t, r)


def part_jaxcnn(conv_dir, data, r=RECIPE) -> dict:
    """`vgg16_transfer --variant b` from `conv_dir` (None: random base), on the same arrays."""
    from jaxcnn.cli import load_experiment
    from jaxcnn.experiment import apply_flags, build_trainer

    config = apply_flags(load_experiment("vgg16_transfer").get_config(), argparse.Namespace(variant="b"))
    config = dataclasses.replace(config, pretrained=conv_dir, seed=r["seed"], epochs=r["epochs"],
                                 batch_size=r["batch_size"], learning_rate=r["learning_rate"],
                                 finetune={**config.finetune, "epochs": r["finetune_epochs"],
                                           "learning_rate": r["finetune_learning_rate"]})
    x_train, y_train, x_test, y_test = data
    shape = x_train.shape[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random base is announced; here it is on purpose
        trainer = build_trainer(config, shape, 2, trainable=config.trainable)
    t = time.perf_counter()
    h1 = trainer.fit(x_train, y_train, epochs=config.epochs, batch_size=config.batch_size,
                     validation_data=(x_test, y_test), verbose=2)
    frozen_s = time.perf_counter() - t
    frozen_acc, frozen_loss = list(h1["val_accuracy"]), list(h1["loss"])
    phase = config.finetune
    tuned = build_trainer(config, shape, 2, trainable=phase["trainable"], learning_rate=phase["learning_rate"],
                          variables={"params": trainer.state.params, "batch_stats": trainer.state.batch_stats})
    t = time.perf_counter()
    h2 = tuned.fit(x_train, y_train, epochs=phase["epochs"], batch_size=config.batch_size,
                   validation_data=(x_test, y_test), verbose=2)
    return _run_record(frozen_acc + list(h2["val_accuracy"]), frozen_loss + list(h2["loss"]),
                       frozen_s, time.perf_counter() - t, r)


# ---- cached mode: blocks 1-4 run once (they stay frozen throughout), block5 + head b train.
# Exact for this recipe: no augmentation, no BatchNorm, dropout only in the head, so block4_pool
# of an image is the same in every epoch; it saves ~90% of the work on a CPU.


def _keras_block4_and_top(conv_base):
    """Keras models: blocks 1-4 of `conv_base`, and block5 on block4_pool maps (shared layers)."""
    import tf_keras as K

    block4 = K.Model(conv_base.input, conv_base.get_layer("block4_pool").output)
    inp = K.Input(block4.output_shape[1:])
    x = inp
    for name in ("block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"):
        x = conv_base.get_layer(name)(x)
    return block4, K.Model(inp, x, name="block5")


def part_keras_cached(base_dir, data, r=RECIPE) -> dict:
    """Tutorial B's code with blocks 1-4 precomputed: the same compile/fit/set_trainable steps."""
    import tf_keras as K
    from tf_keras import layers, models, optimizers

    K.utils.set_random_seed(r["seed"])
    x_train, y_train, x_test, y_test = data
    prep = K.applications.vgg16.preprocess_input
    conv_base = _keras_base(os.path.join(base_dir, H5))
    block4, top = _keras_block4_and_top(conv_base)
    t = time.perf_counter()
    f_train = block4.predict(prep(x_train.astype(np.float32)), batch_size=64, verbose=0)
    f_test = block4.predict(prep(x_test.astype(np.float32)), batch_size=64, verbose=0)
    extract_s = time.perf_counter() - t
    model = models.Sequential()
    model.add(top)
    model.add(layers.Flatten())
    model.add(layers.Dense(256, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(1, activation="sigmoid"))
    conv_base.trainable = False
    top.trainable = False
    model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(learning_rate=r["learning_rate"]),
                  metrics=["acc"])
    t = time.perf_counter()
    h1 = model.fit(f_train, y_train, batch_size=r["batch_size"], epochs=r["epochs"],
                   validation_data=(f_test, y_test), verbose=2)
    frozen_s = time.perf_counter() - t
    conv_base.trainable = True
    top.trainable = True
    set_trainable = False
    for layer in conv_base.layers:
        if layer.name == "block5_conv1":
            set_trainable = True
        layer.trainable = set_trainable
    model.compile(loss="binary_crossentropy", optimizer=optimizers.RMSprop(learning_rate=r["finetune_learning_rate"]),
                  metrics=["acc"])
    t = time.perf_counter()
    h2 = model.fit(f_train, y_train, batch_size=r["batch_size"], epochs=r["finetune_epochs"],
                   validation_data=(f_test, y_test), verbose=2)
    out = _run_record(h1.history["val_acc"] + h2.history["val_acc"],
                      h1.history["loss"] + h2.history["loss"], frozen_s, time.perf_counter() - t, r)
    return {**out, "block4_extract_seconds": round(extract_s, 1),
            "trainable_in_finetune": sorted(w.name.split("/")[0] for w in model.trainable_weights)}


class _Block5(nn.Module):
    """VGG16's block5 with Keras' layer names (so converted weights load into it)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i in (1, 2, 3):
            x = nn.relu(Conv(512, (3, 3), padding="SAME", kernel_init=glorot_uniform, name=f"block5_conv{i}")(x))
        return max_pool(x)


class Block5HeadB(nn.Module):
    """block5 under params["base"] and head b (N11) under params["head"], on block4_pool maps:
    the trainable part of `vgg16_transfer_b`, with the same param paths for freezing."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return TransferHead("b", 1, name="head")(_Block5(name="base")(x), train=train)


def block4_features(base_params, images, batch_size=64) -> np.ndarray:
    """block4_pool of jaxcnn's VGG16 (captured inside its forward pass; XLA drops block5)."""
    import jax

    from jaxcnn.models.vgg import VGG16
    from jaxcnn.transfer import extract_features

    vgg = VGG16(include_top=False)

    def apply(v, x):
        _, state = vgg.apply(v, x, capture_intermediates=lambda m, _: m.name == "block4_conv3",
                             mutable=["intermediates"])
        return max_pool(jax.nn.relu(state["intermediates"]["block4_conv3"]["__call__"][0]))

    return extract_features(apply, {"params": base_params}, images, batch_size=batch_size)


def part_jaxcnn_cached(conv_dir, data, r=RECIPE) -> dict:
    """`vgg16_transfer --variant b`'s optimizers and phases on block5 + head b, blocks 1-4 cached.
    `conv_dir` None: the whole base randomly initialized (seeded)."""
    import jax

    from jaxcnn.cli import load_experiment
    from jaxcnn.experiment import apply_flags
    from jaxcnn.models.vgg import VGG16, preprocess_input
    from jaxcnn.train import Trainer, get_optimizer, init_variables
    from jaxcnn.transfer import load_base, make_transfer_optimizer
    from jaxcnn.checkpoint.weights import restore_variables

    config = apply_flags(load_experiment("vgg16_transfer").get_config(), argparse.Namespace(variant="b"))
    phase = config.finetune
    x_train, y_train, x_test, y_test = data
    if conv_dir is None:
        base = VGG16(include_top=False).init(jax.random.PRNGKey(r["seed"]), np.zeros((1, SIZE, SIZE, 3)))
        base = {"params": jax.tree.map(np.asarray, base["params"])}
    else:
        base = restore_variables(conv_dir)
    t = time.perf_counter()
    f_train = block4_features(base["params"], preprocess_input(x_train.astype(np.float32)))
    f_test = block4_features(base["params"], preprocess_input(x_test.astype(np.float32)))
    extract_s = time.perf_counter() - t
    model = Block5HeadB()
    shape = f_train.shape[1:]
    variables = load_base(init_variables(model, shape, r["seed"]), base)

    def trainer(params, trainable, lr):
        tx = make_transfer_optimizer(get_optimizer(config.optimizer, lr), trainable=trainable)
        return Trainer(model, shape, loss=config.loss, optimizer=tx, seed=r["seed"], params=params)

    frozen = trainer(variables["params"], config.trainable, r["learning_rate"])
    t = time.perf_counter()
    h1 = frozen.fit(f_train, y_train, epochs=r["epochs"], batch_size=r["batch_size"],
                    validation_data=(f_test, y_test), verbose=2)
    frozen_s = time.perf_counter() - t
    acc, loss = list(h1["val_accuracy"]), list(h1["loss"])
    tuned = trainer(frozen.state.params, phase["trainable"], r["finetune_learning_rate"])
    t = time.perf_counter()
    h2 = tuned.fit(f_train, y_train, epochs=r["finetune_epochs"], batch_size=r["batch_size"],
                   validation_data=(f_test, y_test), verbose=2)
    out = _run_record(acc + list(h2["val_accuracy"]), loss + list(h2["loss"]), frozen_s,
                      time.perf_counter() - t, r)
    return {**out, "block4_extract_seconds": round(extract_s, 1),
            "trainable_in_finetune": list(phase["trainable"])}


def part_heads_ac(conv_dir, data_dir=None, n_train=2000, n_test=1000, epochs=5, seed=0) -> dict:
    """Heads a and c (N10, N12: Adam 1e-3) on all 10 CIFAR-10 classes, trained on the frozen base's
    features (`extract_features` once), from the converted base and from a random one."""
    import jax

    from jaxcnn.data import load_dataset
    from jaxcnn.models.vgg import VGG16, preprocess_input
    from jaxcnn.train import Trainer, get_optimizer
    from jaxcnn.transfer import extract_features
    from jaxcnn.checkpoint.weights import restore_variables

    ds = load_dataset("cifar10", data_dir=data_dir)
    rng = np.random.default_rng(seed)
    tr, te = rng.permutation(len(ds.y_train))[:n_train], rng.permutation(len(ds.y_test))[:n_test]
    x_train, y_train = preprocess_input(ds.x_train[tr].astype(np.float32)), ds.y_train[tr]
    x_test, y_test = preprocess_input(ds.x_test[te].astype(np.float32)), ds.y_test[te]
    vgg = VGG16(include_top=False)
    bases = {"converted": restore_variables(conv_dir)["params"],
             "random": jax.tree.map(np.asarray, vgg.init(jax.random.PRNGKey(seed), x_train[:1])["params"])}
    out = {"classes": 10, "n_train": n_train, "n_test": n_test, "epochs": epochs, "optimizer": "adam 1e-3"}
    for base_name, params in bases.items():
        t = time.perf_counter()
        f_train = extract_features(vgg.apply, {"params": params}, x_train, batch_size=64)
        f_test = extract_features(vgg.apply, {"params": params}, x_test, batch_size=64)
        out[f"{base_name}_extract_seconds"] = round(time.perf_counter() - t, 1)
        for head in ("a", "c"):
            trainer = Trainer(TransferHead(head, 10), f_train.shape[1:], loss="sparse_categorical_crossentropy",
                              optimizer=get_optimizer("adam", 1e-3), seed=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # features are not pixels: no [0, 1] range
                h = trainer.fit(f_train, y_train, epochs=epochs, batch_size=32,
                                validation_data=(f_test, y_test), verbose=0)
            out[f"head_{head}_{base_name}"] = [round(float(a), 4) for a in h["val_accuracy"]]
    return out


def _run_record(acc, loss, frozen_s, finetune_s, r) -> dict:
    return {"test_accuracy_per_epoch": [round(float(a), 4) for a in acc],
            "train_loss_per_epoch": [round(float(v), 4) for v in loss],
            "frozen_epochs": r["epochs"], "finetune_epochs": r["finetune_epochs"],
            "final_test_accuracy": round(float(acc[-1]), 4),
            "frozen_seconds_per_epoch": round(frozen_s / r["epochs"], 1),
            "finetune_seconds_per_epoch": round(finetune_s / r["finetune_epochs"], 1)}


def report(base_dir, results: dict, r=RECIPE) -> dict:
    import jax

    meta = json.load(open(os.path.join(base_dir, "meta.json")))
    return {"machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), shared with other jobs, nice 15",
            "jax": jax.__version__, "data": "CIFAR-10 JPEG copy, 32x32",
            "base": {"how": meta["recipe"]["model"], "classes": meta["recipe"]["classes"],
                     "epochs": meta["recipe"]["epochs"], "train_examples": meta["train_examples"],
                     "steps_trained": meta.get("steps_trained"), "batch_size": meta["recipe"]["batch_size"],
                     "test_examples": meta["test_examples"],
                     "test_accuracy_8_classes": round(meta["test_accuracy"], 4),
                     "train_seconds": meta["train_seconds"]},
            "task": {"classes": ["cat", "dog"], **r, "head": "N11 head b"},
            **{k: results[k] for k in PARTS if k in results}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-dir", default=DEFAULT_OUT, help="where make_vgg16_base saved the base")
    ap.add_argument("--data-dir")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--force", action="store_true", help="rerun parts already cached")
    ap.add_argument("--full", action="store_true",
                    help="run the whole network every step (the recipe as written) instead of "
                         "computing the frozen blocks 1-4 once: same numbers, ~10x the CPU time")
    ap.add_argument("--json", help="write the combined report here (e.g. benchmarks/....json)")
    for key in ("n_train", "n_test", "epochs", "finetune_epochs"):
        ap.add_argument("--" + key.replace("_", "-"), type=int, default=RECIPE[key],
                        help=f"default {RECIPE[key]} (smaller: a smoke run)")
    args = ap.parse_args(argv)
    r = {**RECIPE, **{k: getattr(args, k) for k in ("n_train", "n_test", "epochs", "finetune_epochs")}}
    if not os.path.exists(os.path.join(args.base_dir, "meta.json")):
        make_base(args.base_dir, args.data_dir)
    cache = os.path.join(args.base_dir, "compare")
    os.makedirs(cache, exist_ok=True)
    conv_dir = convert(args.base_dir)
    data = cats_vs_dogs(args.data_dir, r["n_train"], r["n_test"], r["seed"])
    results = {}
    for part in PARTS:
        path = os.path.join(cache, part + ".json")
        if part in args.parts.split(",") and (args.force or not os.path.exists(path)):
            t = time.perf_counter()
            keras, jaxcnn = (part_keras, part_jaxcnn) if args.full else (part_keras_cached, part_jaxcnn_cached)
            out = {"features": lambda: part_features(args.base_dir, conv_dir, data),
                   "keras": lambda: keras(args.base_dir, data, r),
                   "jaxcnn": lambda: jaxcnn(conv_dir, data, r),
                   "random": lambda: jaxcnn(None, data, r),
                   "heads_ac": lambda: part_heads_ac(conv_dir, args.data_dir)}[part]()
            if part in ("keras", "jaxcnn", "random"):
                out["mode"] = "full" if args.full else "blocks 1-4 computed once"
            out["wall_seconds"] = round(time.perf_counter() - t, 1)
            with open(path, "w") as f:
                json.dump(out, f, indent=1)
            print(part, json.dumps(out), flush=True)
        if os.path.exists(path):
            results[part] = json.load(open(path))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report(args.base_dir, results, r), f, indent=1)
    return results


if __name__ == "__main__":
    main()
