"""CSVLogger: one CSV row per epoch, like Keras' CSVLogger; a resumed run's file equals an
uninterrupted run's."""

from __future__ import annotations

import csv
import io
import os

import jax

from jaxcnn.train.callbacks.base import Callback


def _rows(path: str, separator: str) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


class CSVLogger(Callback):
    """One CSV row per epoch (`epoch` and every log), like Keras' CSVLogger; process 0 writes.

    In a run that a checkpoint resumes (`trainer.resumable`), the file follows the run: on a
    resume it is rewritten from the restored history (the rows of the epochs the checkpoint
    holds, as they were written), so rows a killed process wrote after its last checkpoint go
    and none is missing. With `append=True` only the rows of epochs not yet done are dropped.
    """

    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        self.filename, self.separator, self.append = filename, separator, append
        self.keys: list[str] | None = None

    def on_train_begin(self, trainer):
        self.keys = None
        if getattr(trainer, "resumable", False) and jax.process_index() == 0:
            self._follow_run(trainer)
        elif self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                header = f.readline().strip()
            self.keys = header.split(self.separator)[1:] if header else None

    def _follow_run(self, trainer) -> None:
        history, done = trainer.history, len(trainer.history.epoch)
        if self.append and os.path.exists(self.filename):
            rows = _rows(self.filename, self.separator)
            while len(rows) > 1 and rows[-1] and rows[-1][0].isdigit() and int(rows[-1][0]) >= done:
                rows.pop()
            self.keys = rows[0][1:] if rows else None
        elif done:
            self.keys = list(history.history)
            rows = [["epoch", *self.keys]] + [[epoch, *(history.history[k][i] if i < len(history.history[k]) else ""
                                                        for k in self.keys)]
                                              for i, epoch in enumerate(history.epoch)]
        else:
            return  # a fresh run: the first epoch's row starts the file over
        if not rows:
            return
        buf = io.StringIO(newline="")
        csv.writer(buf, delimiter=self.separator).writerows(rows)
        tmp = self.filename + ".tmp"
        with open(tmp, "w", newline="") as f:
            f.write(buf.getvalue())
        os.replace(tmp, self.filename)  # the next rows are appended (self.keys is set)

    def on_epoch_end(self, trainer, epoch, logs):
        if jax.process_index() != 0:
            return
        new_file = self.keys is None
        if new_file:
            self.keys = list(logs)
        mode = "w" if new_file and not self.append else "a"
        with open(self.filename, mode, newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if new_file:
                writer.writerow(["epoch", *self.keys])
            writer.writerow([epoch, *(logs.get(k, "") for k in self.keys)])
