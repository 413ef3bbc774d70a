"""Your own losses and metrics, sample and class weights, the NaN stop, History: as Keras defines them."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.train import NonFiniteLossError, Trainer, create_train_state, get_optimizer, make_train_step
from jaxcnn.train.metrics import AUC, MetricSet
from tests.helpers import Tiny


@pytest.fixture(scope="module")
def mnist(data_dir):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist", data_dir=data_dir).take(256, 96)
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test


def _trainer(**kw):
    return Trainer(Tiny(), (28, 28, 1), optimizer="adam", data_backend="numpy", compute_dtype="f32", **kw)


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 28, 28, 1), np.float32), "label": rng.integers(0, 10, n).astype(np.int32)}


def my_cross_entropy(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]


def test_a_callable_loss_trains_like_the_named_one():
    state = create_train_state(Tiny(), (28, 28, 1), get_optimizer("adam"), seed=0)
    batch = _batch()
    named, m1 = jax.jit(make_train_step("sparse_categorical_crossentropy"))(state, batch)
    state = create_train_state(Tiny(), (28, 28, 1), get_optimizer("adam"), seed=0)
    custom, m2 = jax.jit(make_train_step(my_cross_entropy))(state, batch)
    chex.assert_trees_all_close(named.params, custom.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    with pytest.raises(KeyError, match="or a callable"):
        make_train_step("my_loss")


def test_metrics_are_exact_sums_and_match_their_definitions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(40, 6)).astype(np.float32)
    labels = rng.integers(0, 6, 40).astype(np.int32)
    weight = rng.random(40).astype(np.float32)
    mask = np.ones(40, np.float32)
    per_example_loss = rng.random(40).astype(np.float32)

    def hit_in_top2(lg, lb):  # a user's metric: per-example values
        return jnp.sum(lg > jnp.take_along_axis(lg, lb[:, None], -1), -1) < 2

    ms = MetricSet(["accuracy", "top_k_accuracy", "top_2_accuracy", hit_in_top2, "per_class_accuracy"])
    whole = ms.sums(per_example_loss, logits, labels, mask, weight)
    halves = [ms.sums(per_example_loss[s], logits[s], labels[s], mask[s], weight[s])
              for s in (slice(0, 17), slice(17, 40))]
    added = jax.tree.map(lambda a, b: np.asarray(a, np.float64) + np.asarray(b, np.float64), *halves)
    got, got_split = ms.results(jax.device_get(whole)), ms.results(added)
    for k in got:
        assert got[k] == pytest.approx(got_split[k], rel=1e-6), k
    rank = (logits > logits[np.arange(40), labels][:, None]).sum(-1)
    hit = (logits.argmax(-1) == labels)
    assert got["loss"] == pytest.approx(np.sum(per_example_loss * weight) / 40, rel=1e-6)  # Keras: / batch
    assert got["accuracy"] == pytest.approx(np.sum(hit * weight) / weight.sum(), rel=1e-6)
    assert got["top_k_accuracy"] == pytest.approx(np.sum((rank < 5) * weight) / weight.sum(), rel=1e-6)
    assert got["top_2_accuracy"] == pytest.approx(np.sum((rank < 2) * weight) / weight.sum(), rel=1e-6)
    assert got["hit_in_top2"] == pytest.approx(got["top_2_accuracy"])
    for c in range(6):
        sel = labels == c
        assert got[f"per_class_accuracy/{c}"] == pytest.approx(np.sum(hit[sel] * weight[sel]) / weight[sel].sum())


def test_auc_equals_keras_auc():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(2)
    # binary: one logit per example
    logits = rng.normal(size=(64, 1)).astype(np.float32)
    labels = (rng.random(64) < 1 / (1 + np.exp(-2 * logits[:, 0]))).astype(np.float32)
    ours = AUC().result(jax.device_get(AUC().sums(logits, labels, np.ones(64, np.float32))))["auc"]
    k = keras.metrics.AUC()
    k.update_state(labels, 1 / (1 + np.exp(-logits[:, 0])))
    assert ours == pytest.approx(float(k.result()), abs=1e-6)
    # several classes: softmax scores against one-hot labels, flattened as Keras does
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 50)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ours = AUC().result(jax.device_get(AUC().sums(logits, labels, np.ones(50, np.float32))))["auc"]
    k = keras.metrics.AUC()
    k.update_state(np.eye(4)[labels], probs)
    assert ours == pytest.approx(float(k.result()), abs=1e-6)


def test_class_weight_is_sample_weight_by_class_on_both_roads(mnist):
    x, y, xv, yv = mnist
    cw = {0: 3.0, 1: 0.5, 7: 2.0}
    a, b, c = _trainer(), _trainer(), _trainer()
    a.fit(x, y, epochs=1, batch_size=32, verbose=0, class_weight=cw)
    b.fit(x, y, epochs=1, batch_size=32, verbose=0,
          sample_weight=np.array([cw.get(int(v), 1.0) for v in y], np.float32))
    c.fit(x, y, epochs=1, batch_size=32, verbose=0, class_weight=cw, road="device", steps_per_call=3)
    chex.assert_trees_all_equal(jax.device_get(a.state.params), jax.device_get(b.state.params))
    chex.assert_trees_all_close(jax.device_get(a.state.params), jax.device_get(c.state.params), rtol=1e-4, atol=1e-6)
    plain = _trainer()
    plain.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert not np.allclose(jax.device_get(plain.state.params["out"]["kernel"]),
                           jax.device_get(a.state.params["out"]["kernel"]))


def test_evaluate_with_sample_weight_is_keras_weighted_mean(mnist):
    x, y, xv, yv = mnist
    t = _trainer(metrics=["accuracy", "top_3_accuracy"])
    t.fit(x, y, epochs=1, batch_size=32, verbose=0)
    w = np.random.default_rng(3).random(len(xv)).astype(np.float32)
    probs = t.predict(xv, batch_size=32)
    nll = -np.log(probs[np.arange(len(yv)), yv])
    got = t.evaluate(xv, yv, batch_size=40, sample_weight=w)  # ragged last batch of 16
    assert got["loss"] == pytest.approx(np.sum(nll * w) / len(yv), rel=1e-4)
    assert got["accuracy"] == pytest.approx(np.sum((probs.argmax(-1) == yv) * w) / w.sum(), rel=1e-6)
    assert 0 <= got["top_3_accuracy"] <= 1 and got["top_3_accuracy"] >= got["accuracy"]


def test_non_finite_step_changes_nothing_but_the_step_count():
    state = create_train_state(Tiny(), (28, 28, 1), get_optimizer("adam"), seed=0)
    before = jax.device_get(state)
    batch = _batch()
    batch["image"][3, 5, 5, 0] = np.nan
    after, metrics = jax.jit(make_train_step("sparse_categorical_crossentropy"))(state, batch)
    assert np.isnan(float(metrics["loss"])) and int(after.step) == 1
    chex.assert_trees_all_equal((before.params, before.opt_state), jax.device_get((after.params, after.opt_state)))


def ce_unless_marked(logits, labels):
    """Cross-entropy; NaN for labels marked by +10 (a loss that fails on chosen batches)."""
    loss = my_cross_entropy(logits, labels % 10)
    return jnp.where(labels >= 10, jnp.nan, loss)


@pytest.mark.parametrize("road", ["pipeline", "device"])
def test_nan_stop_leaves_the_last_finite_state(mnist, road):
    x, y, _, _ = mnist
    t = _trainer(loss=ce_unless_marked)
    t.fit(x, y, epochs=1, batch_size=32, verbose=0, road=road, steps_per_call=4)  # a finite epoch
    good = jax.device_get(t.state.params)
    with pytest.raises(NonFiniteLossError, match="last one with a finite loss"):
        t.fit(x, y + 10, epochs=1, batch_size=32, verbose=0, road=road, steps_per_call=4)
    chex.assert_trees_all_equal(good, jax.device_get(t.state.params))


def test_fit_returns_a_history_per_call_with_custom_metric(mnist):
    x, y, xv, yv = mnist

    def mean_confidence(logits, labels):
        return jax.nn.softmax(logits).max(-1)

    t = _trainer(metrics=["accuracy", mean_confidence])
    h1 = t.fit(x, y, epochs=1, batch_size=32, verbose=0, validation_data=(xv, yv))
    h2 = t.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert h1 is not h2 and t.history is h2
    assert h1.epoch == [0] and h2.epoch == [0, 1] and len(h1["loss"]) == 1 and len(h2["loss"]) == 2
    assert h2.params["epochs"] == 2 and h2.params["steps"] == 8
    assert {"mean_confidence", "val_mean_confidence", "learning_rate"} <= set(h1.history)
    assert 0.1 <= h1["mean_confidence"][0] <= 1.0
