"""Runs in a fresh interpreter for tests/test_testing.py: `assert_same_on_devices` on 8 fake devices.

    python tests/_testing_worker.py OUT.json [MODEL ...]

`use_fake_devices(8)` comes first, as in a user's conftest.py. Each case writes `null` when the
check passed with its largest differences, or the error the check raised, into OUT.json.
"""

from __future__ import annotations

import json
import sys
import time

T0 = time.perf_counter()

from jaxcnn.testing import assert_same_on_devices, tiny_dataset, use_fake_devices  # noqa: E402

DEVICES = use_fake_devices(8)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402

from jaxcnn.models import get_model  # noqa: E402
from jaxcnn.models.layers import BatchNorm, Conv, Dense, flatten, max_pool  # noqa: E402
from tests._tiny_shapes import LARGE, TINY_SHAPES  # noqa: E402

# Compiling dominates these tiny runs; the math checked is the same (see test_models.py).
jax.config.update("jax_disable_most_optimizations", True)

# ResNet50 at initialization on 32x32 inputs is numerically chaotic in float32 (gradients ~100,
# BatchNorm over a few values per channel): 1 and 2 devices differ by up to 50% in float32
# gradients, yet agree to 1e-13 in float64. It is checked on float64 images, so it computes in
# float64 (params and gradients are still stored in float32). One step: float64 statistics
# would make a second one compile again.
FLOAT64 = {"resnet50"}


class UnsyncedBn(nn.Module):
    """Has `bn_axis_name` (so the pmap strategy sets it) but never passes it to its BatchNorm."""

    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(Conv(8, (3, 3))(x))
        x = BatchNorm(use_running_average=not train)(max_pool(x))
        return Dense(10)(flatten(x))


def check(n=8, **kwargs):
    try:
        return {"ok": assert_same_on_devices(n=n, **kwargs)}
    except (AssertionError, ValueError, RuntimeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def main(out_path, names):
    assert len(DEVICES) == 8 and jax.device_count() == 8, jax.devices()
    out = {}
    for name in names:
        # The large models on 2 devices: cheaper to compile, and 8 replicated copies would not fit.
        kwargs = dict(n=2 if name in LARGE else 8, model=get_model(name), input_shape=TINY_SHAPES[name])
        if name in FLOAT64:
            with jax.enable_x64(True):
                data = tiny_dataset("images", 4, shape=TINY_SHAPES[name], num_classes=10)
                out[f"{name}/jit"] = check(batch={**data, "image": data["image"].astype("float64")}, steps=1, **kwargs)
        else:
            out[f"{name}/jit"] = check(**kwargs)
        print(name, f"{time.perf_counter() - T0:.1f}s", file=sys.stderr, flush=True)
    # pmap: BatchNorm synchronized through bn_axis_name (dropout off: per-device masks differ).
    bn = get_model("bn_cnn_binary", conv_dropout=0.0, dense_dropout=0.0)
    out["bn_cnn_binary-no-dropout/pmap"] = check(model=bn, input_shape=TINY_SHAPES["bn_cnn_binary"],
                                                 strategy="pmap")
    out["mnist_fast/pmap"] = check(model=get_model("mnist_fast"), input_shape=TINY_SHAPES["mnist_fast"], strategy="pmap")
    out["bn_cnn_binary/pmap"] = check(model=get_model("bn_cnn_binary"), input_shape=(12, 12, 3), strategy="pmap")
    out["unsynced_bn/jit"] = check(model=UnsyncedBn(), input_shape=(10, 10, 1))
    out["unsynced_bn/pmap"] = check(model=UnsyncedBn(), input_shape=(10, 10, 1), strategy="pmap")
    print("done", f"{time.perf_counter() - T0:.1f}s", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
