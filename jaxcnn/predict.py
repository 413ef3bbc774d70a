"""Use a trained run: class probabilities for arrays and image files.

    predictor = jaxcnn.predict.load_predictor("runs/mnist_cnn")
    probs = predictor.predict(images)                   # uint8 or float NHWC, as the run trained
    rows = predictor.predict_files(["digit.png", "more_digits/"], top_k=3)
    trainer = jaxcnn.load("runs/mine")                  # a Trainer: predict, evaluate, fit on, save

The run's model card (`model.json`, jaxcnn.model_card) names the model, its input shape and
scaling and the class names; the weights come from `workdir/params` (the final ones), or from a
checkpoint: the best by the metric the run tracked, the latest, or a step. Any run folder works:
an experiment's, or one a user's Trainer wrote (`trainer.save(workdir)`). Files are decoded
with Pillow, resized to the input size with the training loader's own rule (TensorFlow bilinear,
rounded to uint8) and scaled like the training batches (once: a model that scales its own
pixels gets them raw, jaxcnn.models.inputs).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import tarfile
import zipfile
from typing import Iterable, Sequence

import jax
import numpy as np

from jaxcnn import checkpoint as ckpt
from jaxcnn._compat import tqdm
from jaxcnn.config.checks import CHECKPOINT_CHOICES  # noqa: F401  (the old name here)
from jaxcnn.data import load_dataset
from jaxcnn.data.checks import input_shape_problem
from jaxcnn.data.image_folder import resize_images
from jaxcnn.data.pipeline import import_tf
from jaxcnn.model_card import ModelCard, NoTrainedModelError, read_card  # noqa: F401  (re-exported)
from jaxcnn.report import class_probabilities
from jaxcnn.run import RunFolder
from jaxcnn.train import Trainer

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tar.gz", ".tgz")
ON_ERROR = ("list", "skip", "fail")


class ImageError(ValueError):
    """An image that cannot be read, or does not fit the model (e.g. a wrong channel count)."""


def _weights_source(workdir: str, checkpoint: str | int) -> tuple[str, str | int]:
    """(path, step) for `checkpoint.load_weights`: final params, or a checkpoint of the run."""
    return RunFolder(workdir).weights_source(checkpoint)


@dataclasses.dataclass
class Prediction:
    """One file's result: top-k (class name, probability), or the error that stopped it."""

    source: str
    top: list = dataclasses.field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        d = {"file": self.source}
        if self.error is not None:
            d["error"] = self.error
        else:
            d["class"], d["probability"] = self.top[0]
            d["top"] = [{"class": c, "probability": p} for c, p in self.top]
        return d


class Predictor:
    """A trained model with its card: `predict(images)` -> class probabilities [n, classes].

    Runs through `Trainer.predict` (the run's device strategy: batches split over every local
    device, the padded tail dropped), in float32.
    """

    def __init__(self, card: ModelCard, trainer, source: str, step: int | None, batch_size: int = 256):
        self.card, self.trainer, self.source, self.step = card, trainer, source, step
        self.batch_size = batch_size

    @property
    def class_names(self) -> tuple:
        return self.card.class_names

    @property
    def variables(self) -> dict:
        """Host copies of the weights: {"params"[, "batch_stats"]} for `model.apply`."""
        state = self.trainer.state
        out = {"params": jax.device_get(state.params)}
        if state.batch_stats:
            out["batch_stats"] = jax.device_get(state.batch_stats)
        return out

    def check_images(self, images) -> np.ndarray:
        images = np.asarray(images)
        problem = input_shape_problem(images.shape, self.card.input_shape)
        if problem:
            raise ImageError(problem)
        return images

    def predict(self, images) -> np.ndarray:
        """Probabilities [n, classes] (binary models: [P(class 0), P(class 1)]) for NHWC images."""

        images = self.check_images(images)
        if self.card.input_dtype == "uint8" and images.dtype != np.uint8:
            raise ImageError(f"the model was trained on uint8 images [0, 255], got {images.dtype}")
        return class_probabilities(self.trainer.predict(images, batch_size=self.batch_size), self.card.loss)

    # -- files ---------------------------------------------------------------------------------
    def load_image(self, data: bytes, name: str, convert: bool = False) -> np.ndarray:
        """One encoded image -> the model's input (uint8 HWC, or float32 for float-input models)."""
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a readable image (no known image format)") from None
        except (OSError, ValueError) as e:  # truncated or damaged
            raise ImageError(f"{name}: not a readable image ({e})") from None
        want = self.card.channels
        if img.mode in ("P", "1", "I;16", "I", "F", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("L" if img.mode in ("1", "I;16", "I", "F") else "RGB")
        have = len(img.getbands())
        if have != want:
            if not convert:
                raise ImageError(f"{name}: {have} channel(s) ({img.mode}), but the model takes "
                                 f"{want} ({'grayscale' if want == 1 else 'RGB' if want == 3 else want}); "
                                 "pass --convert to convert it")
            if want not in (1, 3):
                raise ImageError(f"{name}: cannot convert {img.mode} to {want} channels")
        arr = _tf_decode(data, want) if img.format != "PNG" else None
        if arr is None:
            arr = np.asarray(img if have == want else img.convert("L" if want == 1 else "RGB"))
            arr = arr[..., None] if arr.ndim == 2 else arr
        h, w = self.card.input_shape[:2]
        if arr.shape[:2] != (h, w):

            arr = resize_images(arr[None].astype(np.uint8), (h, w))[0]
        if self.card.input_dtype == "float32":
            # A float-input run (e.g. spectrograms) took its inputs unscaled: give it [0, 1] pixels
            # (0..255 to a model that scales its own).
            arr = arr.astype(np.float32)
            if not self.card.takes_raw_pixels:
                arr = arr / np.float32(255.0)
        return arr

    def predict_files(self, paths: Sequence[str], top_k: int = 3, on_error: str = "list",
                      convert: bool = False, progress: bool = False) -> list[Prediction]:
        """Top-k classes for image files, folders (searched recursively) and .zip/.tar(.gz) archives.

        on_error: "list" (unreadable or unfitting files are returned with their error), "skip"
        (left out), "fail" (ImageError naming every such file, before predicting anything).
        """
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        top_k = max(1, min(top_k, self.card.num_classes))
        images, names, failed = [], [], []

        sources = list(dict(iter_image_sources(paths)).items())  # a file named twice is read once
        if not sources:
            raise ImageError(f"no image files found in: {', '.join(paths)}")
        bar = tqdm(total=len(sources), desc="reading", unit="file", disable=not progress or len(sources) < 64)
        for name, read in sources:
            try:
                images.append(self.load_image(read(), name, convert))
                names.append(name)
            except (ImageError, OSError) as e:
                failed.append(Prediction(name, error=str(e)))
            bar.update()
        bar.close()
        if failed and on_error == "fail":
            raise unusable_files(failed, len(sources))
        results = {}
        if images:
            batch = np.stack(images)
            probs = []
            chunk = max(self.batch_size, 1) * 16
            bar = tqdm(total=len(batch), desc="predicting", unit="image", disable=not progress or len(batch) <= chunk)
            for i in range(0, len(batch), chunk):
                probs.append(self.predict(batch[i:i + chunk]))
                bar.update(len(probs[-1]))
            bar.close()
            probs = np.concatenate(probs)
            order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
            for name, p, o in zip(names, probs, order):
                results[name] = Prediction(name, [(self.card.class_names[k], float(p[k])) for k in o])
        if on_error == "list":
            results.update({p.source: p for p in failed})
        return [results[name] for name, _ in sources if name in results]


def _tf_decode(data: bytes, channels: int):
    """TensorFlow's decoding (the image-folder loader's), or None without TensorFlow.

    JPEG decoders round differently: Pillow's pixels differed from TensorFlow's by up to 4 levels
    on CIFAR-10 JPEGs, so lossy files are decoded as the training data was. PNG is exact in both.
    """
    if importlib.util.find_spec("tensorflow") is None:
        return None

    tf = import_tf()
    try:
        return tf.io.decode_image(data, channels=channels, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError:
        return None  # a format TensorFlow does not read (e.g. TIFF, WebP): Pillow's pixels


def iter_image_sources(paths: Iterable[str]):
    """(name, read() -> bytes) for each image in files, folders (recursive, sorted) and archives."""
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        yield os.path.join(root, f), _file_reader(os.path.join(root, f))
        elif path.lower().endswith(ARCHIVE_EXTENSIONS) and os.path.isfile(path):
            yield from _archive_sources(path)
        else:
            yield path, _file_reader(path)  # a missing or non-image file becomes its own error


def _file_reader(path):
    def read():
        with open(path, "rb") as f:
            return f.read()

    return read


def _archive_sources(path):
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            members = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_EXTENSIONS))
            data = {n: z.read(n) for n in members}
    else:
        with tarfile.open(path) as t:
            members = sorted((m for m in t.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_EXTENSIONS)),
                             key=lambda m: m.name)
            data = {m.name: t.extractfile(m).read() for m in members}
    for name in sorted(data):
        yield f"{path}:{name}", (lambda b=data[name]: b)


def unusable_files(failed: Sequence[Prediction], total: int) -> ImageError:
    """One line naming the first file that cannot be used (its error) and how many more there are."""
    more = len(failed) - 1
    if not more:
        return ImageError(failed[0].error)
    return ImageError(f"{failed[0].error} (and {more} more: {len(failed)} of {total} files cannot be used; "
                      "--on-error list names each)")


def load_test_split(card: ModelCard, data_dir: str | None = None, limit: int | None = None):
    """(images, labels) of the run's dataset's test split, resized to the model's input as in training.

    Datasets built with extra arguments (dataset_kwargs) are loaded with their defaults here.
    """

    ds = load_dataset(card.dataset, data_dir=data_dir).take(None, limit)  # as `--limit` in training
    x, y = ds.x_test, ds.y_test
    if x.ndim == 4 and tuple(x.shape[1:3]) != tuple(card.input_shape[:2]):

        x = resize_images(x, card.input_shape[:2])
    return x, y


def load_predictor(workdir: str, checkpoint: str | int = "auto", batch_size: int = 256) -> Predictor:
    """The run in `workdir` ready to predict.

    `checkpoint`: "auto" (final weights, else the latest checkpoint), "final" (`params/`), "best"
    (by the metric the run tracked), "latest", or a step number. Raises NoTrainedModelError when
    the folder holds no model card or no weights.
    """

    # Plain SGD carries no optimizer state: the Trainer is only the model, its weights and predict.
    trainer, path, step = _load(workdir, checkpoint, optimizer="sgd", compute_dtype="f32")
    return Predictor(trainer.card, trainer, path, step, batch_size=batch_size)


def load(workdir: str, checkpoint: str | int = "auto", **trainer_kwargs) -> Trainer:
    """`jaxcnn.load(WORKDIR)`: the run's model in a Trainer with its weights, ready to predict,
    evaluate, fit on (fine-tune) and save; `trainer.card` is the run's model card.

    Rebuilds whatever the card names in a fresh process (a registered model, a user's module by
    import path or file, an imported Keras folder). `checkpoint` as in `load_predictor`;
    `trainer_kwargs` go to `Trainer` (optimizer, learning_rate, metrics, ...; the loss, input
    shape and input range are the run's).
    """
    return _load(workdir, checkpoint, **trainer_kwargs)[0]


def _load(workdir: str, checkpoint: str | int, **trainer_kwargs):
    """(Trainer with the run's weights and card, the weights' path, the step loaded)."""
    card = read_card(workdir)
    path, step = _weights_source(workdir, checkpoint)
    trainer_kwargs.setdefault("loss", card.loss)
    trainer = Trainer(card.build_model(), card.input_shape, input_range=card.input_range, **trainer_kwargs)
    loaded = ckpt.load_weights(trainer, path, step=step)
    trainer.card = card
    return trainer, path, loaded


def write_csv(predictions: Sequence[Prediction], path) -> None:
    import csv

    top_k = max((len(p.top) for p in predictions), default=1)
    cols = ["file"] + [f"{w}{i + 1}" for i in range(top_k) for w in ("class", "probability")] + ["error"]
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(cols)
        for p in predictions:
            cells = [v for c, prob in p.top for v in (c, f"{prob:.6g}")]
            out.writerow([p.source] + cells + [""] * (2 * top_k - len(cells)) + [p.error or ""])
