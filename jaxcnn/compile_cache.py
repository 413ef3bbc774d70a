"""Compile time: JAX's persistent compilation cache (on by default), and `run_once` for initializers.

A second run of the same model and batch shape loads its compiled steps from disk instead of
compiling them again. `Trainer` calls `enable_compilation_cache()` once; it does nothing when
the user already set `jax_compilation_cache_dir` themselves.

Environment: `JAXCNN_COMPILATION_CACHE` = a directory to use, or `off` / `0` / `false` to leave
the cache off. Default directory: `$XDG_CACHE_HOME/jaxcnn/jax_cache` (`~/.cache/jaxcnn/jax_cache`).

`run_once(fn, *args)` jits and runs a function that runs once per process (a model's
initializer) at XLA's backend optimization level 1 on CPU instead of the default 3: measured on
a 2-core CPU, `mnist_fast`'s jitted init compiled in 1.0 CPU s instead of 3.9
(benchmarks/SPEED.md), with the same values bit for bit (tests/test_profile.py; level 0 was
cheaper still but changed the last bit of some initial weights: no fused multiply-adds).
"""

from __future__ import annotations

import os

_OFF = {"off", "0", "false", "no", "none", ""}
_state = {"dir": None, "done": False}


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxcnn", "jax_cache")


def enable_compilation_cache(path: str | None = None, min_compile_seconds: float = 0.5) -> str | None:
    """Turn on JAX's persistent compilation cache; returns its directory, or None when off.

    `path` overrides the environment and the default. Entries are written only for programs
    that took at least `min_compile_seconds` to compile (small ones are cheaper to redo).
    """
    import jax

    if path is None:
        if _state["done"]:
            return _state["dir"]
        env = os.environ.get("JAXCNN_COMPILATION_CACHE")
        if env is not None and env.strip().lower() in _OFF:
            _state.update(done=True, dir=None)
            return None
        if jax.config.jax_compilation_cache_dir:  # the user chose their own
            _state.update(done=True, dir=jax.config.jax_compilation_cache_dir)
            return _state["dir"]
        path = env or default_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:  # read-only home etc.: train without the cache rather than fail
        import warnings

        warnings.warn(f"compilation cache disabled: cannot create {path}: {e}", stacklevel=2)
        _state.update(done=True, dir=None)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _state.update(done=True, dir=path)
    return path


def run_once(fn, *args):
    """`jax.jit(fn)(*args)`, compiled at XLA backend optimization level 1 on CPU (cheaper to
    compile, maybe slower to run: for functions called once, such as initializers)."""
    import jax

    lowered = jax.jit(fn).lower(*args)
    if jax.default_backend() != "cpu":
        return lowered.compile()(*args)
    return lowered.compile({"xla_backend_optimization_level": 1})(*args)
