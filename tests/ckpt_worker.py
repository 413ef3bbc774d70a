"""A small checkpointed training run for tests/test_checkpoint.py, in-process or as a subprocess.

    python tests/ckpt_worker.py WORKDIR [--step-sleep S] [--hang-in-save STEP] [--backend tf]
                                        [--epochs N] [--file-size-limit BYTES] [--prepared DIR] [--uncaught]

N2 (tutorial A's MNIST CNN with dropout, so the rng matters) on the first 256 MNIST training images,
batch 32 (8 steps per epoch), 2 epochs, a checkpoint every 3 steps and at each epoch end, with
every writer a run has on: TensorBoard (WORKDIR/tensorboard, a log every 2 steps), a CSV log
(WORKDIR/log.csv), EarlyStopping and ReduceLROnPlateau (whose state the checkpoints carry).
With `--prepared DIR` the same images are streamed from a prepared dataset (`prepare_data`).
Prints `STEP <global step>` after each step (before its checkpoint, if any, is started);
writes WORKDIR/final.npz with the final params when training completes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax
import numpy as np

from jaxcnn.checkpoint import CheckpointCallback, CheckpointError, Preempted
from jaxcnn.data import load_dataset
from jaxcnn.data.records import prepare_arrays
from jaxcnn.models.layers import Conv, Dense, flatten, max_pool
from jaxcnn.train import Trainer
from jaxcnn.train.callbacks import CSVLogger, EarlyStopping, ReduceLROnPlateau, TensorBoard

EPOCHS, BATCH, N_TRAIN, N_TEST = 2, 32, 256, 64
STEPS_PER_EPOCH = N_TRAIN // BATCH


class N2(nn.Module):
    """N2: C32 P Do.25 C64 P Do.25 F D64 Do.5 -> classes (narrowed here to keep tests fast)."""

    num_classes: int = 10
    width: int = 8

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = max_pool(nn.relu(Conv(self.width, (3, 3), name="conv1")(x)))
        x = nn.Dropout(0.25, deterministic=not train)(x)
        x = max_pool(nn.relu(Conv(2 * self.width, (3, 3), name="conv2")(x)))
        x = nn.Dropout(0.25, deterministic=not train)(x)
        x = nn.relu(Dense(16, name="dense1")(flatten(x)))
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return Dense(self.num_classes, name="logits")(x)


def data():
    return load_dataset("mnist").take(N_TRAIN, N_TEST)


def prepare_data(out):
    """The worker's data written as a prepared dataset (shards of 100 records)."""
    ds = data()
    prepare_arrays(out, {"train": (ds.x_train, ds.y_train), "test": (ds.x_test, ds.y_test)}, ds.class_names,
                   name="mnist-tiny", shard_size=100, progress=False)
    return out


def make_trainer(backend="numpy", optimizer="adam", model=None):
    return Trainer(model or N2(), (28, 28, 1), optimizer=optimizer, seed=0, data_backend=backend)


class _Progress:
    def __init__(self, sleep):
        self.sleep = sleep

    def on_train_begin(self, trainer): ...
    def on_epoch_end(self, trainer, epoch, logs): ...
    def on_train_end(self, trainer): ...

    def on_step_end(self, trainer, epoch, step):
        print(f"STEP {epoch * STEPS_PER_EPOCH + step}", flush=True)
        if self.sleep:
            time.sleep(self.sleep)


def run(workdir, backend="numpy", step_sleep=0.0, epochs=EPOCHS, async_save=True, prepared=None):
    """Train (resuming from WORKDIR/checkpoints if present); returns (trainer, checkpoint callback)."""
    ds = load_dataset(f"prepared:{prepared}") if prepared else data()
    trainer = make_trainer(backend)
    ckpt = CheckpointCallback(os.path.join(workdir, "checkpoints"), every_n_steps=3, max_to_keep=2,
                              best_metric="val_accuracy", async_save=async_save)
    writers = [TensorBoard(os.path.join(workdir, "tensorboard"), images=4),
               CSVLogger(os.path.join(workdir, "log.csv")),
               EarlyStopping("val_loss", patience=3),
               # lowers the rate after every epoch but the first (a plateau no loss can leave)
               ReduceLROnPlateau("val_loss", factor=0.5, patience=0, min_delta=1e9)]
    trainer.fit(ds.x_train, ds.y_train, epochs=epochs, batch_size=BATCH, verbose=0, log_every=2,
                validation_data=(ds.x_test, ds.y_test), callbacks=[ckpt, _Progress(step_sleep), *writers])
    np.savez(os.path.join(workdir, "final.npz"), predictions=trainer.predict(ds.x_test),
             **{jax.tree_util.keystr(k): np.asarray(v)
                for k, v in jax.tree_util.tree_flatten_with_path(trainer.state.params)[0]})
    with open(os.path.join(workdir, "history.json"), "w") as f:
        json.dump({k: v for k, v in trainer.history.items() if k != "seconds"}, f)
    return trainer, ckpt


def _hang_in_save(step):
    """Make the commit (rename) of checkpoint `step` hang after all its files are written."""
    from orbax.checkpoint._src.path import atomicity

    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self):
        if self._final_path.name == str(step):
            print("IN_SAVE", flush=True)
            time.sleep(600)
        return await original(self)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--step-sleep", type=float, default=0.0)
    p.add_argument("--hang-in-save", type=int)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--prepared", help="stream the data from this prepared dataset folder")
    p.add_argument("--file-size-limit", type=int, help="RLIMIT_FSIZE: a bigger write fails (EFBIG)")
    p.add_argument("--uncaught", action="store_true",
                   help="a user's plain script: Preempted / Interrupted are not caught here")
    args = p.parse_args()
    if args.file_size_limit:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size_limit, args.file_size_limit))
    if args.hang_in_save is not None:
        _hang_in_save(args.hang_in_save)
    if args.uncaught:
        run(args.workdir, args.backend, args.step_sleep, epochs=args.epochs, prepared=args.prepared)
        print("DONE", flush=True)
        sys.exit(0)
    try:
        run(args.workdir, args.backend, args.step_sleep, epochs=args.epochs, prepared=args.prepared)
    except Preempted as e:
        print(f"PREEMPTED {e}", flush=True)
        sys.exit(e.exit_code)
    except CheckpointError as e:  # the CLI prints such errors as one line too
        print(f"ERROR {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("DONE", flush=True)
