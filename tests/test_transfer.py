"""Transfer learning: frozen params never move and hold no optimizer state; unfreezing block5
moves exactly block5 and the head; pretrained bases load by name; frozen features train a head."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.models import get_model
from jaxcnn.models.transfer import TransferHead, TransferModel
from jaxcnn.models.vgg import VGG16
from jaxcnn.train import create_train_state, init_variables, make_train_step
from jaxcnn.models.vgg import preprocess_input
from jaxcnn.transfer import (extract_features, freeze_mask, init_with_pretrained_base, load_base,
                             make_transfer_optimizer)
from jaxcnn.weights.store import save_variables

SHAPE = (32, 32, 3)  # VGG16's conv base runs at any size >= 32; block5 gives 1x1x512


def _batch(n=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.normal(0, 50, (n, *SHAPE)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, classes, n), jnp.int32)}


def _bits(tree):
    return jax.tree.map(lambda a: np.asarray(a).view(np.uint32).copy(), tree)


def _leaf_paths(tree):
    return ["/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in p)
            for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _changed(before, after):
    """'/'-joined paths of the leaves whose bits differ."""
    flat_b = dict(zip(_leaf_paths(before), jax.tree.leaves(before)))
    flat_a = dict(zip(_leaf_paths(after), jax.tree.leaves(after)))
    return {k for k in flat_b if not np.array_equal(flat_b[k], flat_a[k])}


def _train(model, trainable, steps=2, loss="sparse_categorical_crossentropy", classes=3):
    variables = init_variables(model, SHAPE)
    tx = make_transfer_optimizer(optax.adam(1e-3), variables["params"], trainable)
    state = create_train_state(model, SHAPE, tx, params=variables["params"])
    before = _bits(state.params)
    step = jax.jit(make_train_step(loss))
    for i in range(steps):
        state, metrics = step(state, _batch(classes=classes, seed=i))
    assert np.isfinite(float(metrics["loss"]))
    return state, before


def test_frozen_base_is_bitwise_unchanged_and_has_no_optimizer_state():
    model = get_model("vgg16_transfer_a", num_classes=3)
    state, before = _train(model, ("head",))
    changed = _changed(before, _bits(state.params))
    assert changed == {p for p in _leaf_paths(before) if p.startswith("head/")}
    # Adam's moments exist for the head only; set_to_zero keeps nothing for the base.
    opt_paths = _leaf_paths(state.opt_state)
    assert opt_paths and not any("base" in p for p in opt_paths)
    n_head = sum(a.size for a in jax.tree.leaves(state.params["head"]))
    assert sum(np.size(a) for a in jax.tree.leaves(state.opt_state)) == 2 * n_head + 1  # mu, nu, count


def test_unfreezing_block5_moves_block5_and_head_only():
    model = get_model("vgg16_transfer_c", num_classes=3)
    state, before = _train(model, ("head", "base/block5"))
    changed = _changed(before, _bits(state.params))
    expected = {p for p in _leaf_paths(before) if p.startswith(("head/", "base/block5_"))}
    assert len(expected) == 2 * 2 + 3 * 2 and changed == expected


def test_optimizer_without_params_and_preprocess_option(tmp_path):
    model = get_model("vgg16_transfer_c", num_classes=3, preprocess="caffe_unit")
    pretrained = init_variables(VGG16(include_top=False), SHAPE, seed=7)
    save_variables(tmp_path / "base", pretrained)
    variables = init_with_pretrained_base(model, SHAPE, tmp_path / "base")
    chex.assert_trees_all_equal(variables["params"]["base"], pretrained["params"])
    late = make_transfer_optimizer(optax.adam(1e-3), trainable="head").init(variables["params"])
    early = make_transfer_optimizer(optax.adam(1e-3), variables["params"], ("head",)).init(variables["params"])
    assert jax.tree.structure(late) == jax.tree.structure(early)
    # "caffe_unit": inputs are pixels / 255; the model applies Keras' caffe preprocessing itself.
    x = np.random.default_rng(0).uniform(0, 1, (2, *SHAPE)).astype(np.float32)
    plain = get_model("vgg16_transfer_c", num_classes=3)
    np.testing.assert_allclose(model.apply(variables, x),
                               plain.apply(variables, preprocess_input(x * 255.0)), rtol=1e-5, atol=1e-5)


def test_binary_head_b_and_freeze_mask_prefixes():
    model = get_model("vgg16_transfer_b")
    state, before = _train(model, ("head",), loss="binary_crossentropy", classes=2)
    out = state.apply_fn({"params": state.params}, _batch()["image"])
    chex.assert_shape(out, (4, 1))
    mask = freeze_mask({"base": {"block5_conv1": 1, "block50": 2, "block5": {"k": 3}}, "head": 4},
                       ["base/block5"])
    assert mask == {"base": {"block5_conv1": True, "block50": False, "block5": {"k": True}}, "head": False}
    with pytest.raises(ValueError, match="no parameter matches"):
        freeze_mask({"base": {"a": 1}}, ["heads"])


def test_resnet50_base_keeps_running_stats():
    model = TransferModel("resnet50", "c", 3)
    variables = init_variables(model, SHAPE)
    stats = jax.tree.map(lambda a: a + 0.5, variables["batch_stats"])  # "pretrained" statistics
    tx = make_transfer_optimizer(optax.sgd(0.1), variables["params"], ("head",))
    state = create_train_state(model, SHAPE, tx, params=variables["params"]).replace(batch_stats=stats)
    before = _bits(state.params)
    state, _ = jax.jit(make_train_step("sparse_categorical_crossentropy"))(state, _batch())
    assert _changed(_bits(stats), _bits(state.batch_stats)) == set()
    assert all(p.startswith("head/") for p in _changed(before, _bits(state.params)))


def test_load_base_takes_named_layers_and_reports_mismatches():
    model = get_model("vgg16_transfer_a", num_classes=3)
    variables = init_variables(model, SHAPE)
    full = init_variables(VGG16(include_top=False), SHAPE, seed=5)
    full["params"] = {**full["params"], "fc1": {"kernel": jnp.ones((2, 2))}}  # extra layers are ignored
    loaded = load_base(variables, full)
    chex.assert_trees_all_equal(loaded["params"]["base"], {k: v for k, v in full["params"].items()
                                             if k not in ("fc1", "fc2", "predictions")})
    chex.assert_trees_all_equal(loaded["params"]["head"], variables["params"]["head"])
    broken = {"params": dict(full["params"])}
    broken["params"]["block2_conv1"] = {"kernel": jnp.zeros((3, 3, 64, 64)), "bias": jnp.zeros(128)}
    with pytest.raises(ValueError, match=r"params/base/block2_conv1/kernel.*\(3, 3, 64, 64\)"):
        load_base(variables, broken)
    with pytest.raises(ValueError, match="lack 'params/base/block4_conv2'"):
        load_base(variables, {"params": {k: v for k, v in full["params"].items() if k != "block4_conv2"}})


def test_head_on_extracted_features_matches_full_model():
    model = get_model("vgg16_transfer_a", num_classes=3)
    variables = init_variables(model, SHAPE)
    images = np.asarray(_batch(n=5)["image"])
    base = VGG16(include_top=False)
    feats = extract_features(base.apply, {"params": variables["params"]["base"]}, images, batch_size=2)
    chex.assert_shape(feats, (5, 1, 1, 512))
    chex.assert_type(feats, np.float32)
    from_batches = extract_features(base.apply, {"params": variables["params"]["base"]},
                                    iter([images[:3], images[3:]]), batch_size=2)
    np.testing.assert_allclose(from_batches, feats, rtol=1e-6, atol=1e-6)
    head = TransferHead("a", 3)
    ours = head.apply({"params": variables["params"]["head"]}, feats)
    full = model.apply(variables, images)
    np.testing.assert_allclose(ours, full, rtol=1e-5, atol=1e-5)
    # The head trains alone on the features; its params drop back into the full model.
    tx = optax.adam(1e-3)
    state = create_train_state(head, feats.shape[1:], tx, params=variables["params"]["head"])
    state, _ = jax.jit(make_train_step("sparse_categorical_crossentropy"))(
        state, {"image": jnp.asarray(feats[:4]), "label": jnp.array([0, 1, 2, 0])})
    merged = {"params": {"base": variables["params"]["base"], "head": state.params}}
    np.testing.assert_allclose(model.apply(merged, images),
                               head.apply({"params": state.params}, feats), rtol=1e-5, atol=1e-5)


def test_extract_features_compiles_once_across_calls_with_equal_modules():
    import flax.linen as nn

    traces = []

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, x):
            traces.append(x.shape)  # runs only while tracing
            return nn.Dense(2)(x.reshape(len(x), -1))

    images = np.ones((6, 2, 2, 1), np.float32)
    variables = Probe().init(jax.random.key(0), images[:1])
    first = extract_features(Probe().apply, variables, images, batch_size=4)
    again = extract_features(Probe().apply, variables, images, batch_size=4)
    assert len(traces) == 2  # init, then one compilation shared by both calls (padded last batch)
    np.testing.assert_array_equal(first, again)
