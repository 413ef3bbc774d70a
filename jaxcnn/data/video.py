"""Moving-digit clips: a deterministic, offline action task for the CNN-LSTM (N5).

Each clip shows one MNIST digit on a black frame that stays still (0), walks slowly (1) or runs
fast (2) horizontally, in a random direction, at a random height. The frame is a circular
track: a digit leaving one side re-enters at the other (`np.roll`), and each clip starts at a
uniformly drawn shift. So every single frame, in every class, is the digit at a uniformly
random shift: single frames carry no class information (a frame-only baseline stays at chance),
only the motion across frames does.
"""

from __future__ import annotations

import numpy as np

from jaxcnn.data.base import Dataset, load_dataset, register_dataset

CLASSES = ("still", "walking", "running")
# Fraction of the frame width travelled over a clip, per class.
TRAVEL = (0.0, 0.25, 0.75)


def moving_digit_clips(digits: np.ndarray, num_clips: int, frames: int = 30, size: int = 32,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[num_clips, frames, size, size, 1] uint8 clips and their class labels, from `digits`."""
    rng = np.random.default_rng(seed)
    d = digits.shape[1]
    if size < 2 * d:
        # Shrink the digits in small frames to leave room to move (nearest neighbour).
        d = max(8, size * 3 // 8)
        idx = (np.arange(d) * digits.shape[1] / d).astype(int)
        digits = digits[:, idx][:, :, idx]
    clips = np.zeros((num_clips, frames, size, size, 1), np.uint8)
    labels = rng.integers(0, len(CLASSES), num_clips).astype(np.int32)
    picks = rng.integers(0, len(digits), num_clips)
    t = np.arange(frames) / max(frames - 1, 1)
    for i in range(num_clips):
        base = np.zeros((size, size), np.uint8)
        y = rng.integers(0, size - d + 1)
        base[y:y + d, :d] = digits[picks[i], :, :, 0]
        direction = 1 if rng.random() < 0.5 else -1
        # A uniform start shift plus any integer offset is uniform mod size, frame by frame.
        shifts = rng.integers(0, size) + direction * np.rint(TRAVEL[labels[i]] * size * t).astype(int)
        for f, shift in enumerate(shifts % size):
            clips[i, f, :, :, 0] = np.roll(base, shift, axis=1)
    return clips, labels


@register_dataset("moving_digits")
def load_moving_digits(data_dir: str | None = None, num_train: int = 3000, num_test: int = 600,
                       frames: int = 30, size: int = 32, seed: int = 0) -> Dataset:
    """Clips from MNIST train digits (train split) and MNIST test digits (test split)."""
    mnist = load_dataset("mnist", data_dir=data_dir)
    x_train, y_train = moving_digit_clips(mnist.x_train, num_train, frames, size, seed)
    x_test, y_test = moving_digit_clips(mnist.x_test, num_test, frames, size, seed + 1)
    return Dataset("moving_digits", x_train, y_train, x_test, y_test, CLASSES)


def single_frames(clips: np.ndarray, seed: int = 0) -> np.ndarray:
    """One random frame of each clip: the input of the frame-only baseline."""
    rng = np.random.default_rng(seed)
    return clips[np.arange(len(clips)), rng.integers(0, clips.shape[1], len(clips))]
