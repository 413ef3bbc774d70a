"""Fake CPU devices for multi-device tests on one machine.

XLA fixes the number of CPU devices when JAX starts its backend (the first `jax.devices()`,
array or jit call), so the count must be set before that: at the top of a `conftest.py`, or
through the `fake_devices` pytest fixture when nothing touched JAX during collection.
"""

from __future__ import annotations

import jax

from jaxcnn import parallel


def _backend_started() -> bool:
    from jax._src import xla_bridge  # no public query for "has the backend started"

    return xla_bridge.backends_are_initialized()


def use_fake_devices(n: int = 8) -> list:
    """Run JAX on `n` CPU devices; returns the first `n` devices.

    Call before anything starts JAX's backend. If it has started already, this succeeds when
    the process has at least `n` devices and otherwise raises a RuntimeError saying where to
    call it instead (a started backend cannot grow more devices).
    """
    if n < 1:
        raise ValueError(f"fake device count must be positive, got {n}")
    if not _backend_started():
        parallel.use_fake_cpu_devices(n)
    return require_devices(n, "use_fake_devices")


def require_devices(n: int, what: str) -> list:
    """The first `n` devices, or a RuntimeError that says how to get them."""
    devices = jax.devices()
    if len(devices) < n:
        raise RuntimeError(
            f"{what} needs {n} devices but JAX already started with {len(devices)} "
            f"({devices[0].platform}): call jaxcnn.testing.use_fake_devices({n}) before anything "
            f"touches JAX (e.g. at the top of conftest.py), use the `fake_devices` pytest fixture, "
            f"or set XLA_FLAGS=--xla_force_host_platform_device_count={n} JAX_PLATFORMS=cpu")
    return devices[:n]
