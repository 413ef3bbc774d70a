"""Augmentation throughput: jaxcnn's tf.data pipeline vs Keras `ImageDataGenerator.flow()`, one run.

    python benchmarks/augment.py [--batches 40] [--out results.json]

Both apply recipe B (rotation 40, shifts 0.2, shear 0.2, zoom 0.2, horizontal flip, fill
"nearest"), shuffle, rescale to [0, 1] and hand out batches of 32 float32 images, on the same
arrays: MNIST's first 4,096 training digits (28x28x1, bundled with jaxcnn) and 1,024 random
150x150x3 uint8 images (the cost does not depend on the content). Each side is warmed up (tf.data
traces its function, Keras starts its iterator) before `--batches` batches are timed. The JAX
version (`make_jax_augment`, jit, on the default JAX device) is timed as well. Prints JSON with
images/second and ratio = tf.data / Keras (above 1: jaxcnn faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

BATCH = 32


def time_iter(it, batches, warmup=3):
    for _ in range(warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        b = next(it)
    elapsed = time.perf_counter() - t
    return batches * BATCH / elapsed, b


def bench_tf(x, y, batches):
    from jaxcnn.data.augment import make_tf_augment
    from jaxcnn.data.pipeline import ArrayPipeline

    pipe = ArrayPipeline(x, y, BATCH, seed=0, backend="tf", augment=make_tf_augment("B"))

    def forever():
        epoch = 0
        while True:
            yield from pipe.train_batches(epoch)
            epoch += 1

    rate, b = time_iter(forever(), batches)
    assert b["image"].shape == (BATCH,) + x.shape[1:]
    return rate


def bench_keras(x, y, batches):
    from tf_keras.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                             shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
                             fill_mode="nearest", rescale=1.0 / 255)
    rate, b = time_iter(iter(gen.flow(x, y, batch_size=BATCH, shuffle=True, seed=0)), batches)
    assert b[0].shape == (BATCH,) + x.shape[1:]
    return rate


def bench_jax(x, batches):
    import jax
    import jax.numpy as jnp

    from jaxcnn.data.augment import make_jax_augment

    fn = jax.jit(make_jax_augment("B"))
    xs = jnp.asarray(x[:BATCH].astype(np.float32) / 255.0)
    key = jax.random.PRNGKey(0)
    fn(xs, key).block_until_ready()
    t = time.perf_counter()
    for i in range(batches):
        out = fn(xs, jax.random.fold_in(key, i))
    out.block_until_ready()
    return batches * BATCH / (time.perf_counter() - t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=40, help="timed batches of 32 per measurement")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)

    from jaxcnn.data import load_dataset

    mnist = load_dataset("mnist")
    rng = np.random.default_rng(0)
    cases = {
        "28x28x1": (mnist.x_train[:4096], mnist.y_train[:4096]),
        "150x150x3": (rng.integers(0, 256, (1024, 150, 150, 3), dtype=np.uint8), rng.integers(0, 2, 1024)),
    }
    import jax

    results = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "batch_size": BATCH,
               "recipe": "B", "timed_batches": args.batches, "jax_device": str(jax.devices()[0])}
    for name, (x, y) in cases.items():
        tf_rate = bench_tf(x, y, args.batches)
        keras_rate = bench_keras(x, y, args.batches)
        jax_rate = bench_jax(x, args.batches)
        results[name] = {
            "tf_data_images_per_s": round(tf_rate, 1),
            "keras_flow_images_per_s": round(keras_rate, 1),
            "jax_images_per_s": round(jax_rate, 1),
            "ratio_tf_data_over_keras": round(tf_rate / keras_rate, 2),
        }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return results


if __name__ == "__main__":
    main()
