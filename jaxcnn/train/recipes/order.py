"""The recipes' data order: epoch e takes the e-th permutation drawn from one numpy Generator
seeded with the run's seed (as the PyTorch and Keras peers in benchmarks/ draw theirs)."""

from __future__ import annotations

import numpy as np


class StreamOrder:
    """`order(epoch)` -> the permutation of `n` examples for `epoch` (earlier draws kept)."""

    def __init__(self, n: int, seed: int):
        self.n, self.rng, self.drawn = n, np.random.default_rng(seed), []

    def __call__(self, epoch: int) -> np.ndarray:
        while len(self.drawn) <= epoch:
            self.drawn.append(self.rng.permutation(self.n))
        return self.drawn[epoch]
