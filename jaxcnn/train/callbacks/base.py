"""The callback protocol of `Trainer.fit` (Keras-like), the list that calls it, and the History.

Hooks (define any; a callback need not subclass `Callback`):

    on_train_begin(trainer)                  before the first step (a checkpoint may restore here)
    on_epoch_begin(trainer, epoch)
    on_step_end(trainer, epoch, step)        after each step (pipeline road) or chunk of steps
                                             (device road); `step` is the position in the epoch
    on_log(trainer, step, logs)              every `log_every` steps: running epoch means, the
                                             learning rate; `step` is the global step
    on_epoch_logs(trainer, epoch, logs)      the epoch's logs before the History records them:
                                             a callback may add entries (a test-set score)
    on_epoch_end(trainer, epoch, logs)       the epoch's metrics, `val_*`, learning rate, seconds
    on_train_end(trainer)

A callback that keeps the run (`keeps_run = True`: the checkpoint) begins first, so the
others see the restored run, and handles every other hook last, so what it saves covers what
the others did and wrote for that step or epoch. A callback with state that must survive a
resume defines `get_state(trainer) -> JSON-able dict` and `set_state(trainer, state)`: the
checkpoint saves it and `fit` puts it back after every `on_train_begin`.

Metrics stay on the device between logs; `on_log` is called only at log points (fetching them
waits for the device), `fit(log_every=1)` makes it per step. `trainer.global_step` is the step
count on the host (it mirrors `trainer.state.step` without a device sync).
"""

from __future__ import annotations

import collections.abc

HOOKS = ("on_train_begin", "on_epoch_begin", "on_step_end", "on_log", "on_epoch_logs", "on_epoch_end",
         "on_train_end")


class Callback:
    """Base class with every hook doing nothing."""

    def on_train_begin(self, trainer) -> None: ...
    def on_epoch_begin(self, trainer, epoch: int) -> None: ...
    def on_step_end(self, trainer, epoch: int, step: int) -> None: ...
    def on_log(self, trainer, step: int, logs: dict) -> None: ...
    def on_epoch_logs(self, trainer, epoch: int, logs: dict) -> None: ...
    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None: ...
    def on_train_end(self, trainer) -> None: ...


class CallbackList:
    """Calls a hook on every callback that defines it, in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)
        keeps = [cb for cb in self.callbacks if getattr(cb, "keeps_run", False)]
        others = [cb for cb in self.callbacks if not getattr(cb, "keeps_run", False)]
        self._begin_order, self._order = keeps + others, others + keeps

    def _stateful(self):
        """`(key, callback)` for each callback with state: its class name, `#2`... for repeats."""
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            if callable(getattr(cb, "get_state", None)) and callable(getattr(cb, "set_state", None)):
                name = type(cb).__name__
                seen[name] = seen.get(name, 0) + 1
                yield (name if seen[name] == 1 else f"{name}#{seen[name]}"), cb

    def get_states(self, trainer) -> dict:
        """Every stateful callback's state, keyed as `_stateful` names them (for checkpoints)."""
        return {key: cb.get_state(trainer) for key, cb in self._stateful()}

    def set_states(self, trainer, states: dict) -> None:
        for key, cb in self._stateful():
            if key in states:
                cb.set_state(trainer, states[key])

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides `hook` (the base class's no-op does not count)."""
        return any(getattr(type(cb), hook, None) not in (None, getattr(Callback, hook))
                   for cb in self.callbacks)

    def __getattr__(self, hook):
        if hook not in HOOKS:
            raise AttributeError(hook)

        order = self._begin_order if hook == "on_train_begin" else self._order

        def call(*args):
            for cb in order:
                fn = getattr(cb, hook, None)
                if fn is not None:
                    fn(*args)

        return call


class History(collections.abc.Mapping):
    """What `fit` returns: `.history` (metric -> list per epoch), `.epoch`, `.params`.

    One per `fit` call. A run resumed from a checkpoint continues the run's history. It is also
    a read-only mapping over `.history` (`history["loss"]`).
    """

    def __init__(self, params: dict | None = None):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.params = dict(params or {})

    def record(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def restore(self, history: dict, epochs: list[int] | None = None) -> None:
        """Take over a resumed run's earlier epochs."""
        self.history = {k: list(v) for k, v in history.items()}
        n = max((len(v) for v in self.history.values()), default=0)
        self.epoch = list(epochs) if epochs is not None else list(range(n))

    def __getitem__(self, key):
        return self.history[key]

    def __iter__(self):
        return iter(self.history)

    def __len__(self):
        return len(self.history)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
