"""Spoken digits (FSDD) as 64x64 log-mel spectrogram "images" for the spectrogram CNN (N6).

The WAV files are read straight from the published tar.gz (3,000 small clips: no extraction
needed); spectrograms are computed in a tf.data pipeline with `tf.signal`. Split as the dataset
publishes it: recordings with index 0-4 are test (300), 5-49 are train (2,700).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import wave

import numpy as np

from jaxcnn.data.base import Dataset, dataset_dir, register_dataset
from jaxcnn.data.errors import DataError
from jaxcnn.data.tfutil import import_tf

SAMPLE_RATE = 8000
CLIP_SAMPLES = 8192  # about 1 s at 8 kHz; longer clips are center-cropped, shorter zero-padded
_NAME = re.compile(r"(?:^|/)(\d)_([a-z]+)_(\d+)\.wav$")


def read_wav(data: bytes, what: str) -> np.ndarray:
    """Mono 16-bit PCM WAV bytes -> float32 samples in [-1, 1]."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise DataError(f"{what}: expected mono 16-bit PCM, got {w.getnchannels()} channels, "
                                f"{8 * w.getsampwidth()} bits")
            if w.getframerate() != SAMPLE_RATE:
                raise DataError(f"{what}: expected {SAMPLE_RATE} Hz, got {w.getframerate()} Hz")
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise DataError(f"{what}: not a readable WAV file ({e})") from e
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0


def fit_length(x: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    if len(x) >= length:
        start = (len(x) - length) // 2
        return x[start:start + length]
    return np.pad(x, (0, length - len(x)))


def read_fsdd_archive(path: str):
    """(waveforms [N, CLIP_SAMPLES], digits, speakers, indices) from the FSDD tar.gz."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    waves, digits, speakers, indices = [], [], [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                m = _NAME.search(member.name)
                if not member.isfile() or not m:
                    continue
                data = tar.extractfile(member).read()
                waves.append(fit_length(read_wav(data, f"{path}:{member.name}")))
                digits.append(int(m.group(1)))
                speakers.append(m.group(2))
                indices.append(int(m.group(3)))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: corrupt or truncated archive ({e})") from e
    if not waves:
        raise DataError(f"{path}: no recordings named DIGIT_SPEAKER_INDEX.wav found")
    return np.stack(waves), np.array(digits, np.int32), np.array(speakers), np.array(indices)


def log_mel_spectrograms(waves: np.ndarray, size: int = 64, batch_size: int = 256) -> np.ndarray:
    """[N, samples] float waveforms -> [N, size, size, 1] standardized log-mel spectrograms.

    tf.signal STFT (frame 256, hop CLIP_SAMPLES / size, so `size` frames), `size` mel bands over
    20 Hz - 4 kHz, log, then each spectrogram standardized to zero mean and unit variance.
    """
    tf = import_tf()
    hop = waves.shape[1] // size
    mel = tf.signal.linear_to_mel_weight_matrix(size, 129, SAMPLE_RATE, 20.0, SAMPLE_RATE / 2)

    def transform(x):
        stft = tf.signal.stft(x, frame_length=256, frame_step=hop, fft_length=256, pad_end=True)
        spec = tf.math.log(tf.tensordot(tf.abs(stft) ** 2, mel, 1) + 1e-6)[:, :size, :]
        spec = tf.transpose(spec, [0, 2, 1])[:, ::-1, :]  # mel bands as rows, low frequencies at the bottom
        mean = tf.reduce_mean(spec, axis=[1, 2], keepdims=True)
        std = tf.math.reduce_std(spec, axis=[1, 2], keepdims=True)
        return ((spec - mean) / (std + 1e-6))[..., None]

    ds = tf.data.Dataset.from_tensor_slices(waves.astype(np.float32)).batch(batch_size)
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return np.concatenate(list(ds.as_numpy_iterator()))


@register_dataset("spoken_digits")
def load_spoken_digits(data_dir: str | None = None, size: int = 64) -> Dataset:
    """FSDD: 2,700 train and 300 test spectrograms [size, size, 1] of the digits 0-9."""
    path = os.path.join(dataset_dir("fsdd", data_dir), "fsdd-recordings.tar.gz")
    waves, digits, _, indices = read_fsdd_archive(path)
    spectrograms = log_mel_spectrograms(waves, size)
    test = indices < 5
    return Dataset("spoken_digits", spectrograms[~test], digits[~test], spectrograms[test], digits[test],
                   class_names=tuple(str(d) for d in range(10)))
