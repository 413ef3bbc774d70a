"""A run folder from any Trainer: `trainer.save(workdir)` and `fit(..., workdir=...)`.

The same folder an experiment writes (jaxcnn.run.RunFolder), so `jaxcnn predict|evaluate|export
WORKDIR` and `jaxcnn.load(WORKDIR)` serve a user's own model as they serve ours:

    workdir/model.json      the model card: how to rebuild the module (a registered name, an
                            import path with its constructor fields, or `keras:FOLDER`), the
                            input shape, dtype and range, class names, loss (jaxcnn.model_card)
    workdir/params/         the weights (jaxcnn.checkpoint.save_params)
    workdir/checkpoints/    the whole training state at the current step (resumable)
    workdir/history.json    the epochs trained so far
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from jaxcnn.checkpoint import CheckpointManager, save_params
from jaxcnn.data.checks import model_output_width
from jaxcnn.model_card import ModelCard, make_card, model_api, model_reference, write_card
from jaxcnn.run import RunFolder, is_writer
from jaxcnn.train.callbacks import Callback, CheckpointCallback

__all__ = ["SaveRun", "card_of", "run_folder_callbacks", "save_run"]


def _loss_name(trainer, width: int | None) -> str:
    """The card's loss: the trainer's by name; for a loss function, what its outputs imply."""
    loss = trainer.loss_name
    if isinstance(loss, str):
        return loss
    return "binary_crossentropy" if width == 1 else "sparse_categorical_crossentropy"


def card_of(trainer, class_names=None, dataset: str | None = None, input_dtype=None) -> ModelCard:
    """The model card of `trainer`'s model; unset fields from the card it was loaded or saved
    with (`trainer.card`), the last fit's images (dtype) and the model's output width."""
    before = trainer.card
    name, kwargs = model_reference(trainer.model)
    width = model_output_width(trainer.model, trainer.input_shape)
    if class_names is None:
        class_names = before.class_names if before is not None else [str(i) for i in range(max(width or 2, 2))]
    if input_dtype is None:
        sample = getattr(trainer, "fit_sample", None)
        input_dtype = (sample.dtype if sample is not None else before.input_dtype if before is not None
                       else np.uint8)
    if dataset is None:
        dataset = before.dataset if before is not None else ""
    return make_card(model=name, model_kwargs=kwargs, input_shape=trainer.input_shape, input_dtype=input_dtype,
                     class_names=class_names, loss=_loss_name(trainer, width), dataset=dataset,
                     experiment=before.experiment if before is not None else "", api=model_api(trainer.model),
                     input_range=trainer.input_range)


def _save_checkpoint(trainer, directory: str) -> None:
    """The training state at its step as a checkpoint (the record `CheckpointCallback` writes at an
    epoch end), unless one for that step is there already (fit with a workdir saved it)."""
    step = int(jax.device_get(trainer.state.step))
    manager = CheckpointManager(directory, async_save=False)
    try:
        if step in manager.all_steps():
            return
        steps = trainer.steps_per_epoch or 0
        loop = {"epoch": step // steps if steps else 0, "step_in_epoch": 0, "global_step": step,
                "seed": trainer.seed, **trainer.fit_info, "epoch_sums": None, "history": dict(trainer.history),
                "best": None, "saved_at": time.time()}
        manager.save(step, trainer.state, json.loads(json.dumps(loop, default=float)))
        manager.wait()
    finally:
        manager.close()


def save_run(trainer, workdir: str, *, class_names=None, dataset: str | None = None, input_dtype=None,
             checkpoint: bool = True) -> str:
    """Write `trainer`'s run folder at `workdir` (see the module docstring); returns `workdir`.

    Every process of a multi-host job calls it (the weights and checkpoint are written together);
    process 0 writes the JSON files.
    """
    folder = RunFolder(workdir)
    folder.check()
    card = card_of(trainer, class_names, dataset, input_dtype)
    if is_writer():
        write_card(workdir, card)
        if trainer.history:
            folder.write_history({k: list(v) for k, v in dict(trainer.history).items()})
    state = trainer.state
    save_params(folder.params_dir, state.params, state.batch_stats)
    if checkpoint:
        _save_checkpoint(trainer, folder.checkpoints_dir())
    trainer.card = card
    return workdir


class SaveRun(Callback):
    """`fit(..., workdir=W)`: the model card at the start (a preempted run has one), the whole run
    folder at the end, after the checkpoints' own last save (`keeps_run`: it runs last)."""

    keeps_run = True

    def __init__(self, workdir: str):
        self.workdir = workdir

    def on_train_begin(self, trainer) -> None:
        card = card_of(trainer)
        if is_writer():
            write_card(self.workdir, card)

    def on_train_end(self, trainer) -> None:
        save_run(trainer, self.workdir)


def run_folder_callbacks(workdir: str, callbacks, best_metric: str | None) -> list:
    """`fit`'s callbacks with a workdir: checkpoints in `workdir/checkpoints` (resumed from there;
    unless a CheckpointCallback is given), then the user's, then `SaveRun`."""
    folder = RunFolder(workdir)
    folder.check()
    callbacks = list(callbacks)
    if not any(isinstance(cb, CheckpointCallback) for cb in callbacks):
        callbacks.insert(0, CheckpointCallback(folder.checkpoints_dir(), best_metric=best_metric))
    return [*callbacks, SaveRun(workdir)]
