"""TensorBoard event files without TensorFlow: `SummaryWriter` and the `TensorBoard` callback.

Written with TensorBoard's own record writer and protobufs (the `tensorboard` package, which
needs no TensorFlow; `pip install 'jaxcnn[tensorboard]'`) into a plain file, so a GPU or TPU
host without TensorFlow writes real event files, and no TensorFlow is imported when it is there:

    trainer.fit(x, y, epochs=5, validation_data=(xv, yv),
                callbacks=[TensorBoard("runs/x/tensorboard")])   # then: tensorboard --logdir runs/x

Layout as Keras': `logdir/train` (per-step `batch_*` and per-epoch `epoch_*` scalars, the
learning rate, a grid of the first training batch's images, the model summary as text) and
`logdir/validation` (per-epoch `epoch_*`). Per epoch also `epoch_step_time`,
`epoch_input_wait_fraction` and `epoch_images_per_second` (jaxcnn.train.callbacks.timing);
`profile_steps=(START, STOP)` adds a `jax.profiler` trace of those global steps under
`logdir/train/plugins/profile` (jaxcnn.train.callbacks.profile), as Keras' `profile_batch`.

In a run that a checkpoint resumes, the logs follow the run: on a resume, whatever a killed
process logged after its last checkpoint is cut from the event files (jaxcnn.train.callbacks.tb_events),
and every log point is flushed before the checkpoint of its step is written, so the scalars equal
an uninterrupted run's (the wall-clock ones excepted).
"""

from __future__ import annotations

import io
import os
import socket
import time

import jax
import numpy as np

from jaxcnn.train.callbacks import tb_events
from jaxcnn.train.callbacks.base import Callback
from jaxcnn.train.callbacks.profile import ProfileSteps
from jaxcnn.train.callbacks.progress import logger
from jaxcnn.train.callbacks.timing import TIMING_KEYS


def _tb():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.image import metadata as image_metadata
        from tensorboard.plugins.text import metadata as text_metadata
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("TensorBoard logging needs the `tensorboard` package (no TensorFlow needed): "
                          "pip install 'jaxcnn[tensorboard]'") from e
    return event_pb2, summary_pb2, image_metadata, text_metadata, RecordWriter


def _png(image: np.ndarray) -> bytes:
    """PNG bytes of an HxW or HxWxC uint8 image (Pillow, which matplotlib already needs)."""
    from PIL import Image

    image = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def image_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """[N, H, W, C] floats in [0, 1] (or uint8) -> one uint8 grid image, `columns` wide."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = (np.clip(images.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = np.zeros((rows * h, columns * w, c), np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    return grid


_uid = iter(range(1 << 62))


class SummaryWriter:
    """Scalars, images and text into one TensorBoard run folder (`logdir`): a new event file
    named as TensorBoard's writer names them, written in this thread, on disk at `flush()`."""

    def __init__(self, logdir: str, flush_secs: int | None = None):  # flush_secs: unused, kept for callers
        self.logdir = logdir
        os.makedirs(logdir, exist_ok=True)
        self._pb = _tb()
        event_pb2, _, _, _, RecordWriter = self._pb
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_uid)}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "wb")
        self._writer = RecordWriter(self._file)
        self._event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def _event(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def _add(self, step: int, value) -> None:
        event_pb2, summary_pb2 = self._pb[0], self._pb[1]
        self._event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=[value])))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._add(step, self._pb[1].Summary.Value(tag=tag, simple_value=float(value)))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """`image`: HxW or HxWxC uint8 (see `image_grid`)."""
        summary_pb2, image_metadata = self._pb[1], self._pb[2]
        h, w = image.shape[:2]
        c = image.shape[2] if image.ndim == 3 else 1
        encoded = summary_pb2.Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=_png(image))
        meta = image_metadata.create_summary_metadata(display_name=tag, description="")
        self._add(step, summary_pb2.Summary.Value(tag=tag, image=encoded, metadata=meta))

    def text(self, tag: str, text: str, step: int) -> None:
        """Markdown text (shown in TensorBoard's Text tab)."""
        summary_pb2, text_metadata = self._pb[1], self._pb[3]
        from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode("utf-8")],
                                        tensor_shape=tensor_shape_pb2.TensorShapeProto())
        meta = text_metadata.create_summary_metadata(display_name=tag, description="")
        self._add(step, summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class TensorBoard(Callback):
    """Writes a run to TensorBoard (process 0 only: one writer per job).

    Per log point (`fit(log_every=...)`; 1 for every step): `batch_<metric>` running epoch
    means and `batch_learning_rate`; per epoch: `epoch_<metric>` in `train/` and `validation/`,
    `epoch_learning_rate`; once: a grid of `images` training images (0 for none) and the model
    summary as text. `profile_steps`: `(START, STOP)` or "START:STOP", global steps to trace
    with `jax.profiler` into `log_dir/train` (None: no trace).

    Under a checkpoint that resumes (`trainer.resumable`), a resumed run first cuts the event
    files back to the checkpoint's step (`tb_events.cut_back`) and writes the one-off summaries
    only when it starts from step 0; each log point is flushed at once (a checkpoint may follow).
    """

    def __init__(self, log_dir: str = "logs", images: int = 16, write_steps: bool = True,
                 write_summary: bool = True, profile_steps=None):
        self.log_dir, self.images, self.write_steps, self.write_summary = log_dir, images, write_steps, write_summary
        self.profiler = (None if profile_steps is None
                         else ProfileSteps(os.path.join(log_dir, "train"), profile_steps))
        self.train: SummaryWriter | None = None
        self.validation: SummaryWriter | None = None
        self.x_sample: np.ndarray | None = None  # set by the user, else taken from `trainer.fit_data`

    def on_train_begin(self, trainer):
        if self.profiler is not None:
            self.profiler.on_train_begin(trainer)
        if jax.process_index() != 0:
            return
        step = trainer.global_step
        dirs = [os.path.join(self.log_dir, run) for run in ("train", "validation")]
        resumable = getattr(trainer, "resumable", False)
        if resumable:  # drop what a killed process logged after the checkpoint this run resumes from
            for d in dirs:
                if os.path.isdir(d):
                    tb_events.cut_back(d, step, len(trainer.history.epoch))
        self.train, self.validation = (SummaryWriter(d) for d in dirs)
        if resumable and step > 0:
            return  # the model summary and images are in the run's first event file
        if self.write_summary:
            try:
                self.train.text("model", "```\n" + trainer.summary(print_fn=None, flops=False) + "\n```", step)
            except Exception as e:  # noqa: BLE001  (a summary is a convenience, never a failure)
                logger.warning("TensorBoard: no model summary (%s: %s)", type(e).__name__, e)
        sample = self.x_sample if self.x_sample is not None else getattr(trainer, "fit_sample", None)
        if self.images and sample is not None and np.ndim(sample) == 4:
            self.train.image("images", image_grid(np.asarray(sample[: self.images])), step)
        self.train.flush()

    def on_log(self, trainer, step, logs):
        if self.train is None or not self.write_steps:
            return
        for k, v in logs.items():
            self.train.scalar(f"batch_{k}", v, step)
        self.train.flush()

    def on_epoch_end(self, trainer, epoch, logs):
        if self.train is None:
            return
        for k, v in logs.items():
            if k == "seconds":
                continue
            if k.startswith("val_"):
                self.validation.scalar(f"epoch_{k[4:]}", v, epoch)
            else:
                self.train.scalar(f"epoch_{k}", v, epoch)
        timing = getattr(trainer, "timing", None) or {}
        if timing.get("epoch") and timing["epoch"][-1] == epoch:
            for k in TIMING_KEYS:
                self.train.scalar(f"epoch_{k}", timing[k][-1], epoch)
        self.train.flush()
        self.validation.flush()

    def on_train_end(self, trainer):
        if self.profiler is not None:
            self.profiler.on_train_end(trainer)
        for w in (self.train, self.validation):
            if w is not None:
                w.close()
        self.train = self.validation = None
