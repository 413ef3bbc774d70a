import chex
import jax
import numpy as np
import optax
import pytest

import jaxcnn.train.loop as loop
from jaxcnn.cli import main as cli_main
from jaxcnn.models import get_model
from jaxcnn.train import NonFiniteLossError, Trainer, create_train_state, get_optimizer, make_train_step
from jaxcnn.train.losses import binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy


def _mnist_slice(data_dir, n_train=512, n_test=300):
    from jaxcnn.data import load_dataset

    return load_dataset("mnist", data_dir=data_dir).take(n_train, n_test)


def test_n1_shapes_and_keras_param_count():
    model = get_model("mnist_cnn")
    variables = model.init(jax.random.PRNGKey(0), np.zeros((2, 28, 28, 1), np.float32))
    chex.assert_shape(model.apply(variables, np.zeros((3, 28, 28, 1), np.float32)), (3, 10))
    # Keras: conv 320 + conv 18,496 + dense 1600*64+64 = 102,464 + dense 650 -> 121,930.
    assert sum(p.size for p in jax.tree.leaves(variables["params"])) == 121_930
    k = variables["params"]["conv1"]["kernel"]
    limit = np.sqrt(6 / (9 * 1 + 9 * 32))  # glorot-uniform bound, fan_in + fan_out
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit
    assert not np.any(variables["params"]["conv1"]["bias"])


def test_losses_match_definitions():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], np.float32)
    labels = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(sparse_categorical_crossentropy(logits, labels), -np.log(p[[0, 1], labels]), rtol=1e-6)
    np.testing.assert_allclose(categorical_crossentropy(logits, labels), -np.log(p[[0, 1], labels]), rtol=1e-6)
    z, t = np.array([[0.3], [-2.0]], np.float32), np.array([1, 0])
    s = 1 / (1 + np.exp(-z[:, 0]))
    np.testing.assert_allclose(binary_crossentropy(z, t), -(t * np.log(s) + (1 - t) * np.log(1 - s)), rtol=1e-6)


def test_optimizers_by_name():
    assert isinstance(get_optimizer("adam"), optax.GradientTransformation)
    tx = optax.sgd(0.1)
    assert get_optimizer(tx) is tx
    with pytest.raises(KeyError, match="unknown optimizer"):
        get_optimizer("adamw2")


def test_one_step_lowers_loss_on_fixed_batch():
    rng = np.random.default_rng(0)
    batch = {"image": rng.random((32, 28, 28, 1), np.float32), "label": rng.integers(0, 10, 32).astype(np.int32)}
    state = create_train_state(get_model("mnist_cnn"), (28, 28, 1), get_optimizer("adam"), seed=0)
    step = jax.jit(make_train_step("sparse_categorical_crossentropy"))
    losses = []
    for _ in range(5):
        state, m = step(state, batch)
        losses.append(float(m["loss"] / m["count"]))
    assert losses[-1] < losses[0]
    assert int(state.step) == 5
    chex.assert_tree_all_finite((state.params, state.opt_state))


def test_fit_trains_without_retracing(data_dir, monkeypatch):
    original = loop.make_train_step
    monkeypatch.setattr(loop, "make_train_step",
                        lambda *a, **k: chex.assert_max_traces(original(*a, **k), n=1))
    ds = _mnist_slice(data_dir)
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam")
    hist = trainer.fit(ds.x_train, ds.y_train, epochs=3, batch_size=32, validation_data=(ds.x_test, ds.y_test),
                       verbose=0)
    assert set(hist) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert len(hist["loss"]) == 3 and hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] > 0.5
    assert int(trainer.state.step) == 3 * (512 // 32)
    chex.assert_tree_all_finite(trainer.state)


def test_evaluate_and_predict_compile_once(monkeypatch):
    """Three calls each, with a ragged tail (padded and masked): one trace of each function."""
    chex.clear_trace_counter()
    make_eval = loop.make_eval_step
    monkeypatch.setattr(loop, "make_eval_step", lambda *a, **k: chex.assert_max_traces(make_eval(*a, **k), n=1))
    monkeypatch.setattr(loop, "predict_logits", chex.assert_max_traces(loop.predict_logits, n=1))
    rng = np.random.default_rng(0)
    x, y = rng.random((70, 28, 28, 1), np.float32), rng.integers(0, 10, 70).astype(np.int32)
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam")
    for _ in range(3):
        metrics = trainer.evaluate(x, y, batch_size=32)
        probs = trainer.predict(x, batch_size=32)
    chex.assert_shape(probs, (70, 10))
    chex.assert_tree_all_finite((metrics, probs))


@pytest.mark.parametrize("shape,match", [
    ((28, 28, 1), r"predict: images of shape \(28, 28, 1\) have 3 axes; expected 4: \[batch, 28, 28, 1\]"),
    ((4, 28, 28), r"predict: images of shape \(4, 28, 28\) have 3 axes; expected 4: \[batch, 28, 28, 1\]"),
    ((4, 32, 32, 1), r"predict: images of shape \(32, 32, 1\) do not fit the model's input shape"),
    ((4, 28, 28, 3), r"predict: images of shape \(28, 28, 3\) do not fit .*: 3 channel\(s\) where the model takes 1"),
])
def test_predict_names_a_wrong_input_shape(shape, match):
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam")
    with pytest.raises(ValueError, match=match):
        trainer.predict(np.zeros(shape, np.float32))


def test_evaluate_counts_every_example_once_with_ragged_tail(data_dir):
    ds = _mnist_slice(data_dir, n_test=301)
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam")
    trainer.fit(ds.x_train, ds.y_train, epochs=1, batch_size=64, verbose=0)
    probs = trainer.predict(ds.x_test, batch_size=64)
    chex.assert_shape(probs, (301, 10))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    expected_acc = float(np.mean(probs.argmax(-1) == ds.y_test))
    expected_loss = float(np.mean(-np.log(probs[np.arange(301), ds.y_test])))
    for bs in (64, 100, 301, 512):
        got = trainer.evaluate(ds.x_test, ds.y_test, batch_size=bs)
        assert got["accuracy"] == pytest.approx(expected_acc, abs=1e-9)
        assert got["loss"] == pytest.approx(expected_loss, rel=1e-4)


def test_validation_split_uses_last_fraction(data_dir):
    ds = _mnist_slice(data_dir, n_train=640)
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam")
    hist = trainer.fit(ds.x_train, ds.y_train, epochs=1, batch_size=32, validation_split=0.25, verbose=0)
    assert int(trainer.state.step) == 480 // 32  # trained on the first 75% only
    last = trainer.evaluate(ds.x_train[480:], ds.y_train[480:], batch_size=32)
    assert hist["val_loss"][0] == pytest.approx(last["loss"], rel=1e-5)
    assert hist["val_accuracy"][0] == pytest.approx(last["accuracy"])


def test_nan_loss_stops_training_with_message():
    # Finite inputs (NaN inputs are refused before training, see test_checks.py); a learning
    # rate of 1e30 makes the loss NaN by the second step.
    x = np.random.default_rng(0).random((128, 28, 28, 1), np.float32)
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="sgd", learning_rate=1e30)
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) in epoch 1 .*training stopped"):
        trainer.fit(x, np.zeros(128, np.int32), epochs=1, batch_size=32, verbose=0)


def test_wrong_input_shape_is_a_clear_error():
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam")
    with pytest.raises(ValueError, match=r"shape \(32, 32, 3\) do not fit the model's input shape \(28, 28, 1\)"):
        trainer.fit(np.zeros((64, 32, 32, 3), np.uint8), np.zeros(64, np.int32), verbose=0)


def test_pipeline_road_puts_batches_on_device_ahead_and_bounds_steps_in_flight(monkeypatch):
    """The next `device_prefetch` batches are on the device before a step runs; at most
    `max_in_flight` dispatched steps (each holding its batch) wait to finish."""
    from jaxcnn.train.roads import PipelineRoad

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 28, 28, 1), np.float32), rng.integers(0, 10, 64)
    trainer = Trainer(get_model("mnist_simple"), (28, 28, 1), optimizer="sgd", data_backend="numpy")
    road = PipelineRoad(trainer, x, y, batch_size=4)
    puts, put = [], trainer.strategy.put_batch
    monkeypatch.setattr(trainer.strategy, "put_batch", lambda b: puts.append(1) or put(b))
    chunks = road.train_chunks(0)
    first, last, batch = next(chunks)
    assert (first, last) == (0, 1)
    assert len(puts) == 1 + road.device_prefetch
    assert isinstance(batch["image"], jax.Array)
    assert [first] + [f for f, _, _ in chunks] == list(range(16))  # every step once, in order

    state = trainer.state
    for _, _, batch in road.train_chunks(1, start_step=3):
        state, _ = road.run(state, batch)
        assert len(road._in_flight) <= road.max_in_flight
    assert int(state.step) == 13


@pytest.mark.parametrize("road", ["pipeline", "device"])
def test_a_batch_larger_than_the_data_is_refused_before_training(road):
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1))
    x, y = np.zeros((20, 28, 28, 1), np.uint8), np.zeros(20, np.int32)
    with pytest.raises(ValueError, match="fit: 20 examples are fewer than one global batch of 32: lower the batch size"):
        trainer.fit(x, y, batch_size=32, verbose=0, road=road)
    assert int(trainer.state.step) == 0


def test_the_command_line_refuses_a_batch_larger_than_the_data_in_one_line(tmp_path, data_dir, capsys):
    argv = ["train", "mnist_cnn", "--batch-size", "1000", "--limit", "500", "--workdir", str(tmp_path / "w"),
            "--data-dir", data_dir, "--quiet"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "examples are fewer than one global batch of 1000: lower the batch size" in err
    assert "Traceback" not in err and "division" not in err
