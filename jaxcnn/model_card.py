"""The model card of a run, `workdir/model.json`: what inference needs to rebuild the model.

Written by `jaxcnn.experiment.train_and_evaluate` before training starts (so a preempted run has one
too) and by `Trainer.save(workdir)`; read by `jaxcnn predict`, `export`, `evaluate` and
`jaxcnn.load`:

    {"format": 1, "model": "mnist_cnn", "model_kwargs": {"num_classes": 10}, "api": "linen",
     "input_shape": [28, 28, 1], "input_dtype": "uint8", "input_range": "0..1",
     "input_scaling": "divide_by_255", "class_names": ["0", ..., "9"],
     "loss": "sparse_categorical_crossentropy", "output_activation": "softmax",
     "dataset": "mnist", "experiment": "mnist_cnn"}

`model` says how to rebuild the module (with `model_kwargs`): a registered name (`mnist_cnn`), an
import path (`my_pkg.models:SmallCNN`, or `/abs/path/models.py:SmallCNN` for a class in a file),
or an imported Keras folder (`keras:/abs/path/folder`); `api` is "linen" or "nnx" (built by
`jaxcnn.nnx`). `input_range` is what the model takes ("0..1", or "0..255" when it scales its own
pixels, e.g. a Keras `Rescaling` layer; jaxcnn.models.inputs) and `input_scaling` what is done to
uint8 images before it: multiplied by 1/255 in float32 ("divide_by_255") or only cast ("none").
Float images pass unchanged. The full training config is a separate file; this one holds only
what serving a model needs.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import sys

import numpy as np

from jaxcnn import nnx
from jaxcnn.errors import UsageError
from jaxcnn.models import get_model
from jaxcnn.models.inputs import DIVIDE, NONE, input_range_of, scale_uint8, scaling_for
from jaxcnn.models.registry import is_import_path, model_origin
from jaxcnn.run import MODEL_CARD_FILE, NoTrainedModelError, RunFolder, read_json

FILENAME = MODEL_CARD_FILE
FORMAT = 1
SCALINGS = (DIVIDE, NONE)
APIS = ("linen", "nnx")
__all__ = ["APIS", "FILENAME", "FORMAT", "SCALINGS", "ModelCard", "NoTrainedModelError", "build_model", "make_card",
           "model_api", "model_reference", "output_activation_of", "read_card", "write_card"]


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
    api: str = "linen"
    input_range: str = ""  # "" (a card from before the field): what input_scaling implies
    model_path: str = ""  # for `module:Name`: the folder the module was imported from

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.input_shape[-1])

    @property
    def takes_raw_pixels(self) -> bool:
        """The model scales its own pixels (input range 0..255)."""
        return self.input_range == "0..255"

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_shape"], d["class_names"] = list(self.input_shape), list(self.class_names)
        return d

    def build_model(self):
        """The module the card names, with the run's keyword arguments (see `build_model`)."""
        _find_module(self.model, self.model_path)
        return build_model(self.model, self.model_kwargs, self.api)

    def scale(self, images):
        """What the model takes, from images as the run was fed (numpy or jax.numpy, by type)."""
        return scale_uint8(images, self.input_scaling)


def output_activation_of(loss: str) -> str:
    return "sigmoid" if loss == "binary_crossentropy" else "softmax"


def build_model(name: str, model_kwargs: dict | None = None, api: str = "linen"):
    """The module a card names: a registered name, an import path or `keras:FOLDER`.

    With api "nnx" the build goes through `get_model(name, api="nnx")`, wrapped by `jaxcnn.nnx`.
    """
    kwargs = _tuples(dict(model_kwargs or {}))
    if api == "nnx":
        # The NNX module in its linen-like face (apply/init), as Trainer and export take it.
        return nnx.as_model(get_model(name, api="nnx", **kwargs))
    if api != "linen":
        raise ValueError(f"unknown model api {api!r}; known: {', '.join(APIS)}")
    return get_model(name, **kwargs)


def _tuples(v):
    """JSON lists back to tuples (linen fields hold tuples: hashable, as the module was built)."""
    if isinstance(v, dict):
        return {k: _tuples(x) for k, x in v.items()}
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    return v


def model_api(model) -> str:
    """ "nnx" for a `flax.nnx.Module`, else "linen" (checked by class, without importing flax.nnx)."""
    if getattr(model, "api", None) == "nnx":  # jaxcnn.nnx.NnxModel (what Trainer holds for an NNX module)
        return "nnx"
    return "nnx" if any(c.__module__.startswith("flax.nnx") for c in type(model).__mro__) else "linen"


def canonical_name(name: str) -> str:
    """`name` as a fresh process elsewhere finds it: file paths and Keras folders made absolute."""
    if is_import_path(name):
        where, _, attr = name.rpartition(":")
        return f"{os.path.abspath(where)}:{attr}" if where.endswith(".py") else name
    if name.startswith("keras:"):
        return f"keras:{os.path.abspath(name[len('keras:'):])}"
    return name


def _json_value(v) -> bool:
    try:
        return json.loads(json.dumps(v, allow_nan=False)) is not None or v is None
    except (TypeError, ValueError):
        return False


def model_reference(model) -> tuple[str, dict]:
    """(name, kwargs) that rebuild `model` in a fresh process, as a model card records them.

    A module from `get_model` keeps its name (registered, import path, `keras:FOLDER`); any other
    linen module is named by its class's import path (its file's path when the class was defined
    in a script or a file outside any package) with its constructor fields: the dataclass fields
    of the module, those that are not JSON (e.g. an activation function) only at their defaults.
    """
    origin = model_origin(model)
    if origin is not None:
        return canonical_name(origin[0]), origin[1]
    cls = type(model)
    if model_api(model) == "nnx":
        return nnx.model_reference(model)
    if not dataclasses.is_dataclass(model):
        raise UsageError(f"{cls.__name__}: not a flax linen module; give Trainer a linen module "
                         "(or one built by jaxcnn.models.get_model)")
    kwargs = {}
    for f in dataclasses.fields(model):
        if f.name in ("parent", "name") or not f.init:
            continue
        value = getattr(model, f.name)
        if _json_value(value):
            kwargs[f.name] = value
        elif not (f.default is not dataclasses.MISSING and f.default is value):
            raise UsageError(f"{cls.__name__}.{f.name} = {value!r} cannot be written into {FILENAME} "
                             "(not a JSON value): leave it at its default, make it a name (e.g. "
                             "'relu'), or register a factory with jaxcnn.models.register_model")
    return _class_path(cls), kwargs


def _class_path(cls) -> str:
    """`module:Qualname` for a class in an importable module, else `/abs/file.py:Qualname`."""
    if "<locals>" in cls.__qualname__:
        raise UsageError(f"{cls.__qualname__}: a class defined inside a function cannot be rebuilt "
                         "elsewhere; define it at the top level of a module")
    if not (cls.__module__ == "__main__" or cls.__module__.startswith("_jaxcnn_user_")):
        return f"{cls.__module__}:{cls.__qualname__}"  # found again through `model_path` if need be
    path = getattr(importlib.import_module(cls.__module__), "__file__", None)
    if path is None:
        raise UsageError(f"{cls.__qualname__}: defined in {cls.__module__} (e.g. a notebook), which has no file "
                         "to load it from in another process; move the class into a .py file and import it")
    return f"{os.path.abspath(path)}:{cls.__qualname__}"


def import_root(name: str) -> str:
    """For `module.path:Name`: the folder on sys.path its module was imported from ("" if unknown),
    so that a process started elsewhere (another sys.path) finds the module too."""
    if not is_import_path(name) or name.rpartition(":")[0].endswith(".py"):
        return ""
    module_name = name.rpartition(":")[0]
    top = module_name.split(".")[0]
    if top in ("jaxcnn", "flax"):
        return ""
    try:
        path = getattr(importlib.import_module(module_name), "__file__", None)
    except ImportError:
        return ""
    if path is None:
        return ""
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(module_name.count(".") + (os.path.basename(path) == "__init__.py")):
        root = os.path.dirname(root)
    return root


def _find_module(name: str, model_path: str) -> None:
    """Put `model_path` on sys.path when the module of import path `name` is not importable here."""
    if model_path and ":" in name:  # recorded for `module.path:Name` only (import_root)
        top = name.split(":")[0].split(".")[0]
        if importlib.util.find_spec(top) is None and os.path.isdir(model_path):
            sys.path.append(model_path)


def make_card(*, model: str, model_kwargs: dict, input_shape, input_dtype, class_names, loss: str,
              dataset: str = "", experiment: str = "", api: str = "linen", input_range: str | None = None) -> ModelCard:
    """The card of a run. `input_range` None: asked of the module `model` names (models.inputs)."""
    dtype = np.dtype(input_dtype)
    model = canonical_name(model)
    model_path = import_root(model)
    if input_range is None:
        input_range = input_range_of(build_model(model, model_kwargs, api))
    scaling = scaling_for(input_range) if dtype == np.uint8 else NONE
    return ModelCard(model=model, model_kwargs=dict(model_kwargs), input_shape=tuple(int(d) for d in input_shape),
                     input_dtype="uint8" if dtype == np.uint8 else "float32", input_scaling=scaling,
                     class_names=tuple(str(c) for c in class_names), loss=loss,
                     output_activation=output_activation_of(loss), dataset=dataset, experiment=experiment,
                     api=api, input_range=input_range, model_path=model_path)


def write_card(workdir: str, card: ModelCard) -> str:
    """`workdir/model.json` (strict JSON, written atomically by the run folder); its path."""
    return RunFolder(workdir).write_json(FILENAME, card.to_json())


def read_card(workdir: str) -> ModelCard:
    """The run's model card; NoTrainedModelError with a next step when the folder has none."""
    path = RunFolder(workdir).model_card_path
    if not os.path.isdir(workdir):
        raise NoTrainedModelError(f"{workdir}: no such folder (train first: jaxcnn train NAME --workdir {workdir}, "
                                  "or save a Trainer there: trainer.save(WORKDIR))")
    if not os.path.isfile(path):
        raise NoTrainedModelError(f"{workdir}: no trained model here (no {FILENAME}; train first with "
                                  f"`jaxcnn train NAME --workdir {workdir}`, or save a Trainer there with "
                                  "trainer.save(WORKDIR) or fit(..., workdir=WORKDIR))")
    d = read_json(path)
    if d.get("format", 0) > FORMAT:
        raise ValueError(f"{path}: model card format {d['format']} is newer than this jaxcnn reads ({FORMAT})")
    if d.get("input_scaling") not in SCALINGS:
        raise ValueError(f"{path}: unknown input_scaling {d.get('input_scaling')!r}; known: {', '.join(SCALINGS)}")
    fields = {f.name for f in dataclasses.fields(ModelCard)}
    d = {k: v for k, v in d.items() if k in fields}
    d["input_shape"], d["class_names"] = tuple(d["input_shape"]), tuple(d["class_names"])
    if not d.get("input_range"):  # an older card: scaled uint8 pixels meant a model taking 0..1
        d["input_range"] = "0..1" if d["input_scaling"] == DIVIDE or d.get("input_dtype") != "uint8" else "0..255"
    return ModelCard(**d)
