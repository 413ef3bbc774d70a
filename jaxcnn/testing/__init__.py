"""Test kit for models trained with jaxcnn, ours and the user's own (pytest + chex).

    from jaxcnn.testing import assert_trains, assert_same_on_devices

    def test_my_model(fake_devices):
        assert_trains(MyModel(), (16, 16, 3))                # a few steps lower the loss, one compile
        assert_same_on_devices(MyModel(), (16, 16, 3), n=8)  # 8 devices == 1 device

Both take linen modules and `flax.nnx` modules alike (an NNX module is stepped through
`jaxcnn.nnx.NnxModel`, as `Trainer` steps it; docs/nnx.md).

- `assert_trains`: a few steps on a tiny batch lower the loss, stay finite, compile once;
  inference ignores dropout and leaves BatchNorm statistics alone.
- `assert_same_on_devices`: loss, gradients, params and BatchNorm statistics on n devices equal
  one device's.
- `assert_keras_parity`: outputs equal a Keras model's with its weights (needs TensorFlow/Keras;
  loaded on first use from `jaxcnn.testing.keras`).
- `tiny_dataset`: small in-memory batches (real MNIST digits, or synthetic images and videos).
- `use_fake_devices(n)` / the `fake_devices` pytest fixture: n CPU devices, set before JAX starts.
"""

from jaxcnn.testing.checks import assert_same_on_devices, assert_trains, nonfinite_leaves, tree_differences
from jaxcnn.testing.data import tiny_dataset
from jaxcnn.testing.devices import require_devices, use_fake_devices

__all__ = [
    "assert_keras_parity", "assert_same_on_devices", "assert_trains", "fake_devices", "nonfinite_leaves",
    "require_devices", "tiny_dataset", "tree_differences", "use_fake_devices",
]

# Loaded on first use: Keras parity needs TensorFlow/Keras, the fixture needs pytest.
_LAZY = {"assert_keras_parity": "jaxcnn.testing.keras", "fake_devices": "jaxcnn.testing.fixtures"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
