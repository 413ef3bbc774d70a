"""Device strategies: how the step is compiled and where batches and the state live.

Two strategies share one step body (`jaxcnn.train.step.make_train_step`):

- `DataParallel` ("jit", the default) is big_vision's shape: one `jax.jit` step over a mesh with
  a `data` axis; the batch is split over it, the state replicated, the state buffers donated.
  XLA inserts the collectives; BatchNorm statistics and dropout masks are those of the global
  batch, so N devices compute what one device computes.
- `PmapParallel` ("pmap") runs the step per device, with collectives over the axis `data`:
  gradients and batch statistics `pmean`-ed, metrics `psum`-ed (see step.py). It is built on
  `jax.shard_map` inside `jax.jit` over the same mesh (which is what `jax.pmap` itself lowers
  to since jax 0.8), so the state stays one replicated global array, exactly as under
  `DataParallel`: checkpoints, evaluate/predict, resume and multi-host input need no second
  code path and no leading device axis. `pmap_step` gives the literal `jax.pmap` form.

Multi-host: `initialize()` starts `jax.distributed` from flags or the environment, and
`auto_initialize()` does it before first use in a process that `jaxcnn launch` or a cluster
launcher started; every process feeds its slice of each global batch and `put_batch`
assembles the global array.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn import errors

AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: every device of every process).

    Axis type Auto: under Explicit axes (`jax.make_mesh`'s new default) linen Dropout fails.
    """
    auto_initialize()  # a launched process joins its job before JAX starts alone
    devices = np.asarray(jax.devices() if devices is None else devices)
    try:
        return Mesh(devices, (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    except (TypeError, AttributeError):  # older jax without axis types
        return Mesh(devices, (AXIS,))


def _shard_map(fn, mesh, in_specs, out_specs):
    # check_vma=False keeps pmap's semantics: values computed from the local batch (gradients,
    # BN statistics, metrics) are per device until the step's explicit pmean/psum. With the
    # varying-axes check on, the gradient of the replicated params would already arrive summed.
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # jax < 0.7

    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _cpu_sync(mesh: Mesh, fn):
    """On several CPU devices of one process, wait for each call's result before returning.

    XLA:CPU runs in-process collectives on a shared thread pool; with several steps in flight
    (async dispatch) their all-reduces can deadlock ("Expected 8 threads to join the rendezvous";
    seen here with 4 and 8 fake devices on 2 cores, both strategies). One step in flight avoids
    it. GPUs/TPUs and single-device runs keep fully asynchronous dispatch.
    """
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    if len(local) < 2 or local[0].platform != "cpu":
        return fn

    def call(*args, **kwargs):
        return jax.block_until_ready(fn(*args, **kwargs))

    call.lower = fn.lower  # keep AOT access (cost analysis, HLO)
    call.__wrapped__ = fn
    return call


class DataParallel:
    """Sharded-jit data parallelism over a `data` mesh axis (the default strategy)."""

    name = "jit"

    def __init__(self, devices=None):
        self.mesh = make_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(AXIS))

    def check_batch_size(self, global_batch_size: int) -> None:
        """Raise if the global batch does not split evenly over devices (and hosts)."""
        n, hosts = self.num_devices, jax.process_count()
        if global_batch_size <= 0 or global_batch_size % n or global_batch_size % hosts:
            lo = max(n, (global_batch_size // n) * n)
            raise ValueError(
                f"batch size {global_batch_size} does not divide evenly over {n} devices"
                f"{f' on {hosts} hosts' if hosts > 1 else ''} ({self.name} strategy): use a "
                f"multiple of {n}, e.g. {lo} or {lo + n}")

    def local_batch_size(self, global_batch_size: int) -> int:
        return global_batch_size // jax.process_count()

    def prepare_model(self, model):
        """The model this strategy trains (unchanged here: XLA sees the global batch)."""
        return model

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)

    def put_batch(self, batch: dict):
        """This process's slice of the global batch -> a global jax.Array sharded over `data`."""
        if jax.process_count() == 1:
            return jax.device_put(batch, self.batch_sharding)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)

    def compile_train_step(self, make_step):
        """`make_step(axis_name)` -> step; here called with None (no per-device code)."""
        return _cpu_sync(self.mesh, jax.jit(make_step(None), donate_argnums=(0,),
                                            out_shardings=(self.replicated, self.replicated)))

    def compile_eval_step(self, make_step):
        return _cpu_sync(self.mesh, jax.jit(make_step(None), out_shardings=self.replicated))

    def compile_predict(self, fn):
        """`fn(state, images) -> outputs`, over a global batch; outputs gathered on every host."""
        return _cpu_sync(self.mesh, jax.jit(fn, out_shardings=self.replicated))


class PmapParallel(DataParallel):
    """Per-device steps with `axis_name="data"` collectives (pmap semantics, via shard_map).

    Gradients and BatchNorm running statistics are averaged (`pmean`), metric sums added
    (`psum`). BatchNorm *normalization* statistics are synchronized over the global batch when
    the model has a `bn_axis_name` field (passed to its BatchNorm layers' `axis_name`): the
    strategy sets it to "data". Without it each device normalizes with its own batch's
    statistics, as plain pmap code does; a warning says so.

    Dropout rng: device `d` at step `s` uses `fold_in(fold_in(rng, s), d)`: masks differ between
    devices, depend only on (seed, step, device index), so a run is reproducible for a seed and
    device count, but differ from the 1-device masks (the "jit" strategy matches those).
    """

    name = "pmap"
    axis_name = AXIS

    def prepare_model(self, model):
        fields = {f.name for f in dataclasses.fields(model)} if dataclasses.is_dataclass(model) else set()
        self._bn_synced = "bn_axis_name" in fields
        return model.clone(bn_axis_name=self.axis_name) if self._bn_synced else model

    def replicate(self, tree):
        if getattr(tree, "batch_stats", None) and not getattr(self, "_bn_synced", False):
            warnings.warn("pmap strategy: the model has BatchNorm but no `bn_axis_name` field, so each "
                          "device normalizes with its own batch's statistics (running statistics "
                          "are still averaged). Add `bn_axis_name: str | None = None` to the model "
                          "and pass it to BatchNorm(axis_name=...) to use global-batch statistics.",
                          stacklevel=3)
        return super().replicate(tree)

    def compile_train_step(self, make_step):
        step = _shard_map(make_step(self.axis_name), self.mesh,
                          in_specs=(P(), P(self.axis_name)), out_specs=(P(), P()))
        return _cpu_sync(self.mesh, jax.jit(step, donate_argnums=(0,),
                                            out_shardings=(self.replicated, self.replicated)))

    def compile_eval_step(self, make_step):
        step = _shard_map(make_step(self.axis_name), self.mesh,
                          in_specs=(P(), P(self.axis_name)), out_specs=P())
        return _cpu_sync(self.mesh, jax.jit(step, out_shardings=self.replicated))


STRATEGIES = {"jit": DataParallel, "pmap": PmapParallel}


def get_strategy(strategy=None):
    """`None`/'jit' -> DataParallel, 'pmap' -> PmapParallel (all devices); objects pass through."""
    if strategy is None:
        strategy = "jit"
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
        return STRATEGIES[strategy]()
    return strategy


# -- the literal jax.pmap form, for code that expects a pmapped step ------------------------------
def pmap_step(make_step, axis_name: str = AXIS, donate: bool = True):
    """`jax.pmap` of `make_step(axis_name)`: state and batch carry a leading local-device axis.

    Use with `replicate_leading(state)`, `shard_leading(batch)` and `unreplicate(state)`. The
    step body (and so its results) is the one `PmapParallel` runs.
    """
    return jax.pmap(make_step(axis_name), axis_name=axis_name, donate_argnums=(0,) if donate else ())


def replicate_leading(tree, devices=None):
    """Copy `tree` onto every local device along a new leading axis (flax.jax_utils.replicate)."""
    devices = list(jax.local_devices() if devices is None else devices)
    mesh = Mesh(np.asarray(devices), ("pmap",))
    stacked = NamedSharding(mesh, P("pmap"))
    return jax.tree.map(lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices), *np.shape(x))),
                                                 stacked), tree)


def shard_leading(batch, num_devices: int | None = None):
    """Reshape each [B, ...] leaf to [devices, B // devices, ...] for a pmapped step."""
    n = num_devices or jax.local_device_count()

    def split(x):
        x = np.asarray(x)
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices: use a multiple of {n}")
        return x.reshape((n, x.shape[0] // n) + x.shape[1:])

    return jax.tree.map(split, batch)


def unreplicate(tree):
    """The first device's copy of a leading-axis-replicated tree."""
    return jax.tree.map(lambda x: x[0], tree)


# -- multi-host start-up ---------------------------------------------------------------------------
class LaunchError(RuntimeError):
    """A process started as one of several (by `jaxcnn launch` or a cluster launcher) that cannot join
    the others: it would otherwise train alone, a separate job writing the same files."""


_OFF = ("0", "false", "no", "off")


def _env_int(name):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def _cluster_detected() -> bool:
    """A multi-process launcher that `jax.distributed.initialize()` can read by itself."""
    env = os.environ
    if env.get("JAXCNN_DISTRIBUTED", "").lower() in ("1", "true", "auto", "yes"):
        return True
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return (_cluster_size() or 1) > 1


def _cluster_size() -> int | None:
    """The process count a cluster launcher announces (SLURM srun, Open MPI, multi-host TPU)."""
    env = os.environ
    if "SLURM_JOB_ID" in env and "SLURM_STEP_NODELIST" in env:
        return _env_int("SLURM_NTASKS") or 1
    if _env_int("OMPI_COMM_WORLD_SIZE"):
        return _env_int("OMPI_COMM_WORLD_SIZE")
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    return len(hosts.split(",")) if hosts else None


def _launched() -> bool:
    """Started as one of a job's processes: by `jaxcnn launch` or a cluster launcher JAX reads."""
    if os.environ.get("JAXCNN_DISTRIBUTED", "").lower() in _OFF:
        return False
    return bool(os.environ.get("JAXCNN_COORDINATOR") or os.environ.get("JAXCNN_NUM_PROCESSES")) or _cluster_detected()


def launched_processes() -> int | None:
    """How many processes the launcher of this one started: JAXCNN_NUM_PROCESSES (`jaxcnn launch`),
    else a detected cluster's count; None when not launched, JAXCNN_DISTRIBUTED=0, or only JAX
    can tell (JAX_COORDINATOR_ADDRESS, JAXCNN_DISTRIBUTED=1)."""
    if not _launched():
        return None
    n = _env_int("JAXCNN_NUM_PROCESSES")
    return n if n is not None else _cluster_size()


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # another jax: assume not, jax.distributed will say so
        return False


def _one_line_if_uncaught() -> None:
    """An uncaught LaunchError ends the script with its one line, as the command line shows errors
    (JAXCNN_DEBUG=1: the traceback). Other exceptions are shown as before."""
    previous = sys.excepthook
    if getattr(previous, "_jaxcnn_launch", False):
        return

    def hook(kind, exc, tb):
        if isinstance(exc, LaunchError) and not errors.debug_requested():
            print(f"jaxcnn: error: {exc}", file=sys.stderr)
        else:
            previous(kind, exc, tb)

    hook._jaxcnn_launch = True
    sys.excepthook = hook


def _too_late(expected) -> LaunchError:
    _one_line_if_uncaught()
    who = (f"process {os.environ['JAXCNN_PROCESS_ID']} of {expected}" if os.environ.get("JAXCNN_PROCESS_ID")
           else f"one of {expected or 'several'} processes")
    return LaunchError(
        f"this process was launched as {who}, but JAX started alone (process 0 of 1) before jaxcnn "
        "could join the job: call jaxcnn.parallel.initialize() at the top of the script, before any "
        "JAX call (jax.devices(), jnp arrays, jax.random keys), or set JAXCNN_DISTRIBUTED=0 to run "
        "separate jobs on purpose")


def auto_initialize() -> bool:
    """Join the launcher's job if this process was launched as one of several; True if joined.

    What `Trainer` and every strategy (mesh) call first, so that a script run by `jaxcnn launch`,
    srun or mpirun joins `jax.distributed` without calling `initialize()` itself. A launched
    process whose JAX already started alone raises `LaunchError` naming the fix; it never
    trains as a separate job. JAXCNN_DISTRIBUTED=0 turns joining off.
    """
    if jax.distributed.is_initialized():
        return True
    if not _launched() or launched_processes() == 1:
        return False
    if _backend_started():
        if jax.process_count() == 1:
            raise _too_late(launched_processes())
        return False  # joined by other means (an already-initialized multi-process runtime)
    return initialize()


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids=None) -> bool:
    """Start multi-host JAX (`jax.distributed.initialize`); True if it did, False on one process.

    Arguments win over the environment: JAXCNN_COORDINATOR (host:port), JAXCNN_NUM_PROCESSES,
    JAXCNN_PROCESS_ID (set by `jaxcnn launch`). Without them, clusters that JAX detects by itself
    are used: SLURM (srun with more than one task), Open MPI, multi-host Cloud TPU, an explicit
    JAX_COORDINATOR_ADDRESS, or JAXCNN_DISTRIBUTED=1 to force JAX's auto-detection (e.g. TPU pods
    and Kubernetes). Call it before anything else touches JAX's devices (`Trainer` and the
    strategies call `auto_initialize()`, which calls this). Idempotent.
    """
    if jax.distributed.is_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get("JAXCNN_COORDINATOR") or None
    num_processes = num_processes if num_processes is not None else _env_int("JAXCNN_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAXCNN_PROCESS_ID")
    explicit = coordinator_address is not None or num_processes is not None
    if explicit:
        if num_processes == 1:
            return False
        if coordinator_address is None or num_processes is None or process_id is None:
            raise ValueError("multi-host start-up needs the coordinator address, the number of processes "
                             "and this process's id (JAXCNN_COORDINATOR, JAXCNN_NUM_PROCESSES, "
                             f"JAXCNN_PROCESS_ID); got {coordinator_address!r}, {num_processes!r}, "
                             f"{process_id!r}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process id {process_id} is not in 0..{num_processes - 1}")
    elif not _cluster_detected():
        return False
    if _backend_started():  # jax.distributed would refuse with a message that names no fix
        raise _too_late(num_processes or _cluster_size())
    # CPU processes exchange collectives over gloo (harmless on GPU/TPU hosts).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if local_device_ids is not None:
        kwargs["local_device_ids"] = local_device_ids
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, **kwargs)
    return True


def use_fake_cpu_devices(count: int) -> None:
    """Run on `count` CPU devices (testing/rehearsal); must come before JAX starts its backend."""
    if count < 1:
        raise ValueError(f"fake device count must be positive, got {count}")
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={count}"])
    os.environ["JAX_PLATFORMS"] = "cpu"
    jax.config.update("jax_platforms", "cpu")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except AttributeError:  # older jax: XLA_FLAGS alone
        pass


def setup(fake_devices: int | None = None, **initialize_kwargs) -> bool:
    """CLI start-up: optional fake CPU devices, then `initialize()`. Returns whether multi-host."""
    if fake_devices:
        use_fake_cpu_devices(fake_devices)
    return initialize(**initialize_kwargs)
