import chex
import numpy as np
import pytest

from jaxcnn.data import DataError
from jaxcnn.data.pipeline import ArrayPipeline, epoch_order, validation_split


def _arrays(n=50):
    x = (np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8))
    return x, np.arange(n) % 7


@pytest.mark.parametrize("backend", ["tf", "numpy"])
def test_train_batches_drop_remainder_and_shuffle(backend):
    x, y = _arrays(50)
    pipe = ArrayPipeline(x, y, batch_size=8, seed=3, backend=backend)
    batches = list(pipe.train_batches(epoch=0))
    assert len(batches) == pipe.steps_per_epoch() == 6
    ids = np.concatenate([b["image"][:, 0, 0, 0] * 255 for b in batches]).round().astype(int)
    assert len(set(ids)) == 48 and ids.tolist() != sorted(ids.tolist())  # shuffled, no repeats
    chex.assert_type([batches[0]["image"], batches[0]["label"]], [np.float32, int])
    chex.assert_shape(batches[0]["image"], (8, *x.shape[1:]))
    assert batches[0]["image"].max() <= 1.0
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), ids % 7)
    # A new epoch, a new order; the same (seed, epoch), the same order.
    again = np.concatenate([b["label"] for b in pipe.train_batches(epoch=0)])
    other = np.concatenate([b["label"] for b in pipe.train_batches(epoch=1)])
    np.testing.assert_array_equal(again, ids % 7)
    assert not np.array_equal(other, again)


def test_backends_agree_and_resume_mid_epoch():
    x, y = _arrays(50)
    tf_b = list(ArrayPipeline(x, y, 8, seed=1, backend="tf").train_batches(2))
    np_b = list(ArrayPipeline(x, y, 8, seed=1, backend="numpy").train_batches(2))
    chex.assert_trees_all_equal([b["image"] for b in tf_b], [b["image"] for b in np_b])
    resumed = list(ArrayPipeline(x, y, 8, seed=1, backend="numpy").train_batches(2, start_step=4))
    assert len(resumed) == 2
    np.testing.assert_array_equal(resumed[0]["label"], np_b[4]["label"])


@pytest.mark.parametrize("backend", ["tf", "numpy"])
def test_eval_covers_every_example_once(backend):
    x, y = _arrays(50)
    batches = list(ArrayPipeline(x, y, 16, backend=backend).eval_batches())
    assert len(batches) == 4
    chex.assert_equal_shape_prefix([b["image"] for b in batches] + [b["mask"] for b in batches], 1)
    chex.assert_shape(batches[0]["mask"], (16,))
    mask = np.concatenate([b["mask"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert mask.sum() == 50 and mask[50:].sum() == 0
    np.testing.assert_array_equal(labels[:50], y)


def test_hosts_split_each_global_batch():
    x, y = _arrays(50)
    full = list(ArrayPipeline(x, y, 8, seed=5, backend="numpy").train_batches(0))
    parts = [list(ArrayPipeline(x, y, 4, seed=5, backend="numpy", process_index=p, process_count=2)
                  .train_batches(0)) for p in range(2)]
    for i, b in enumerate(full):
        np.testing.assert_array_equal(np.concatenate([parts[0][i]["label"], parts[1][i]["label"]]), b["label"])
    ev = [np.concatenate([b["mask"] for b in ArrayPipeline(x, y, 4, process_index=p, process_count=2,
                                                            backend="numpy").eval_batches()]) for p in range(2)]
    assert ev[0].sum() + ev[1].sum() == 50


def test_errors():
    with pytest.raises(DataError, match="empty"):
        ArrayPipeline(np.zeros((0, 2, 2, 1)), np.zeros(0), 4)
    with pytest.raises(DataError, match="fewer than one global batch"):
        list(ArrayPipeline(*_arrays(5), batch_size=8).train_batches(0))
    assert sorted(epoch_order(10, 0, 0)) == list(range(10))


def test_validation_split_takes_last_fraction():
    x = np.arange(100)[:, None, None, None]
    y = np.arange(100)
    (xt, yt), (xv, yv) = validation_split(x, y, 0.1)
    assert list(yt) == list(range(90)) and list(yv) == list(range(90, 100))
    with pytest.raises(ValueError):
        validation_split(x, y, 1.5)
    with pytest.raises(DataError, match="empty split"):
        validation_split(x[:1], y[:1], 0.5)
