"""Input pipelines over in-memory arrays: tf.data (default when TensorFlow is installed) or numpy.

Both backends yield the same batches in the same order, dicts of numpy arrays:
`{"image": float32 NHWC, "label": int32, "mask": float32}`. The data order of an epoch is a
numpy permutation seeded by (seed, epoch), so it is reproducible, identical across backends and
hosts, and resumable mid-epoch. With several processes each one yields its own slice of every
global batch (`process_index`, `process_count`).

`x` may also be a random-access source (`jaxcnn.data.records.PreparedSplit`): each batch's
indices are then read from disk (in a background thread for numpy, in tf.data's map for tf),
the same indices as for an array, so every process reads only the records of its own slice.

uint8 images are scaled to [0, 1] (x * 1/255 in float32) unless `scale_uint8=False` (a model that
scales its own pixels: jaxcnn.models.inputs); float images pass as given.

Training batches drop the ragged remainder (a fixed shape never retraces the step). Evaluation
batches cover every example exactly once: the last batch is padded and `mask` is 0 on padding.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from typing import Callable, Iterator

import numpy as np

from jaxcnn.data.errors import DataError
from jaxcnn.data.records import is_source
from jaxcnn.data.tfutil import has_tensorflow, import_tf  # noqa: F401 - import_tf re-exported for callers

Batch = dict[str, np.ndarray]


def validation_split(x, y, fraction: float):
    """Keras `fit(validation_split=...)`: the LAST `fraction` of (x, y), taken before any shuffling.

    `x` may be an array or a random-access source (its slices are views: nothing is read).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must lie in (0, 1), got {fraction}")
    # Keras: split_at = int(n * (1 - fraction)).
    split_at = int(len(x) * (1.0 - fraction))
    if split_at == 0 or split_at == len(x):
        raise DataError(f"validation_split={fraction} leaves an empty split of {len(x)} examples")
    return (x[:split_at], y[:split_at]), (x[split_at:], y[split_at:])


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Example order for one epoch: a permutation seeded by (seed, epoch), or 0..n-1."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def as_input(x):
    """`x` as the pipeline takes it: a random-access source as it is, anything else as an array."""
    return x if is_source(x) else np.asarray(x)


def prefetch_thread(batches: Iterator, size: int) -> Iterator:
    """Yield from `batches`, computed up to `size` ahead in a background thread (errors re-raised)."""
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop, done = threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for b in batches:
                if not put(b):
                    return
            put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(e)

    thread = threading.Thread(target=work, daemon=True, name="jaxcnn-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the consumer stopped early (or finished): let the thread end
        stop.set()
        thread.join()


def num_train_steps(n: int, global_batch_size: int) -> int:
    """Steps per training epoch (the ragged remainder is dropped)."""
    return n // global_batch_size


def _normalize_np(x: np.ndarray, scale_uint8: bool = True) -> np.ndarray:
    if x.dtype == np.uint8 and scale_uint8:
        return x.astype(np.float32) * np.float32(1.0 / 255.0)
    return x.astype(np.float32, copy=False)


def _reraise_read_errors(batches: Iterator, read_errors: list, op_error: type) -> Iterator:
    """`batches`, with a tf.data failure caused by a record that cannot be read raised as that
    record's own DataError (naming its file), not as TensorFlow's wrapper around it."""
    try:
        yield from batches
        return
    except op_error:
        if not read_errors:
            raise
    # Raised afresh, holding neither TensorFlow's error nor its iterator: an exception kept
    # alive past that point would end the interpreter in TF's teardown.
    message = str(read_errors[0])
    read_errors.clear()
    del batches
    raise DataError(message)


class ArrayPipeline:
    """Batches from in-memory arrays, with Keras `fit` semantics (see the module docstring).

    `batch_size` is the per-process batch; the global batch is `batch_size * process_count`.
    `augment`, if given, maps a float32 image batch and a stateless seed to an image batch, in
    TensorFlow ops for the tf.data backend (`jaxcnn.data.augment`). `parallel_calls`: batches
    tf.data makes at once (default: one per CPU core). Not AUTOTUNE: each call holds a float32
    batch and its augmentation's temporaries: with AUTOTUNE a 128x128 epoch with augmentation
    peaked ~0.25 GB higher on 2 cores (benchmarks/streaming.py).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int = 0,
                 backend: str = "auto", augment: Callable | None = None,
                 process_index: int = 0, process_count: int = 1, prefetch: int = 2,
                 parallel_calls: int | None = None, scale_uint8: bool = True):
        if len(x) == 0:
            raise DataError("empty dataset: no examples to batch")
        if len(x) != len(y):
            raise DataError(f"{len(x)} images but {len(y)} labels")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if backend == "auto":
            backend = "tf" if has_tensorflow() else "numpy"
        if backend not in ("tf", "numpy"):
            raise ValueError(f"backend must be 'auto', 'tf' or 'numpy', got {backend!r}")
        if augment is not None and backend != "tf":
            raise ValueError("augmentation in the input pipeline needs the tf.data backend")
        self.x, self.y = x, np.asarray(y, dtype=np.int32)
        self.batch_size, self.seed, self.backend = batch_size, seed, backend
        self.augment, self.prefetch = augment, prefetch
        self.parallel_calls = parallel_calls or os.cpu_count() or 1
        self.process_index, self.process_count = process_index, process_count
        self.scale_uint8 = scale_uint8  # False: the model scales its own pixels (jaxcnn.models.inputs)
        self._tf_tensors = None

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.process_count

    def steps_per_epoch(self) -> int:
        return num_train_steps(len(self.x), self.global_batch_size)

    def num_eval_batches(self) -> int:
        return math.ceil(len(self.x) / self.global_batch_size)

    def _local_index_batches(self, order: np.ndarray, pad: bool) -> tuple[np.ndarray, np.ndarray]:
        """Index matrix [steps, local_batch] for this process, and a matching 0/1 mask."""
        g, n = self.global_batch_size, len(order)
        steps = math.ceil(n / g) if pad else n // g
        if steps == 0:
            raise DataError(f"{n} examples are fewer than one global batch of {g}: lower the batch size")
        mask = np.zeros(steps * g, np.float32)
        mask[: min(n, steps * g)] = 1.0
        idx = np.zeros(steps * g, np.int64)
        idx[: min(n, steps * g)] = order[: steps * g]
        lo, hi = self.process_index * self.batch_size, (self.process_index + 1) * self.batch_size
        return idx.reshape(steps, g)[:, lo:hi], mask.reshape(steps, g)[:, lo:hi]

    def train_batches(self, epoch: int, start_step: int = 0, shuffle: bool = True) -> Iterator[Batch]:
        """One training epoch, from `start_step` (for a resumed run)."""
        order = epoch_order(len(self.x), self.seed, epoch, shuffle)
        idx, mask = self._local_index_batches(order, pad=False)
        return self._batches(idx[start_step:], mask[start_step:], epoch, start_step, self.augment)

    def eval_batches(self) -> Iterator[Batch]:
        """Every example once, in order; the padded tail has mask 0."""
        idx, mask = self._local_index_batches(np.arange(len(self.x)), pad=True)
        return self._batches(idx, mask, 0, 0, None)

    def _batches(self, idx, mask, epoch, start_step, augment) -> Iterator[Batch]:
        if self.backend == "numpy":
            return self._numpy_batches(idx, mask)
        return self._tf_batches(idx, mask, epoch, start_step, augment)

    def _numpy_batches(self, idx, mask):
        batches = ({"image": _normalize_np(self.x[i], self.scale_uint8), "label": self.y[i], "mask": m} for i, m in zip(idx, mask))
        return prefetch_thread(batches, self.prefetch) if is_source(self.x) and self.prefetch else batches

    def _tf_batches(self, idx, mask, epoch, start_step, augment):
        tf = import_tf()
        read_errors: list = []  # a source's DataError, raised again as itself (tf.data would wrap it)
        if is_source(self.x):
            source = self.x  # read by index in tf.data's map (the records of this process only)
            shape, dtype = tuple(source.image_shape), tf.as_dtype(source.dtype)

            def read(i):
                try:
                    return source.read(i)
                except DataError as e:
                    read_errors.append(e)
                    raise

            def take(i):
                return tf.ensure_shape(tf.numpy_function(read, [i], dtype, stateful=False), (None, *shape))
        else:
            if self._tf_tensors is None:
                self._tf_tensors = tf.constant(self.x)
            x_all = self._tf_tensors

            def take(i):
                return tf.gather(x_all, i)
        y_all = tf.constant(self.y)
        steps = tf.range(start_step, start_step + len(idx), dtype=tf.int64)
        ds = tf.data.Dataset.from_tensor_slices((idx, mask, steps))
        seed, pidx, factor = self.seed, self.process_index, (1.0 / 255.0) if self.scale_uint8 else None

        def gather(i, m, step):
            image = take(i)
            scaled = image.dtype == tf.uint8 and factor is not None
            image = tf.cast(image, tf.float32) * factor if scaled else tf.cast(image, tf.float32)
            if augment is not None:
                # Stateless seed per (run seed, epoch, step, process): reproducible and resumable.
                image = augment(image, tf.stack([tf.cast(seed * 1_000_003 + epoch, tf.int64),
                                                 step * 1024 + pidx]))
            return {"image": image, "label": tf.gather(y_all, i), "mask": m}

        ds = ds.map(gather, num_parallel_calls=self.parallel_calls, deterministic=True)
        ds = ds.prefetch(self.prefetch if self.prefetch else tf.data.AUTOTUNE)
        return _reraise_read_errors(ds.as_numpy_iterator(), read_errors, tf.errors.OpError)
