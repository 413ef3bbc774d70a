"""Bounded memory: train over a prepared dataset bigger than a memory budget; report peak RSS.

    python benchmarks/streaming.py --gigabytes 1.5 --budget-gb 1.0 --out DIR --json out.json

Phase 1 (a child process, so its memory is not counted): 128x128 RGB images made from the real
CIFAR-10 training images (resized, each copy shifted by a few pixels so records differ) are
written with `jaxcnn.data.records.prepare_arrays` until the train split holds `--gigabytes` of
pixels; the source is generated chunk by chunk, never held whole.
Phase 2, one process per `--backends` entry (each its own peak RSS): the input pipeline alone
over `--pipeline-batches` batches (images/s), one epoch of a small CNN over the whole split
(images/s), and the peak RSS (`ru_maxrss`), which must stay under `--budget-gb`. "numpy": no
TensorFlow in the process and no augmentation (the road of a host without TF); "tf": tf.data with
the augmentation `AUGMENT`.
Phase 3, the peers (each in its own process, on the same images): the first `--folder-images`
training images are also written as JPEG files in class folders, and the input pipeline alone
(decode, resize, the same augmentation, batch) is timed for jaxcnn (records in tf.data, and
`jaxcnn prepare image_folder:` of that folder), Keras 3's `image_dataset_from_directory` +
preprocessing layers, and tf_keras' `ImageDataGenerator.flow_from_directory`. Phase 4: the
training step rates of N7 (`bn_cnn_binary`) and VGG16 at the same image size and batch, which the
input pipeline must outrun.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Generated:
    """`n` 128x128 images from CIFAR-10, made slice by slice (an array-like for prepare_arrays)."""

    def __init__(self, base: np.ndarray, n: int, size: int):
        self.base, self.n, self.size = base, n, size

    def __len__(self):
        return self.n

    def __getitem__(self, key: slice) -> np.ndarray:
        from jaxcnn.data.image_folder import resize_images

        idx = np.arange(self.n)[key]
        src = resize_images(self.base[idx % len(self.base)], self.size)
        shift = (idx // len(self.base)) % self.size  # copy k of an image: rolled by k pixels
        return np.stack([np.roll(img, int(s), axis=1) for img, s in zip(src, shift)])


def write(out: str, gigabytes: float, size: int) -> None:
    from jaxcnn.data import load_dataset
    from jaxcnn.data.records import prepare_arrays

    ds = load_dataset("cifar10")
    n = int(gigabytes * 2**30 // (size * size * 3))
    gen = _Generated(ds.x_train, n, size)
    labels = ds.y_train[np.arange(n) % len(ds.y_train)]
    test = _Generated(ds.x_test, 1024, size)
    prepare_arrays(out, {"train": (gen, labels), "test": (test, ds.y_test[:1024])}, ds.class_names,
                   name=f"cifar10-{size}px", shard_size=2048, progress=True)


def _rate(batches, n_batches: int) -> float:
    """Images per second over the first `n_batches` batches (after one warm-up batch)."""
    it = iter(batches)
    next(it)
    t0, seen = time.perf_counter(), 0
    for i, b in enumerate(it):
        seen += len(b["image"] if isinstance(b, dict) else b[0])
        if i + 1 == n_batches:
            break
    return seen / (time.perf_counter() - t0)


def measure(out: str, batch: int, pipeline_batches: int, budget_gb: float, backend: str) -> dict:
    """The pipeline's and one training epoch's images/s, and this process's peak RSS. "numpy": no
    TensorFlow in the process, no augmentation; "tf": tf.data with AUGMENT."""
    import flax.linen as nn

    from jaxcnn.data.augment import make_tf_augment, parse_augment
    from jaxcnn.data.pipeline import ArrayPipeline
    from jaxcnn.data.records import load_prepared
    from jaxcnn.train import Trainer

    split = load_prepared(out, "train")
    augment = AUGMENT if backend == "tf" else None
    pipe = ArrayPipeline(split, split.labels, batch, seed=0, backend=backend,
                         augment=augment and make_tf_augment(parse_augment(augment)))
    pipeline_ips = _rate(pipe.train_batches(0), pipeline_batches)
    del pipe

    class Small(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.max_pool(nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x)), (4, 4), (4, 4))
            x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3))(x)), (4, 4), (4, 4))
            return nn.Dense(10)(x.reshape(len(x), -1))

    trainer = Trainer(Small(), split.image_shape, optimizer="adam", data_backend=backend, road="pipeline")
    t0 = time.perf_counter()
    trainer.fit(split, split.labels, epochs=1, batch_size=batch, augment=augment, verbose=0)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    dataset_bytes = split.nbytes
    return {"machine": f"{os.cpu_count()}-core CPU (shared)", "dataset": split.manifest["name"],
            "train_examples": len(split), "dataset_gb": dataset_bytes / 2**30,
            "on_disk_gb": sum(os.path.getsize(f) for f in split.files) / 2**30,
            "budget_gb": budget_gb, "peak_rss_gb": peak / 2**30, "under_budget": peak < budget_gb * 2**30,
            "batch_size": batch, "backend": backend, "augment": augment, "pipeline_images_per_s": pipeline_ips,
            "train_epoch_seconds": seconds, "train_images_per_s": (len(split) // batch * batch) / seconds}

# One augmentation for every pipeline: ImageDataGenerator's terms (jaxcnn's parity ops take the same).
AUGMENT = "rotation_range=10,width_shift_range=0.1,height_shift_range=0.1,horizontal_flip=true"


def write_folder(out: str, folder: str, n: int) -> None:
    """The first `n` training images (and n/8 test images) of the prepared splits as JPEG files,
    in the layout `jaxcnn prepare image_folder:` reads: FOLDER/{train,test}/CLASS/*.jpg."""
    from PIL import Image

    from jaxcnn.data.records import load_prepared

    for split_name, count in (("train", n), ("test", max(10, n // 8))):
        split = load_prepared(out, split_name)
        names = split.manifest["class_names"]
        for c in names:
            os.makedirs(os.path.join(folder, split_name, c), exist_ok=True)
        for start in range(0, min(count, len(split)), 512):
            idx = np.arange(start, min(count, len(split), start + 512))
            for i, img, label in zip(idx, split.read(idx), split.labels[idx]):
                Image.fromarray(img).save(os.path.join(folder, split_name, names[label], f"{i:07d}.jpg"), quality=90)


def peer_rate(peer: str, folder: str, size: int, batch: int, n_batches: int) -> dict:
    """Input-pipeline images/s of one peer over the JPEG folder (run in its own process)."""
    if peer == "jaxcnn_prepare_folder":  # the one-off cost of jaxcnn's record format for these files
        from jaxcnn.data.records import prepare

        dest = folder.rstrip("/") + "_prepared"
        shutil.rmtree(dest, ignore_errors=True)  # prepare would resume a finished folder: nothing to time
        t0 = time.perf_counter()
        prepare(f"image_folder:{folder}", dest, image_size=size, progress=False)
        n = sum(len(files) for _, _, files in os.walk(folder))
        return {"images_per_s": n / (time.perf_counter() - t0), "images": n}
    folder = os.path.join(folder, "train")  # Keras' peers read class folders directly
    if peer == "keras_image_dataset_from_directory":
        import keras
        import tensorflow as tf

        ds = keras.utils.image_dataset_from_directory(folder, image_size=(size, size), batch_size=batch,
                                                      shuffle=True, seed=0, verbose=False)
        layers = keras.Sequential([keras.layers.Rescaling(1 / 255), keras.layers.RandomFlip("horizontal"),
                                   keras.layers.RandomRotation(10 / 360, fill_mode="nearest"),
                                   keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest")])
        ds = ds.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        batches = ds.repeat().prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
        return {"images_per_s": _rate(batches, n_batches), "keras": keras.__version__}
    if peer == "tf_keras_flow_from_directory":
        import tf_keras

        gen = tf_keras.preprocessing.image.ImageDataGenerator(
            rescale=1 / 255, rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)
        flow = gen.flow_from_directory(folder, target_size=(size, size), batch_size=batch, class_mode="sparse",
                                       seed=0)
        return {"images_per_s": _rate(flow, n_batches), "tf_keras": tf_keras.__version__}
    raise ValueError(peer)


def model_rate(name: str, size: int, batch: int, steps: int) -> dict:
    """Training images/s of a registered model on random inputs: what the pipeline must outrun."""
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer

    binary = name == "bn_cnn_binary"
    trainer = Trainer(get_model(name), (size, size, 3), optimizer="adam",
                      loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * (steps + 1), size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 2 if binary else 10, len(x))
    trainer.fit(x[:batch], y[:batch], epochs=1, batch_size=batch, verbose=0)  # compile
    t0 = time.perf_counter()
    trainer.fit(x[batch:], y[batch:], epochs=1, batch_size=batch, verbose=0)
    return {"images_per_s": batch * steps / (time.perf_counter() - t0)}


def _child(*args) -> dict:
    """Run this script's `--phase` in a fresh process; its last stdout line is the JSON result."""
    done = subprocess.run([sys.executable, __file__, *map(str, args)], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


PEERS = ("keras_image_dataset_from_directory", "tf_keras_flow_from_directory", "jaxcnn_prepare_folder")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "jaxcnn_streaming_bench"))
    p.add_argument("--gigabytes", type=float, default=3.0, help="pixels in the train split")
    p.add_argument("--budget-gb", type=float, default=1.5)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pipeline-batches", type=int, default=200)
    p.add_argument("--folder-images", type=int, default=8192, help="JPEG files the peers read")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated; empty for none")
    p.add_argument("--models", default="bn_cnn_binary,vgg16", help="training rates to compare with")
    p.add_argument("--model-steps", type=int, default=3)
    p.add_argument("--json", help="also write the results here (after every stage)")
    p.add_argument("--backends", default="numpy,tf", help="training runs: numpy (no TF, no augmentation), tf")
    p.add_argument("--phase", choices=("all", "write", "folder", "measure", "peer", "model"), default="all")
    p.add_argument("--name", help=argparse.SUPPRESS)  # the peer or model of a child phase
    args = p.parse_args()
    folder = args.out.rstrip("/") + "_jpeg"
    if args.phase == "write":
        return write(args.out, args.gigabytes, args.size)
    if args.phase == "folder":
        return write_folder(args.out, folder, args.folder_images)
    if args.phase == "measure":
        return print(json.dumps(measure(args.out, args.batch_size, args.pipeline_batches, args.budget_gb, args.name)))
    if args.phase in ("peer", "model"):
        r = (peer_rate(args.name, folder, args.size, args.batch_size, args.pipeline_batches) if args.phase == "peer"
             else model_rate(args.name, args.size, args.batch_size, args.model_steps))
        return print(json.dumps(r))
    if not os.path.isfile(os.path.join(args.out, "manifest.json")):  # in a child: its memory is not ours
        subprocess.run([sys.executable, __file__, "--phase", "write", "--out", args.out,
                        "--gigabytes", str(args.gigabytes), "--size", str(args.size)], check=True)

    def save(result):
        print(json.dumps(result, indent=1), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)

    common = ["--out", args.out, "--size", args.size, "--batch-size", args.batch_size,
              "--pipeline-batches", args.pipeline_batches]
    result = {"command": " ".join(["python", "benchmarks/streaming.py", *sys.argv[1:]]), "runs": {}}
    for backend in (n for n in args.backends.split(",") if n):  # each in its own process: its own peak RSS
        result["runs"][backend] = _child("--phase", "measure", "--name", backend, "--budget-gb", args.budget_gb,
                                         *common)
        save(result)
    peers = [n for n in args.peers.split(",") if n]
    if peers and not os.path.isdir(folder):
        subprocess.run([sys.executable, __file__, "--phase", "folder", "--out", args.out,
                        "--folder-images", str(args.folder_images)], check=True)
    for name in peers:
        result.setdefault("peers", {})[name] = _child("--phase", "peer", "--name", name, *common)
        save(result)
    for name in (n for n in args.models.split(",") if n):
        result.setdefault("model_train_images_per_s", {})[name] = _child(
            "--phase", "model", "--name", name, *common, "--model-steps", args.model_steps)["images_per_s"]
        save(result)
    if "tf" in result["runs"]:  # the pipeline with augmentation, against the peers' (which augment too)
        ours = result["runs"]["tf"]["pipeline_images_per_s"]
        result["pipeline_speedup"] = {n: ours / r["images_per_s"] for n, r in result.get("peers", {}).items()
                                      if n != "jaxcnn_prepare_folder"}
        result["pipeline_outruns_models"] = {n: ours / r for n, r in result.get("model_train_images_per_s", {}).items()}
    save(result)
    over = [f"{b}: {r['peak_rss_gb']:.2f} GB" for b, r in result["runs"].items() if not r["under_budget"]]
    if over:
        sys.exit(f"peak RSS over the budget of {args.budget_gb} GB: {', '.join(over)}")


if __name__ == "__main__":
    main()
