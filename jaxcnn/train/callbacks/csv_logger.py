"""CSVLogger: one CSV row per epoch, like Keras' CSVLogger."""

from __future__ import annotations

import csv
import os

import jax

from jaxcnn.train.callbacks.base import Callback


class CSVLogger(Callback):
    """One CSV row per epoch (`epoch` and every log), like Keras' CSVLogger; process 0 writes."""

    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        self.filename, self.separator, self.append = filename, separator, append
        self.keys: list[str] | None = None

    def on_train_begin(self, trainer):
        self.keys = None
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                header = f.readline().strip()
            self.keys = header.split(self.separator)[1:] if header else None

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
