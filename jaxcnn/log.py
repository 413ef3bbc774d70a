"""The `jaxcnn` logger and its one line format, below every module that logs (no cycles).

Warnings and errors read `jaxcnn: warning: ...`, INFO lines as written (epoch lines).
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("jaxcnn")


class _Format(logging.Formatter):
    """Keras-like lines: INFO as written (`Epoch 1/8 - 3.2s - loss: ...`), warnings and errors
    as `jaxcnn: warning: ...`, as the command line writes its own."""

    def format(self, record):
        text = record.getMessage()
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return f"jaxcnn: {record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


class _StderrHandler(logging.StreamHandler):
    """jaxcnn's own lines to whatever `sys.stderr` is at the time of each record."""

    def __init__(self):
        super().__init__(sys.stderr)
        self.setFormatter(_Format())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _own_logging() -> None:
    """The `jaxcnn` logger owns its handler and format: one line format for epoch lines whatever
    else configured logging (`logging.basicConfig`, absl, TensorFlow configure the root logger
    and would prefix `INFO:jaxcnn:`). Done once, on import; change it afterwards like any logger
    (`propagate = True` sends the records to the root's handlers as well, `setLevel` silences).
    """
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.propagate = False


_own_logging()
