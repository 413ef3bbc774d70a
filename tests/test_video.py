"""Moving-digit clips: the class is in the motion only, never in a single frame."""

import chex
import numpy as np
from scipy import stats

from jaxcnn.data.video import CLASSES, TRAVEL, moving_digit_clips, single_frames


def _digits(n=20, seed=0):
    rng = np.random.default_rng(seed)
    d = np.zeros((n, 28, 28, 1), np.uint8)
    d[:, 6:22, 10:18, 0] = rng.integers(60, 255, (n, 16, 8))
    return d


def _shift(frame, ref):
    """The circular horizontal shift that turns `ref` into `frame` (None if there is none)."""
    hits = [s for s in range(ref.shape[1]) if np.array_equal(np.roll(ref, s, axis=1), frame)]
    return hits[0] if hits else None


def test_clips_move_by_the_class_speed_as_pure_circular_shifts():
    clips, labels = moving_digit_clips(_digits(), 30, frames=10, size=32, seed=1)
    chex.assert_shape(clips, (30, 10, 32, 32, 1))
    chex.assert_type(clips, np.uint8)
    assert set(labels.tolist()) == {0, 1, 2}
    for clip, label in zip(clips, labels):
        assert clip[0].max() > 0
        shifts = [_shift(frame, clip[0]) for frame in clip]
        assert None not in shifts  # each frame is frame 0 rolled: the digit only moves
        assert round(TRAVEL[label] * 32) in (shifts[-1], -shifts[-1] % 32), (CLASSES[label], shifts)
        if CLASSES[label] == "still":
            assert shifts == [0] * 10


def test_single_frame_positions_are_uniform_in_every_class():
    clips, labels = moving_digit_clips(_digits(), 3000, frames=10, size=32, seed=2)
    frames = single_frames(clips, seed=3)[..., 0]
    # The digit's left edge, where a column of it starts after an empty one (circularly).
    filled = frames.max(axis=1) > 0  # [n, width]
    left = np.argmax(filled & ~np.roll(filled, 1, axis=1), axis=1)
    for c in range(len(CLASSES)):
        counts = np.bincount(left[labels == c], minlength=32)
        assert stats.chisquare(counts).pvalue > 1e-3, (CLASSES[c], counts)
