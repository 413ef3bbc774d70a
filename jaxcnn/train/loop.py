"""Keras-like training loop over the pure steps: fit / evaluate / predict, history, callbacks.

    trainer = Trainer(get_model("mnist_cnn"), input_shape=(28, 28, 1),
                      loss="sparse_categorical_crossentropy", optimizer="adam")
    history = trainer.fit(x_train, y_train, epochs=5, batch_size=32, validation_data=(x_test, y_test))
    trainer.evaluate(x_test, y_test)

The state stays a pure pytree (`trainer.state`). One epoch loop serves every input feed
(jaxcnn.train.feeds): a feed yields chunks of steps (one step, or many in a `lax.scan`), the loop
keeps the metric sums on the device, fetches them once per log, checks for NaN, shows progress and
calls the callbacks. The global step (`state.step`) is the only cursor: the epoch and the position
in it derive from it, so a checkpoint restores nothing but the state to resume mid-epoch.
Everything the loop reports is a function of the global step, not of where the process started:
the epoch's metric sums add each chunk's sums in step order (one float64 addition per chunk, so
a resumed epoch sums exactly as an uninterrupted one), and log points fall on multiples of
`log_every` within the epoch.
What varies between runs is the step (`set_train_step`: a recipe's loss, lookahead), the feed
and the callbacks (jaxcnn.train.recipes: speed records), never the loop.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import jax
import numpy as np
import optax

from jaxcnn.compile_cache import enable_compilation_cache
from jaxcnn.data import checks
from jaxcnn.data.pipeline import as_input, validation_split as split_last
from jaxcnn.models.inputs import input_range_of, scaling_for
from jaxcnn.parallel import auto_initialize, get_strategy
from jaxcnn.train.callbacks import Callback, CallbackList, History, Progress, logger, resolve_verbose
from jaxcnn.train.callbacks.timing import StepTiming, timed_chunks
from jaxcnn.train.feeds import eval_batches, host_pipeline, make_road
from jaxcnn.train.losses import output_activation
from jaxcnn.train.metrics import MetricSet
from jaxcnn.train.optim import default_learning_rate, get_optimizer
from jaxcnn.train.precision import resolve_compute_dtype
from jaxcnn.train.save import run_folder_callbacks, save_run
from jaxcnn.train.state import TrainState, adapt, create_train_state
from jaxcnn.train.step import make_eval_step, make_train_step, predict_logits
from jaxcnn.train.summary import model_summary

__all__ = ["Callback", "NonFiniteLossError", "Trainer"]

class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite (the state is the last finite one)."""


def _add(total: dict | None, new: dict) -> dict:
    new = {k: np.asarray(v, np.float64) for k, v in new.items()}
    if total is not None and set(total) != set(new):
        # Sums restored from a checkpoint written with other metrics: the resumed epoch's
        # means then count its new steps only.
        logger.warning("the checkpoint's epoch sums hold other metrics (%s); counting from here",
                       ", ".join(sorted(total)))
        total = None
    return new if total is None else {k: total[k] + new[k] for k in total}


def example_weights(y, sample_weight=None, class_weight=None) -> np.ndarray | None:
    """Per-example weights as Keras forms them: `sample_weight` times `class_weight[label]`.

    Labels are integers, 0/1 floats (binary) or one-hot rows (the class is the argmax); a class
    missing from `class_weight` weighs 1.
    """
    weight = None
    if sample_weight is not None:
        weight = np.asarray(sample_weight, np.float32).reshape(-1)
        if len(weight) != len(y):
            raise ValueError(f"sample_weight has {len(weight)} entries for {len(y)} examples")
    if class_weight:
        y = np.asarray(y)
        classes = y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(len(y))
        table = (class_weight if isinstance(class_weight, dict) else dict(enumerate(class_weight)))
        classes = np.rint(classes).astype(np.int64)
        lookup = np.ones(max(int(classes.max()), *map(int, table)) + 1, np.float32)
        lookup[list(map(int, table))] = list(table.values())
        cw = lookup[classes]
        weight = cw if weight is None else weight * cw
    return weight


class Trainer:
    """Holds a model, its loss, optimizer and TrainState; runs jitted steps over input roads.

    `strategy` places batches and compiles steps: None means the default data-parallel strategy
    over every local device (`jaxcnn.parallel`), which on one device is a plain `jax.jit`.
    `state`: a ready TrainState (e.g. a recipe's, with extra fields) instead of a fresh one.
    `compilation_cache=False` leaves JAX's persistent cache (jaxcnn.compile_cache) untouched, so
    a benchmark measures a cold compile.
    `input_range`: the pixels the model takes, "0..1" (uint8 images are scaled by 1/255) or
    "0..255" (it scales its own, e.g. a Keras Rescaling layer: they are only cast); None asks the
    model (`jaxcnn.models.inputs`). Float images are used as given.

    What feeds and callbacks use: `state`, `strategy`, `seed`, `compute_dtype`, `data_backend`,
    `train_step` (the compiled per-step function), `make_train_step(axis)` (the un-jitted step
    that feeds compile their own way), `feed` (this fit's input feed), `fit_info`, `history`,
    `global_step`, `stop_training`.
    """

    def __init__(self, model, input_shape: Sequence[int], loss="sparse_categorical_crossentropy",
                 optimizer: str | optax.GradientTransformation = "rmsprop", learning_rate=None,
                 seed: int = 0, params=None, batch_stats=None, strategy=None, compute_dtype="auto",
                 data_backend: str = "auto", road: str = "auto", metrics=("accuracy",), state=None,
                 compilation_cache: bool = True, input_range: str | None = None):
        auto_initialize()  # under `jaxcnn launch`/srun/mpirun: join the job before JAX starts alone
        self.model, self.loss_name, self.seed = model, loss, seed
        self.input_range = input_range or input_range_of(model)
        self.input_scaling = scaling_for(self.input_range)  # what the feeds do to uint8 images
        self.card = None  # the run's model card, once saved or loaded (jaxcnn.train.save, jaxcnn.load)
        self.metrics = MetricSet(metrics)
        self.input_shape = tuple(input_shape)
        # A name (Keras defaults), an optax transformation, or a factory `lr -> transformation`;
        # `learning_rate`: a float or an optax schedule (step -> rate).
        self._optimizer = optimizer
        self.learning_rate = learning_rate if learning_rate is not None else default_learning_rate(optimizer)
        self.tx = self._build_tx(self.learning_rate)
        # "auto": bfloat16 compute on GPU/TPU, float32 on CPU; params and loss stay float32.
        compute_dtype = resolve_compute_dtype(compute_dtype)
        self.default_road = road  # fit's road when it names none: auto | pipeline | device
        if compilation_cache:  # once per process; JAXCNN_COMPILATION_CACHE=off disables it
            enable_compilation_cache()
        self.compute_dtype, self.data_backend = compute_dtype, data_backend
        self.model = model = adapt(model)  # a flax.nnx module: its linen-like NnxModel (jaxcnn.nnx)
        self.strategy = get_strategy(strategy)
        if state is None:
            # The strategy may adapt the model (pmap: BatchNorm synchronized over its device axis).
            step_model = getattr(self.strategy, "prepare_model", lambda m: m)(model)
            state = create_train_state(step_model, self.input_shape, self.tx, seed=seed, params=params,
                                       batch_stats=batch_stats)
        self.state: TrainState = self.strategy.replicate(state)
        self._make_step = None  # set_train_step's factory; None: the loss/metrics step of jaxcnn.train.step
        self.train_step = self.strategy.compile_train_step(self.make_train_step)
        self._eval_step = self.strategy.compile_eval_step(
            lambda axis: make_eval_step(loss, axis_name=axis, compute_dtype=compute_dtype, metrics=self.metrics))
        self._predict = self.strategy.compile_predict(lambda state, images: output_activation(
            predict_logits(state, images, compute_dtype), loss))
        self.history = History()
        self.stop_training = False
        self.global_step = 0  # the host's copy of state.step while fit runs (no device sync)
        self.steps_per_epoch: int | None = None
        self.epoch_stop: int | None = None
        self.fit_info: dict = {}
        self.road: str | None = None  # the name of the last fit's road ("device" | "pipeline")
        self.feed = None  # the last fit's input feed (jaxcnn.train.feeds); the device road reuses it
        self.fit_sample = None
        self.timing: dict = {}  # the last fit's step time, input wait, images/s per epoch (StepTiming)
        self.input_wait_seconds = 0.0  # seconds the loop waited for the feed's next chunk (timed_chunks)
        self.step_profiler = None  # a ProfileSteps while one traces (jaxcnn.train.callbacks.profile)
        self._epoch_sums, self._pending, self._restored_sums = None, [], None
        self.callbacks = CallbackList()  # this fit's callbacks (checkpoints save their states)
        self.resumable = False  # set by a checkpoint callback that resumes: the run's writers follow it
        self._restored_states: dict | None = None

    def _build_tx(self, learning_rate):
        opt = self._optimizer
        if callable(opt) and not isinstance(opt, optax.GradientTransformation):
            return opt(learning_rate)
        return get_optimizer(opt, learning_rate)

    def current_learning_rate(self) -> float | None:
        """The learning rate of the last step taken (a schedule at its count); None if unknown."""
        lr = self.learning_rate
        if callable(lr):
            return float(lr(max(self.global_step - 1, 0)))
        return None if lr is None else float(lr)

    def set_learning_rate(self, learning_rate) -> None:
        """Train on with another learning rate (a float or a schedule); the optimizer state is kept.

        Needs an optimizer given by name or as a factory `lr -> optax transformation`. The step
        compiles once more for the new rate (rare: ReduceLROnPlateau).
        """
        opt = self._optimizer
        if isinstance(opt, optax.GradientTransformation):
            raise ValueError("set_learning_rate needs Trainer(optimizer=NAME) or optimizer=lambda lr: "
                             "optax....(lr); an optax transformation's learning rate is fixed inside it")
        self.learning_rate = learning_rate
        self.tx = self._build_tx(learning_rate)
        self.state = self.state.replace(tx=self.tx)

    def make_train_step(self, axis_name: str | None = None) -> Callable:
        """This trainer's un-jitted train step (loss, metrics, precision); feeds compile it."""
        if self._make_step is not None:
            return self._make_step(axis_name)
        return make_train_step(self.loss_name, axis_name=axis_name, compute_dtype=self.compute_dtype,
                               metrics=self.metrics)

    def set_train_step(self, make_step: Callable, state=None, learning_rate=None) -> None:
        """Train with another step, e.g. a recipe's (its loss, a lookahead average in its state).

        `make_step(axis_name) -> step(state, batch) -> (state, metric sums)`, the sums keyed as
        this trainer's metrics (`loss`, `count`, `<metric>/<key>`). `state`: the state it trains
        (may carry extra fields); `learning_rate`: what the logs report (None: nothing).
        """
        self._make_step = make_step
        self.train_step = self.strategy.compile_train_step(self.make_train_step)
        if state is not None:
            self.state, self.tx = self.strategy.replicate(state), state.tx
        self.learning_rate, self.feed = learning_rate, None

    # -- input ---------------------------------------------------------------------------------
    def _pipeline(self, x, y, batch_size, augment=None):
        """Host batches of (x, y) for this trainer's strategy and backend (jaxcnn.train.feeds)."""
        return host_pipeline(self, x, y, batch_size, augment)

    def _check_input(self, x, what, y=None):
        """The one check of fit/evaluate/predict inputs: shape, finite values (jaxcnn.data.checks);
        with `y`, the labels checked for the loss (returned, e.g. (N, 1) squeezed)."""
        problem = checks.input_shape_problem(x.shape, self.input_shape)
        if problem:
            raise ValueError(f"{what}: {problem}")
        checks.check_images(x, what, self.input_range)
        if y is None:
            return None
        if not hasattr(self, "_num_outputs"):
            self._num_outputs = checks.model_output_width(self.model, self.input_shape)
        return checks.check_labels(y, self.loss_name, self._num_outputs, what, num_examples=len(x))

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, x, y, *, epochs: int | float = 1, batch_size: int = 32, validation_split: float | None = None,
            validation_data=None, augment=None, callbacks: Sequence = (),
            initial_epoch: int = 0, initial_step: int = 0, verbose: int | str = "auto",
            log_every: int | None = None, road=None, device_augment: Callable | None = None,
            steps_per_call: int = 100, sample_weight=None, class_weight=None, workdir: str | None = None) -> History:
        """Train like Keras' `fit`; returns a History (also `self.history`), one per call.

        `road`: "pipeline" (tf.data/numpy batches, one dispatch per step), "device" (data on the
        device, `steps_per_call` steps per dispatch; see jaxcnn.train.feeds) or "auto"
        (device on GPU/TPU when the data fits, else pipeline); None: the Trainer's `road`; or a
        feed built for (x, y) (e.g. a DeviceRoad with a recipe's data order).
        `epochs` may be fractional: the last epoch runs the first steps of its order, up to
        ceil(epochs * steps_per_epoch) steps in all.
        `augment`: a recipe ("A", "B", "key=value,...": built for the chosen road) or a tf.data
        callable; `device_augment(images, key)`: a JAX augmentation (device road).
        `verbose`: 0 silent, 1 progress bar, 2 one line per epoch, "auto" (1 on a terminal, else 2).

        `sample_weight` ([N]) and `class_weight` ({class: weight}, for the training data) weight
        each example's loss and metrics as in Keras (both given: multiplied);
        `validation_data` may be `(x, y)` or `(x, y, sample_weight)`.
        `validation_split` takes the LAST fraction of (x, y) before any shuffling, as Keras does.
        Position: epoch `initial_epoch`, step `initial_step`; a checkpoint callback that restores
        a later state moves it (the position derives from `state.step`).
        `workdir`: checkpoints go to `workdir/checkpoints` (resumed from there) and the run folder
        is written at the end, as by `save(workdir)`.
        """
        x, y = as_input(x), np.asarray(y)  # a prepared split stays on disk, read batch by batch
        y = self._check_input(x, "fit", y)
        verbose = resolve_verbose(verbose) if jax.process_index() == 0 else 0  # one display per job
        weight = example_weights(y, sample_weight, class_weight)
        if validation_split:
            if validation_data is not None:
                raise ValueError("give validation_split or validation_data, not both")
            (x, y), (vx, vy) = split_last(x, y, validation_split)
            validation_data = (vx, vy) if weight is None else (vx, vy, weight[len(x):])
            weight = None if weight is None else weight[: len(x)]
        if len(x) < batch_size:  # before any step count is divided by
            raise ValueError(f"fit: {len(x)} examples are fewer than one global batch of {batch_size}: "
                             "lower the batch size")
        if road is None or isinstance(road, str):
            train_road = make_road(self, x, y, batch_size, road=road or self.default_road, augment=augment,
                                   device_augment=device_augment, steps_per_call=steps_per_call,
                                   sample_weight=weight)
        else:
            train_road = road
        self.road, self.feed = train_road.name, train_road
        validate = None
        if validation_data is not None:
            vx, vy = as_input(validation_data[0]), np.asarray(validation_data[1])
            vy = self._check_input(vx, "validation_data", vy)
            vw = example_weights(vy, validation_data[2] if len(validation_data) > 2 else None)
            validate = lambda: self._evaluate_batches(eval_batches(self, vx, vy, batch_size, vw))  # noqa: E731
        steps = train_road.steps_per_epoch
        self.steps_per_epoch = steps
        total_steps = max(1, math.ceil(steps * epochs))
        n_epochs = -(-total_steps // steps)
        self.fit_info = {"steps_per_epoch": steps, "batch_size": batch_size, "num_examples": int(len(x)),
                         "epochs": n_epochs, "total_steps": total_steps}
        self.fit_sample = x[:64]  # a few training images for callbacks that show some (TensorBoard)
        log_every = log_every or max(1, min(100, steps // 20))
        self.history = History(params={"epochs": epochs, "steps": steps, "verbose": verbose,
                                       "batch_size": batch_size, "road": self.road})
        self.stop_training = False
        self._restored_sums, self._restored_states, self.resumable = None, None, False
        # The run's origin: the global step at which its epoch 0 began.
        origin = int(self.state.step) - initial_epoch * steps - initial_step
        if workdir is not None:
            validated = validation_data is not None and "accuracy" in self.metrics.names
            callbacks = run_folder_callbacks(workdir, callbacks, "val_accuracy" if validated else None)
        timing = [] if any(isinstance(cb, StepTiming) for cb in callbacks) else [StepTiming()]
        cbs = self.callbacks = CallbackList([*timing, *callbacks])
        self.global_step = int(self.state.step)
        cbs.on_train_begin(self)
        if self._restored_states:  # after every on_train_begin, which starts each callback afresh
            cbs.set_states(self, self._restored_states)
        self.global_step = int(self.state.step)  # a callback may have restored a checkpoint
        if self.global_step < origin:
            raise ValueError(f"the state's step {self.global_step} lies before this fit's start {origin}")
        epoch, start = divmod(self.global_step - origin, steps)
        if epoch * steps + start >= total_steps:
            epoch = n_epochs  # a restored state that already ran every step (a fractional last epoch)
        sums = self._restored_sums if start else None
        progress = Progress(verbose, n_epochs, steps)
        # Fetch metrics at log points only when someone looks; else once per epoch (each fetch
        # waits for the device, which then idles until the next dispatch).
        fetch_logs = verbose == 1 or cbs.wants("on_log")
        try:
            while epoch < n_epochs and not self.stop_training:
                t0 = time.perf_counter()
                stop = min(steps, total_steps - epoch * steps)
                logs = self._run_epoch(train_road, epoch, start, stop, sums, cbs, progress,
                                       log_every if fetch_logs else None)
                logs["seconds"] = time.perf_counter() - t0
                if self.current_learning_rate() is not None:
                    logs["learning_rate"] = self.current_learning_rate()
                if validate is not None:
                    logs.update({f"val_{k}": v for k, v in validate().items()})
                cbs.on_epoch_logs(self, epoch, logs)
                self.history.record(epoch, logs)
                progress.end(epoch, logs, self.timing)
                cbs.on_epoch_end(self, epoch, logs)
                epoch, start, sums = epoch + 1, 0, None
        finally:
            progress.close()
        cbs.on_train_end(self)
        return self.history

    def _run_epoch(self, road, epoch, start, stop, sums, cbs, progress, log_every) -> dict:
        """One epoch's steps [start, stop) over the feed's chunks: the one training loop."""
        self._epoch_sums, self._pending = sums, []
        self.epoch_stop = stop  # the step this epoch's training ends at (then its end: validation, logs)
        cbs.on_epoch_begin(self, epoch)
        progress.begin(epoch, start)
        for first, last, payload in timed_chunks(road.train_chunks(epoch, start, stop), self):
            self.state, chunk_sums = road.run(self.state, payload)
            self._pending.append(chunk_sums)
            self.global_step += last - first
            # Log points by position in the epoch (not since the process started): a resumed
            # run logs the very steps an uninterrupted one does. Logs come before on_step_end,
            # where a checkpoint may save: what it saves covers what was logged.
            if last == stop or (log_every and last // log_every > first // log_every):
                logs = self._running_logs(epoch, last)
                progress.update(last, logs)
                cbs.on_log(self, self.global_step, logs)
            cbs.on_step_end(self, epoch, last)
            if self.stop_training:
                break
        totals = self.epoch_metric_sums()
        if totals is None:
            return {k: float("nan") for k in ("loss", *self.metrics.names)}
        return self.metrics.results(totals)

    def _running_logs(self, epoch: int, step: int) -> dict:
        """The epoch's means so far (and the learning rate); stops training on a non-finite loss."""
        logs = self.metrics.results(self.epoch_metric_sums())
        if self.current_learning_rate() is not None:
            logs["learning_rate"] = self.current_learning_rate()
        if not np.isfinite(logs["loss"]):
            raise NonFiniteLossError(
                f"loss became {logs['loss']} in epoch {epoch + 1} by step {step}: training stopped; "
                "the state is the last one with a finite loss. Lower the learning rate, check the "
                "inputs for NaN/inf and the labels' range.")
        return logs

    def restore_run(self, state, history: dict | None = None, epoch_sums: dict | None = None,
                    callback_states: dict | None = None) -> None:
        """Continue a run from a checkpoint (called by callbacks in `on_train_begin`).

        `fit` takes its position from `state.step`; `history` holds the run's earlier epochs,
        `epoch_sums` the metric sums of the interrupted epoch's steps so far and
        `callback_states` what `CallbackList.get_states` saved (set back after `on_train_begin`).
        """
        self.state, self.global_step = state, int(state.step)
        if history:
            self.history.restore(history)
        self._restored_sums, self._restored_states = epoch_sums, callback_states

    def epoch_metric_sums(self) -> dict | None:
        """The current epoch's metric sums so far (checkpoints save them: resumed epochs stay whole)."""
        if self._pending:
            # Chunk by chunk in step order: the same additions however often this is called.
            for chunk_sums in jax.device_get(self._pending):
                self._epoch_sums = _add(self._epoch_sums, chunk_sums)
            self._pending = []
        return self._epoch_sums

    def save(self, workdir: str, *, class_names=None, dataset: str | None = None, input_dtype=None) -> str:
        """Write the run folder that `jaxcnn predict|evaluate|export WORKDIR` and `jaxcnn.load` read:
        model card, weights, a checkpoint, history (jaxcnn.train.save). `dataset`: the dataset
        name `jaxcnn evaluate` tests on; `input_dtype`: default the last fit's images'."""
        return save_run(self, workdir, class_names=class_names, dataset=dataset, input_dtype=input_dtype)

    def summary(self, print_fn=print, depth: int = 1, flops: bool = True) -> str:
        """Keras-style table: layer, output shape, parameters, FLOPs (jaxcnn.train.summary).

        Printed with `print_fn` (None: only returned).
        """
        text = model_summary(self.model, self.input_shape, depth=depth, flops=flops)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- evaluate / predict --------------------------------------------------------------------
    def _evaluate_batches(self, batches) -> dict:
        sums = [self._eval_step(self.state, self.strategy.put_batch(b)) for b in batches]
        total = jax.tree.map(lambda *xs: np.sum(np.asarray(xs, np.float64), axis=0), *jax.device_get(sums))
        return self.metrics.results(total)

    def evaluate(self, x, y, batch_size: int = 32, sample_weight=None) -> dict:
        """Loss and metrics over every example exactly once (the ragged tail is masked)."""
        x = as_input(x)
        y = self._check_input(x, "evaluate", y)
        return self._evaluate_batches(eval_batches(self, x, y, batch_size, example_weights(y, sample_weight)))

    def predict(self, x, batch_size: int = 32) -> np.ndarray:
        """Softmax (or sigmoid) outputs for every example, like Keras' `predict`."""
        x = as_input(x)
        self._check_input(x, "predict")
        # Batches split over devices and hosts like evaluation; every host gets all outputs.
        n = self.strategy.num_devices
        pipe = host_pipeline(self, x, np.zeros(len(x), np.int32), -(-batch_size // n) * n)
        outs = [np.asarray(self._predict(self.state, self.strategy.put_batch({"image": b["image"]})["image"]))
                for b in pipe.eval_batches()]
        return np.concatenate(outs)[: len(x)]
