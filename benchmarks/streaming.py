"""Bounded memory: train over a prepared dataset bigger than a memory budget; report peak RSS.

    python benchmarks/streaming.py --gigabytes 1.5 --budget-gb 1.0 --out DIR --json out.json

Phase 1 (a child process, so its memory is not counted): 128x128 RGB images made from the real
CIFAR-10 training images (resized, each copy shifted by a few pixels so records differ) are
written with `jaxcnn.data.records.prepare_arrays` until the train split holds `--gigabytes` of
pixels; the source is generated chunk by chunk, never held whole.
Phase 2 (this process): the input pipeline alone over `--pipeline-batches` batches (images/s),
then one epoch of a small CNN over the whole split (images/s), then the peak RSS
(`ru_maxrss`), which must stay under `--budget-gb`. The numpy backend is used (no TensorFlow in
the process). Not measured here yet: Keras `image_dataset_from_directory` / `flow_from_directory`
side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def measure(out: str, batch: int, pipeline_batches: int, budget_gb: float) -> dict:
    import flax.linen as nn

    from jaxcnn.data.pipeline import ArrayPipeline
    from jaxcnn.data.records import load_prepared
    from jaxcnn.train import Trainer

    split = load_prepared(out, "train")
    pipe = ArrayPipeline(split, split.labels, batch, seed=0, backend="numpy")
    t0, seen = time.perf_counter(), 0
    for i, b in enumerate(pipe.train_batches(0)):
        seen += len(b["image"])
        if i + 1 == pipeline_batches:
            break
    pipeline_ips = seen / (time.perf_counter() - t0)

    class Small(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.max_pool(nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x)), (4, 4), (4, 4))
            x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3))(x)), (4, 4), (4, 4))
            return nn.Dense(10)(x.reshape(len(x), -1))

    trainer = Trainer(Small(), split.image_shape, optimizer="adam", data_backend="numpy", road="pipeline")
    t0 = time.perf_counter()
    trainer.fit(split, split.labels, epochs=1, batch_size=batch, verbose=0)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    dataset_bytes = split.nbytes
    return {"machine": f"{os.cpu_count()}-core CPU (shared)", "dataset": split.manifest["name"],
            "train_examples": len(split), "dataset_gb": dataset_bytes / 2**30,
            "on_disk_gb": sum(os.path.getsize(f) for f in split.files) / 2**30,
            "budget_gb": budget_gb, "peak_rss_gb": peak / 2**30, "under_budget": peak < budget_gb * 2**30,
            "batch_size": batch, "pipeline_images_per_s": pipeline_ips,
            "train_epoch_seconds": seconds, "train_images_per_s": (len(split) // batch * batch) / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "jaxcnn_streaming_bench"))
    p.add_argument("--gigabytes", type=float, default=3.0, help="pixels in the train split")
    p.add_argument("--budget-gb", type=float, default=1.5)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pipeline-batches", type=int, default=200)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--phase", choices=("all", "write", "measure"), default="all")
    args = p.parse_args()
    if args.phase in ("all", "write") and not os.path.isfile(os.path.join(args.out, "manifest.json")):
        if args.phase == "all":  # in a child: its memory is not this process's
            subprocess.run([sys.executable, __file__, "--phase", "write", "--out", args.out,
                            "--gigabytes", str(args.gigabytes), "--size", str(args.size)], check=True)
        else:
            write(args.out, args.gigabytes, args.size)
    if args.phase == "write":
        return
    result = measure(args.out, args.batch_size, args.pipeline_batches, args.budget_gb)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if not result["under_budget"]:
        sys.exit(f"peak RSS {result['peak_rss_gb']:.2f} GB is over the budget of {args.budget_gb} GB")


if __name__ == "__main__":
    main()
