"""Optional dependencies: the library trains without them (accelerator hosts may lack them)."""

from __future__ import annotations


class _NoBar:
    """Stands in for a tqdm bar when tqdm is not installed: every call does nothing."""

    def __init__(self, *args, **kwargs):
        self.n = kwargs.get("initial", 0)

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *args, **kwargs): ...

    def close(self): ...


def tqdm(*args, **kwargs):
    """`tqdm.auto.tqdm(...)`, or a silent bar when tqdm is missing."""
    try:
        from tqdm.auto import tqdm as _tqdm
    except ImportError:
        return _NoBar(*args, **kwargs)
    return _tqdm(*args, **kwargs)
