"""The model card of a run, `workdir/model.json`: what inference needs to rebuild the model.

Written by `jaxcnn.experiment.train_and_evaluate` before training starts (so a preempted run has one
too) and read by `jaxcnn predict`, `export` and `evaluate`:

    {"format": 1, "model": "mnist_cnn", "model_kwargs": {"num_classes": 10},
     "input_shape": [28, 28, 1], "input_dtype": "uint8", "input_scaling": "divide_by_255",
     "class_names": ["0", ..., "9"], "loss": "sparse_categorical_crossentropy",
     "output_activation": "softmax", "dataset": "mnist", "experiment": "mnist_cnn"}

`input_scaling` is the rule the input pipelines apply (`jaxcnn.data.pipeline`): uint8 images are
multiplied by 1/255 in float32, float images pass unchanged. The full training config is a
separate file; this one holds only what serving a model needs.
"""

from __future__ import annotations

import dataclasses
import os

import jax.numpy as jnp
import numpy as np

from jaxcnn.models import get_model
from jaxcnn.run import MODEL_CARD_FILE, NoTrainedModelError, RunFolder, read_json

FILENAME = MODEL_CARD_FILE
FORMAT = 1
SCALINGS = ("divide_by_255", "none")
__all__ = ["FILENAME", "FORMAT", "SCALINGS", "ModelCard", "NoTrainedModelError", "make_card", "output_activation_of",
           "read_card", "write_card"]


@dataclasses.dataclass(frozen=True)
class ModelCard:
    model: str
    model_kwargs: dict
    input_shape: tuple
    input_dtype: str
    input_scaling: str
    class_names: tuple
    loss: str
    output_activation: str
    dataset: str = ""
    experiment: str = ""
    format: int = FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.input_shape[-1])

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_shape"], d["class_names"] = list(self.input_shape), list(self.class_names)
        return d

    def build_model(self):
        """The registered linen module, with the run's keyword arguments."""
        return get_model(self.model, **self.model_kwargs)

    def scale(self, images):
        """The training pipelines' input scaling, in numpy or jax.numpy (by the input's type)."""
        if self.input_scaling == "divide_by_255":
            xp = np if isinstance(images, np.ndarray) else jnp
            return images.astype(xp.float32) * xp.float32(1.0 / 255.0)
        return images.astype("float32")


def output_activation_of(loss: str) -> str:
    return "sigmoid" if loss == "binary_crossentropy" else "softmax"


def make_card(*, model: str, model_kwargs: dict, input_shape, input_dtype, class_names, loss: str,
              dataset: str = "", experiment: str = "") -> ModelCard:
    dtype = np.dtype(input_dtype)
    return ModelCard(model=model, model_kwargs=dict(model_kwargs), input_shape=tuple(int(d) for d in input_shape),
                     input_dtype="uint8" if dtype == np.uint8 else "float32",
                     input_scaling="divide_by_255" if dtype == np.uint8 else "none",
                     class_names=tuple(str(c) for c in class_names), loss=loss,
                     output_activation=output_activation_of(loss), dataset=dataset, experiment=experiment)


def write_card(workdir: str, card: ModelCard) -> str:
    """`workdir/model.json` (strict JSON, written atomically by the run folder); its path."""
    return RunFolder(workdir).write_json(FILENAME, card.to_json())


def read_card(workdir: str) -> ModelCard:
    """The run's model card; NoTrainedModelError with a next step when the folder has none."""
    path = RunFolder(workdir).model_card_path
    if not os.path.isdir(workdir):
        raise NoTrainedModelError(f"{workdir}: no such folder (train first: jaxcnn train NAME --workdir {workdir})")
    if not os.path.isfile(path):
        raise NoTrainedModelError(f"{workdir}: no trained model here (no {FILENAME}; train first with "
                                  f"`jaxcnn train NAME --workdir {workdir}`)")
    d = read_json(path)
    if d.get("format", 0) > FORMAT:
        raise ValueError(f"{path}: model card format {d['format']} is newer than this jaxcnn reads ({FORMAT})")
    if d.get("input_scaling") not in SCALINGS:
        raise ValueError(f"{path}: unknown input_scaling {d.get('input_scaling')!r}; known: {', '.join(SCALINGS)}")
    fields = {f.name for f in dataclasses.fields(ModelCard)}
    d = {k: v for k, v in d.items() if k in fields}
    d["input_shape"], d["class_names"] = tuple(d["input_shape"]), tuple(d["class_names"])
    return ModelCard(**d)
