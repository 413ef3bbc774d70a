"""Flax NNX models in jaxcnn: train, check, checkpoint and predict an `nnx.Module` like a linen one.

    from flax import nnx
    trainer = Trainer(MyNet(rngs=nnx.Rngs(0)), input_shape=(28, 28, 1))   # or as_model(MyNet, ...)
    trainer.fit(x, y)
    net = trained_module(trainer)                  # the NNX module with the trained values

The pure step holds variables, not modules: `NnxModel` (jaxcnn.nnx.adapter) splits a module
into its graph and its variables (`{'params', 'batch_stats'}`, the linen layout) and merges
them again inside each traced call, with the mode, dropout keys and BatchNorm axis set.
`get_model(name, api="nnx")` gives every registered network as an NNX module (jaxcnn.nnx.models).
See docs/nnx.md.
"""

from jaxcnn.nnx.adapter import NnxModel, reseed
from jaxcnn.nnx.build import adapt, as_model, class_path, fields_of, from_spec, model_reference
from jaxcnn.nnx.convert import load_variables, variables_of
from jaxcnn.nnx.models import Bridge, MnistCNN, nnx_model

__all__ = [
    "Bridge", "MnistCNN", "NnxModel", "adapt", "as_model", "class_path", "fields_of", "from_spec",
    "load_variables", "model_reference", "nnx_model", "reseed", "trained_module", "variables_of",
]


def trained_module(trainer):
    """The trainer's NNX model as an `nnx.Module` holding its current (trained) variables."""
    model = trainer.model
    if not isinstance(model, NnxModel):
        raise TypeError(f"the trainer's model is {type(model).__name__}, not an NNX model")
    state = trainer.state
    variables = {"params": state.params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
    return model.bind(variables)
