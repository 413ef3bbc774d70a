"""The step's batch and predict's input are checked at trace time, naming the argument."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.models import get_model
from jaxcnn.train import create_train_state, make_eval_step, make_train_step
from jaxcnn.train.step import predict_logits


@pytest.fixture(scope="module")
def state():
    return create_train_state(get_model("mnist_simple"), (8, 8, 1), optax.sgd(0.1))


def _batch(n=4, labels=None, **extra):
    return {"image": np.zeros((n, 8, 8, 1), np.float32),
            "label": np.zeros(n, np.int32) if labels is None else labels, **extra}


def test_labels_of_another_length_name_the_argument(state):
    step = jax.jit(make_train_step())
    with pytest.raises(AssertionError, match=r"train_step: batch\['label'\] of shape \(3,\) does not have one "
                                             r"entry per image of batch\['image'\] \(4, 8, 8, 1\)"):
        step(state, _batch(labels=np.zeros(3, np.int32)))
    with pytest.raises(AssertionError, match=r"eval_step: batch\['mask'\] of shape \(5,\)"):
        jax.jit(make_eval_step())(state, _batch(mask=np.ones(5, np.float32)))


def test_missing_keys_and_images_without_batch_axis(state):
    step = make_train_step()
    with pytest.raises(KeyError, match=r"train_step: batch needs 'image' and 'label' .*got \['image', 'labels'\]"):
        step(state, {"image": np.zeros((4, 8, 8, 1)), "labels": np.zeros(4)})
    with pytest.raises(AssertionError, match=r"predict: images of shape \(8,\) has no batch axis"):
        predict_logits(state, jnp.zeros(8))


def test_a_good_batch_still_trains(state):
    new_state, metrics = jax.jit(make_train_step())(state, _batch(mask=np.ones(4, np.float32)))
    assert int(new_state.step) == 1 and float(metrics["count"]) == 4


def test_a_non_finite_step_changes_only_the_step_count():
    """NaN gradients leave params, optimizer state and BatchNorm statistics as they were."""
    state = create_train_state(get_model("bn_cnn_binary"), (12, 12, 3), optax.adam(1e-3))
    step = jax.jit(make_train_step("binary_crossentropy"))
    batch = {"image": np.zeros((4, 12, 12, 3), np.float32), "label": np.zeros(4, np.int32)}
    good, metrics = step(state, batch)
    chex.assert_tree_all_finite(good)
    assert np.isfinite(float(metrics["loss"]))
    after, metrics = step(good, {**batch, "image": np.full((4, 12, 12, 3), np.nan, np.float32)})
    assert np.isnan(float(metrics["loss"])) and int(after.step) == 2
    chex.assert_trees_all_equal((after.params, after.opt_state, after.batch_stats),
                                (good.params, good.opt_state, good.batch_stats))
    again, _ = step(after, batch)  # and the next finite step trains on
    assert int(again.step) == 3 and not np.array_equal(again.params["logits"]["bias"], good.params["logits"]["bias"])
