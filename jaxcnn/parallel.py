"""Device strategies: how the step is compiled and where batches and the state live.

The default, `DataParallel`, is big_vision's shape: one `jax.jit` step over a mesh with a
`data` axis; the batch is split over it, the state replicated, the state buffers donated. On one
device it is a plain jitted step; on N devices (or hosts) it is the same code.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: every device of every process).

    Axis type Auto: under Explicit axes (`jax.make_mesh`'s new default) linen Dropout fails.
    """
    devices = np.asarray(jax.devices() if devices is None else devices)
    try:
        return Mesh(devices, ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    except (TypeError, AttributeError):  # older jax without axis types
        return Mesh(devices, ("data",))


class DataParallel:
    """Sharded-jit data parallelism over a `data` mesh axis."""

    name = "jit"

    def __init__(self, devices=None):
        self.mesh = make_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))

    def check_batch_size(self, global_batch_size: int) -> None:
        n, hosts = self.num_devices, jax.process_count()
        if global_batch_size % n or global_batch_size % hosts:
            lo = max(n, (global_batch_size // n) * n)
            raise ValueError(
                f"batch size {global_batch_size} does not divide evenly over {n} devices"
                f"{f' on {hosts} hosts' if hosts > 1 else ''}: use a multiple of {n}, "
                f"e.g. {lo} or {lo + n}")

    def local_batch_size(self, global_batch_size: int) -> int:
        return global_batch_size // jax.process_count()

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)

    def put_batch(self, batch: dict):
        """This process's slice of the global batch -> a global jax.Array sharded over `data`."""
        if jax.process_count() == 1:
            return jax.device_put(batch, self.batch_sharding)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)

    def compile_train_step(self, make_step):
        return jax.jit(make_step(None), donate_argnums=(0,),
                       out_shardings=(self.replicated, self.replicated))

    def compile_eval_step(self, make_step):
        return jax.jit(make_step(None), out_shardings=self.replicated)


def get_strategy(strategy=None):
    """`None` or 'jit' -> DataParallel over all devices; a strategy object is returned as is."""
    if strategy is None or strategy == "jit":
        return DataParallel()
    if isinstance(strategy, str):
        raise ValueError(f"unknown strategy {strategy!r}; known: 'jit'")
    return strategy
