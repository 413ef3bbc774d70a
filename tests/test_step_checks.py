"""The step's batch and predict's input are checked at trace time, naming the argument."""

from __future__ import annotations

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
