"""Keras-like training loop over the pure steps: fit / evaluate / predict, history, callbacks.

    trainer = Trainer(get_model("mnist_cnn"), input_shape=(28, 28, 1),
                      loss="sparse_categorical_crossentropy", optimizer="adam")
    history = trainer.fit(x_train, y_train, epochs=5, batch_size=32, validation_data=(x_test, y_test))
    trainer.evaluate(x_test, y_test)

The state stays a pure pytree (`trainer.state`); the loop only feeds batches, keeps metric sums
on the device and fetches them once per log interval.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax

from jaxcnn.compile_cache import enable_compilation_cache
from jaxcnn.data import checks
from jaxcnn.data.pipeline import ArrayPipeline
from jaxcnn.data.sources import validation_split as split_last
from jaxcnn.train.losses import output_activation
from jaxcnn.train.optim import get_optimizer
from jaxcnn.train.precision import resolve_compute_dtype
from jaxcnn.train.state import TrainState, create_train_state
from jaxcnn.train.step import make_eval_step, make_train_step, predict_logits


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite."""


class Callback:
    """Hooks called by `Trainer.fit`; `logs` holds the epoch's metrics."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_step_end(self, trainer: "Trainer", epoch: int, step: int) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...


def _means(sums: dict) -> dict:
    count = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss"]) / count, "accuracy": float(sums["correct"]) / count}


def _add(total: dict | None, new: dict) -> dict:
    new = {k: np.asarray(v, np.float64) for k, v in new.items()}
    return new if total is None else {k: total[k] + new[k] for k in total}


class Trainer:
    """Holds a model, its loss, optimizer and TrainState; runs jitted steps over array pipelines.

    `strategy` places batches and compiles steps: None means the default data-parallel strategy
    over every local device (`jaxcnn.parallel`), which on one device is a plain `jax.jit`.
    """

    def __init__(self, model, input_shape: Sequence[int], loss: str = "sparse_categorical_crossentropy",
                 optimizer: str | optax.GradientTransformation = "rmsprop", learning_rate: float | None = None,
                 seed: int = 0, params=None, batch_stats=None, strategy=None, compute_dtype="auto",
                 data_backend: str = "auto", road: str = "auto"):
        self.model, self.loss_name, self.seed = model, loss, seed
        self.input_shape = tuple(input_shape)
        self.tx = get_optimizer(optimizer, learning_rate)
        # "auto": bfloat16 compute on GPU/TPU, float32 on CPU; params and loss stay float32.
        compute_dtype = resolve_compute_dtype(compute_dtype)
        self.default_road = road  # fit's road when it names none: auto | pipeline | device
        enable_compilation_cache()  # once per process; JAXCNN_COMPILATION_CACHE=off disables it
        self.compute_dtype, self.data_backend = compute_dtype, data_backend
        from jaxcnn.parallel import get_strategy

        self.strategy = get_strategy(strategy)
        # The strategy may adapt the model (pmap: BatchNorm synchronized over its device axis).
        step_model = getattr(self.strategy, "prepare_model", lambda m: m)(model)
        self.state: TrainState = self.strategy.replicate(
            create_train_state(step_model, self.input_shape, self.tx, seed=seed, params=params,
                               batch_stats=batch_stats))
        self._train_step = self.strategy.compile_train_step(
            lambda axis: make_train_step(loss, axis_name=axis, compute_dtype=compute_dtype))
        self._eval_step = self.strategy.compile_eval_step(
            lambda axis: make_eval_step(loss, axis_name=axis, compute_dtype=compute_dtype))
        self._predict = self.strategy.compile_predict(lambda state, images: output_activation(
            predict_logits(state, images, compute_dtype), loss))
        self.history: dict[str, list] = {}
        self.stop_training = False
        # Checkpoint resume (jaxcnn.checkpoint): set by a callback's on_train_begin to
        # (epoch, step in epoch, the epoch's metric sums so far); fit continues from there.
        self.resume_point: tuple | None = None
        self.steps_per_epoch: int | None = None
        self.fit_info: dict = {}
        self.fit_start: tuple[int, int] = (0, 0)
        self._epoch_sums, self._pending = None, []

    # -- pipelines -----------------------------------------------------------------------------
    def _pipeline(self, x, y, batch_size, augment=None):
        self.strategy.check_batch_size(batch_size)
        local = self.strategy.local_batch_size(batch_size)
        backend = self.data_backend
        if backend == "auto" and augment is None and jax.default_backend() == "cpu":
            # Same batches; measured on a 2-core CPU, tf.data's threads slowed XLA's step ~1.1-2x.
            backend = "numpy"
        return ArrayPipeline(x, y, local, seed=self.seed, backend=backend, augment=augment,
                             process_index=jax.process_index(), process_count=jax.process_count())

    def _check_input(self, x, what, y=None):
        """Shape, finite values (jaxcnn.data.checks); with `y`, the labels checked for the loss."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{what}: images of shape {tuple(x.shape[1:])} do not fit the model's "
                             f"input shape {self.input_shape}")
        checks.check_images(x, what)
        if y is None:
            return None
        if not hasattr(self, "_num_outputs"):
            self._num_outputs = checks.model_output_width(self.model, self.input_shape)
        return checks.check_labels(y, self.loss_name, self._num_outputs, what, num_examples=len(x))

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, x, y, *, epochs: int = 1, batch_size: int = 32, validation_split: float | None = None,
            validation_data=None, augment: Callable | None = None, callbacks: Sequence[Callback] = (),
            initial_epoch: int = 0, initial_step: int = 0, verbose: int = 1,
            log_every: int | None = None, road: str | None = None, device_augment: Callable | None = None,
            steps_per_call: int = 100) -> dict[str, list]:
        """Train like Keras' `fit`; returns the history (also kept in `self.history`).

        `road`: "pipeline" (tf.data/numpy batches, one dispatch per step), "device" (data on the
        device, `steps_per_call` steps per dispatch, `device_augment(images, key)` in JAX; see
        jaxcnn.train.ondevice) or "auto" (device on GPU/TPU when the data fits, else pipeline);
        None: the Trainer's `road`.

        `validation_split` takes the LAST fraction of (x, y) before any shuffling, as Keras does.
        `initial_epoch` / `initial_step` continue a run (used by checkpoint resume).
        """
        x, y = np.asarray(x), np.asarray(y)
        y = self._check_input(x, "fit", y)
        verbose = verbose if jax.process_index() == 0 else 0  # one progress display per job
        if validation_split:
            if validation_data is not None:
                raise ValueError("give validation_split or validation_data, not both")
            (x, y), validation_data = split_last(x, y, validation_split)
        pipe = self._pipeline(x, y, batch_size, augment)
        val_pipe = None
        if validation_data is not None:
            vx, vy = np.asarray(validation_data[0]), np.asarray(validation_data[1])
            vy = self._check_input(vx, "validation_data", vy)
            val_pipe = self._pipeline(vx, vy, batch_size)
        steps = pipe.steps_per_epoch()
        self.steps_per_epoch = steps
        self.fit_info = {"steps_per_epoch": steps, "batch_size": batch_size, "num_examples": int(len(x))}
        self.fit_start = (initial_epoch, initial_step)  # where this fit begins (a resume overrides it)
        from jaxcnn.train import ondevice

        self.road = ondevice.choose_road(road or self.default_road, nbytes=x.nbytes, strategy=self.strategy,
                                         has_host_augment=augment is not None,
                                         has_device_augment=device_augment is not None)
        run_epoch = self._train_epoch
        if self.road == "device":
            run_epoch = ondevice.DeviceRoad.for_trainer(self, x, y, batch_size, augment=device_augment,
                                                        steps_per_call=steps_per_call).train_epoch
        log_every = log_every or max(1, min(100, steps // 20))
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin(self)
        resumed_sums = None
        if self.resume_point is not None:
            initial_epoch, initial_step, resumed_sums = self.resume_point
            self.resume_point = None
        for epoch in range(initial_epoch, epochs):
            start = initial_step if epoch == initial_epoch else 0
            t0 = time.perf_counter()
            self._epoch_sums, self._pending = (resumed_sums if start else None), []
            logs = run_epoch(pipe, epoch, epochs, start, steps, log_every, verbose, callbacks)
            logs["seconds"] = time.perf_counter() - t0
            if val_pipe is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate_pipe(val_pipe).items()})
            for k, v in logs.items():
                self.history.setdefault(k, []).append(v)
            if verbose:
                line = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if k != "seconds")
                print(f"Epoch {epoch + 1}/{epochs} - {logs['seconds']:.1f}s - {line}", file=sys.stderr, flush=True)
            for cb in callbacks:
                cb.on_epoch_end(self, epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end(self)
        return self.history

    def _train_epoch(self, pipe, epoch, epochs, start, steps, log_every, verbose, callbacks) -> dict:
        from jaxcnn._compat import tqdm

        bar = tqdm(total=steps, initial=start, desc=f"Epoch {epoch + 1}/{epochs}", unit="step",
                   disable=not verbose, leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        step = start
        for batch in pipe.train_batches(epoch, start_step=start):
            self.state, metrics = self._train_step(self.state, self.strategy.put_batch(batch))
            self._pending.append(metrics)
            step += 1
            for cb in callbacks:
                cb.on_step_end(self, epoch, step)
            if step % log_every == 0 or step == steps:
                means = _means(self.epoch_metric_sums())
                if not math.isfinite(means["loss"]):
                    bar.close()
                    raise NonFiniteLossError(
                        f"loss became {means['loss']} in epoch {epoch + 1} by step {step}: training stopped. "
                        "Lower the learning rate, check the inputs for NaN/inf and the labels' range.")
                bar.set_postfix(loss=f"{means['loss']:.4f}", accuracy=f"{means['accuracy']:.4f}", refresh=False)
                bar.update(log_every if step % log_every == 0 else step - bar.n)
            if self.stop_training:
                break
        bar.close()
        totals = self.epoch_metric_sums()
        return _means(totals) if totals is not None else {"loss": float("nan"), "accuracy": float("nan")}

    def epoch_metric_sums(self) -> dict | None:
        """The current epoch's metric sums so far (checkpoints save them: resumed epochs stay whole)."""
        if self._pending:
            self._epoch_sums = _add(self._epoch_sums, jax.tree.map(lambda *xs: np.sum(xs, axis=0),
                                                                   *jax.device_get(self._pending)))
            self._pending = []
        return self._epoch_sums

    # -- evaluate / predict --------------------------------------------------------------------
    def _evaluate_pipe(self, pipe) -> dict:
        sums = [self._eval_step(self.state, self.strategy.put_batch(b)) for b in pipe.eval_batches()]
        total = jax.tree.map(lambda *xs: np.sum(xs, axis=0), *jax.device_get(sums))
        return _means(total)

    def evaluate(self, x, y, batch_size: int = 32) -> dict:
        """Loss and accuracy over every example exactly once (the ragged tail is masked)."""
        x = np.asarray(x)
        y = self._check_input(x, "evaluate", y)
        return self._evaluate_pipe(self._pipeline(x, y, batch_size))

    def predict(self, x, batch_size: int = 32) -> np.ndarray:
        """Softmax (or sigmoid) outputs for every example, like Keras' `predict`."""
        x = np.asarray(x)
        self._check_input(x, "predict")
        # Batches split over devices and hosts like evaluation; every host gets all outputs.
        n = self.strategy.num_devices
        pipe = self._pipeline(x, np.zeros(len(x), np.int32), -(-batch_size // n) * n)
        outs = [np.asarray(self._predict(self.state, self.strategy.put_batch({"image": b["image"]})["image"]))
                for b in pipe.eval_batches()]
        return np.concatenate(outs)[: len(x)]
