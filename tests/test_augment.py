"""Augmentation: parity with Keras' apply_affine_transform / ImageDataGenerator, TF vs JAX, sampling."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras_image = pytest.importorskip("tf_keras.src.preprocessing.image")
from scipy import stats  # noqa: E402

import tensorflow as tf  # noqa: E402

from jaxcnn.data.augment import (  # noqa: E402
    FILL_MODES,
    RECIPES,
    AugmentConfig,
    apply_affine,
    jax_apply_affine,
    jax_sample_transform_params,
    make_jax_augment,
    make_tf_augment,
    parse_augment,
    sample_transform_params,
    save_augment_preview,
    tf_transform_batch,
)

SHAPES = [(12, 12, 1), (10, 15, 3), (17, 9, 1), (16, 16, 3)]
# (theta, tx, ty, shear, zx, zy): rotations, shifts (fractional and whole pixels), shear, zooms.
PARAMS = [
    (17.0, 1.5, -2.3, 12.0, 1.2, 0.8),
    (-35.0, 0.0, 0.0, 0.0, 0.8, 0.8),
    (0.0, 3.0, 0.0, 0.0, 1.0, 1.0),
    (0.0, 0.0, -4.0, 0.0, 1.0, 1.0),
    (5.0, -1.0, 2.0, -20.0, 1.1, 0.9),
    (40.0, 2.5, 2.5, 0.2, 1.2, 1.2),
    (0.0, 0.0, 0.0, 30.0, 1.0, 1.0),
]


def _image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _keras(x, p, mode, cval=0.3):
    return keras_image.apply_affine_transform(x, *p, row_axis=0, col_axis=1, channel_axis=2,
                                              fill_mode=mode, cval=cval, order=1)


@pytest.mark.parametrize("kernel", ["op", "xla"])
@pytest.mark.parametrize("mode", FILL_MODES)
@pytest.mark.parametrize("shape", SHAPES)
def test_apply_affine_matches_keras_everywhere(shape, mode, kernel):
    """Whole image, border included: the fill modes mean scipy's (Keras') fill modes."""
    x = _image(shape)
    for p in PARAMS:
        want = _keras(x, p, mode)
        got = apply_affine(x, *p, fill_mode=mode, cval=0.3, kernel=kernel).numpy()
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"{shape} {mode} {p}")


@pytest.mark.parametrize("mode", FILL_MODES)
def test_tf_kernels_agree(mode):
    x = _image((4, 70, 66, 3), seed=9)
    t = tf.constant([[1.1, 0.2, -3.0, -0.1, 0.9, 5.0, 0, 0], [0.7, -0.3, 20.0, 0.3, 0.8, -4.0, 0, 0],
                     [-1.0, 0.0, 65.0, 0.0, 1.0, 0.0, 0, 0], [1.3, 0.4, -10.0, -0.2, 1.2, -9.0, 0, 0]])
    outs = {k: tf_transform_batch(x, t, mode, 0.3, kernel=k).numpy() for k in ("op", "gather", "xla", "auto")}
    for k in ("gather", "xla", "auto"):
        np.testing.assert_allclose(outs[k], outs["op"], atol=2e-5, err_msg=k)


@pytest.mark.parametrize("mode", FILL_MODES)
def test_quarter_turn_matches_keras_inside(mode):
    """A 90 degree turn puts sample points exactly on the edge: Keras' float64 inside/outside
    choice there (constant, wrap) can go either way, so only the interior must match."""
    x = _image((11, 11, 2))
    want = _keras(x, (90.0, 0, 0, 0, 1, 1), mode)
    got = apply_affine(x, theta=90.0, fill_mode=mode, cval=0.3).numpy()
    np.testing.assert_allclose(got[1:-1, 1:-1], want[1:-1, 1:-1], atol=2e-5)
    if mode in ("nearest", "reflect"):
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_flips_match_image_data_generator_apply_transform():
    gen = keras_image.ImageDataGenerator(fill_mode="reflect")
    x = _image((10, 14, 3), seed=1)
    for fh, fv in itertools.product([False, True], repeat=2):
        params = dict(theta=12.0, tx=1.2, ty=-2.0, shear=5.0, zx=0.9, zy=1.1,
                      flip_horizontal=fh, flip_vertical=fv)
        want = gen.apply_transform(x, params)
        got = apply_affine(x, **params, fill_mode="reflect").numpy()
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"flips {fh} {fv}")


def test_apply_affine_batch_and_identity():
    x = _image((3, 8, 9, 2))
    np.testing.assert_array_equal(apply_affine(x).numpy(), x)
    got = apply_affine(x, theta=20.0, zx=1.1).numpy()
    for i in range(3):
        np.testing.assert_allclose(got[i], _keras(x[i], (20.0, 0, 0, 0, 1.1, 1), "nearest"), atol=2e-5)
    with pytest.raises(ValueError, match="HWC"):
        apply_affine(np.zeros((4, 4)))


@pytest.mark.parametrize("mode", FILL_MODES)
@pytest.mark.parametrize("shape", SHAPES[:3])
def test_jax_apply_affine_matches_tf(shape, mode):
    x = _image(shape, seed=2)
    f = jax.jit(jax_apply_affine, static_argnames=("fill_mode", "cval"))
    for p in PARAMS:
        for fh in (False, True):
            want = apply_affine(x, *p, flip_horizontal=fh, fill_mode=mode, cval=0.3).numpy()
            got = np.asarray(f(jnp.asarray(x), *p, flip_horizontal=fh, fill_mode=mode, cval=0.3))
            np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"{shape} {mode} {p} {fh}")


def _per_image_keras(x, params, config):
    gen = keras_image.ImageDataGenerator(fill_mode=config.fill_mode, cval=config.cval)
    out = []
    for i in range(len(x)):
        p = {k: (bool(v[i]) if v.dtype == bool else float(v[i])) for k, v in params.items()}
        out.append(gen.apply_transform(x[i], p))
    return np.stack(out)


@pytest.mark.parametrize("recipe", ["A", "B"])
def test_tf_augment_equals_keras_with_its_sampled_parameters(recipe):
    """make_tf_augment = sample_transform_params, then ImageDataGenerator.apply_transform."""
    config = RECIPES[recipe]
    x = _image((6, 20, 20, 3), seed=3)
    seed = tf.constant([7, 11], tf.int64)
    got = make_tf_augment(config)(tf.constant(x), seed).numpy()
    params = {k: v.numpy() for k, v in sample_transform_params(config, 6, 20.0, 20.0, seed).items()}
    np.testing.assert_allclose(got, _per_image_keras(x, params, config), atol=5e-5)


def test_tf_augment_is_reproducible_and_seeded():
    fn = make_tf_augment("B")
    x = tf.constant(_image((4, 16, 16, 1), seed=4))
    a = fn(x, tf.constant([1, 2], tf.int64)).numpy()
    b = fn(x, tf.constant([1, 2], tf.int64)).numpy()
    c = fn(x, tf.constant([1, 3], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.05
    assert make_tf_augment("none") is None and make_tf_augment(AugmentConfig()) is None


def test_tf_augment_in_array_pipeline_and_tf_function():
    from jaxcnn.data.pipeline import ArrayPipeline

    x = (np.random.default_rng(5).random((16, 12, 12, 1)) * 255).astype(np.uint8)
    y = np.arange(16) % 3
    pipe = ArrayPipeline(x, y, batch_size=8, seed=3, backend="tf", augment=make_tf_augment("A"))
    e0 = [b["image"] for b in pipe.train_batches(0)]
    e0b = [b["image"] for b in pipe.train_batches(0)]
    e1 = [b["image"] for b in pipe.train_batches(1)]
    assert e0[0].shape == (8, 12, 12, 1) and e0[0].dtype == np.float32
    np.testing.assert_array_equal(e0[0], e0b[0])
    assert not np.array_equal(e0[0], e1[0])
    # Large images take the XLA kernel inside tf.data; same batches as the fused op.
    big = (np.random.default_rng(6).random((4, 64, 72, 3)) * 255).astype(np.uint8)
    runs = [[b["image"] for b in ArrayPipeline(big, np.zeros(4, int), 2, seed=1, backend="tf",
                                               augment=make_tf_augment("B", kernel=k)).train_batches(0)]
            for k in ("auto", "op")]
    np.testing.assert_allclose(runs[0][0], runs[1][0], atol=2e-5)
    fn = tf.function(make_tf_augment("B"))  # traces with unknown batch size too
    out = fn(tf.constant(x[:5].astype(np.float32)), tf.constant([0, 1], tf.int64))
    assert out.shape == (5, 12, 12, 1)


@pytest.mark.parametrize("recipe", ["A", "B"])
def test_jax_augment_equals_tf_transform_with_its_sampled_parameters(recipe):
    config = RECIPES[recipe]
    x = _image((5, 14, 18, 3), seed=6)
    key = jax.random.PRNGKey(42)
    got = np.asarray(jax.jit(make_jax_augment(config))(jnp.asarray(x), key))
    params = jax_sample_transform_params(config, key, 5, 14, 18)
    for i in range(5):
        p = {k: np.asarray(v[i]).item() for k, v in params.items()}
        want = apply_affine(x[i], **p, fill_mode=config.fill_mode, cval=config.cval).numpy()
        np.testing.assert_allclose(got[i], want, atol=5e-5)


def _keras_samples(config, shape, n, seed=0):
    gen = keras_image.ImageDataGenerator(
        rotation_range=config.rotation_range, width_shift_range=config.width_shift_range,
        height_shift_range=config.height_shift_range, shear_range=config.shear_range,
        zoom_range=config.zoom_range, horizontal_flip=config.horizontal_flip,
        vertical_flip=config.vertical_flip)
    np.random.seed(seed)
    draws = [gen.get_random_transform(shape) for _ in range(n)]
    return {k: np.array([float(d[k]) for d in draws]) for k in
            ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical")}


CONFIGS = [
    RECIPES["B"],
    AugmentConfig(rotation_range=10, width_shift_range=0.1, height_shift_range=0.15, zoom_range=(0.7, 1.1)),
    # Keras' other shift kinds: int n -> integers 0..n-1 with a sign; float >= 1 -> pixels.
    AugmentConfig(width_shift_range=4, height_shift_range=2.5, vertical_flip=True),
    AugmentConfig(width_shift_range=(0.1, 0.3), height_shift_range=(1, 3)),
]


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_sampled_parameters_follow_keras_distributions(config):
    """Two-sample KS test (and exact support) against ImageDataGenerator.get_random_transform."""
    shape, n = (30, 20, 3), 4000
    ref = _keras_samples(config, shape, n)
    ours_tf = {k: v.numpy().astype(np.float64) for k, v in
               sample_transform_params(config, n, 30.0, 20.0, tf.constant([3, 4], tf.int64)).items()}
    ours_jax = {k: np.asarray(v, np.float64) for k, v in
                jax_sample_transform_params(config, jax.random.PRNGKey(0), n, 30, 20).items()}
    for ours in (ours_tf, ours_jax):
        for k, want in ref.items():
            got = ours[k]
            assert got.min() >= want.min() - 0.05 * (np.ptp(want) + 1e-9) - 1e-6, k
            assert got.max() <= want.max() + 0.05 * (np.ptp(want) + 1e-9) + 1e-6, k
            if np.ptp(want) == 0:
                np.testing.assert_allclose(got, want[0], err_msg=k)
                continue
            assert stats.ks_2samp(got, want).pvalue > 1e-3, (k, got[:10], want[:10])
            if len(np.unique(want)) < 20:  # discrete: same support
                assert set(np.unique(np.round(got, 5))) == set(np.unique(np.round(want, 5))), k
    # zx and zy are drawn independently.
    if config.zoom_bounds != (1.0, 1.0):
        assert abs(np.corrcoef(ours_tf["zx"], ours_tf["zy"])[0, 1]) < 0.06


def test_documented_ranges_of_recipe_b():
    p = {k: v.numpy() for k, v in
         sample_transform_params(RECIPES["B"], 20000, 150.0, 150.0, tf.constant([0, 0], tf.int64)).items()}
    assert -40 <= p["theta"].min() and p["theta"].max() <= 40 and p["theta"].std() == pytest.approx(80 / 12**0.5, rel=0.03)
    for k in ("tx", "ty"):
        assert np.abs(p[k]).max() <= 0.2 * 150 and np.abs(p[k]).max() > 0.19 * 150
    assert np.abs(p["shear"]).max() <= 0.2
    assert 0.8 <= p["zx"].min() and p["zy"].max() <= 1.2
    assert p["flip_horizontal"].mean() == pytest.approx(0.5, abs=0.02) and not p["flip_vertical"].any()


def test_parse_augment():
    assert parse_augment("none") is None and parse_augment("") is None and parse_augment(None) is None
    assert parse_augment("A") == RECIPES["A"] and parse_augment("b") == RECIPES["B"]
    c = parse_augment("rotation_range=10,zoom_range=0.1,width_shift_range=0.1,height_shift_range=0.1")
    assert c == RECIPES["A"]
    c = parse_augment("B,horizontal_flip=false,zoom_range=0.8:1.3,fill_mode=reflect,width_shift_range=5")
    assert not c.horizontal_flip and c.zoom_bounds == (0.8, 1.3) and c.fill_mode == "reflect"
    assert c.width_shift_range == 5 and isinstance(c.width_shift_range, int) and c.rotation_range == 40
    with pytest.raises(ValueError, match="unknown parameter"):
        parse_augment("rotation=10")
    with pytest.raises(ValueError, match="unknown recipe"):
        parse_augment("C")
    with pytest.raises(ValueError, match="fill_mode"):
        parse_augment("fill_mode=mirror")


def test_save_augment_preview(tmp_path):
    import matplotlib.image

    x = (np.random.default_rng(0).random((3, 28, 28)) * 255).astype(np.uint8)
    path = save_augment_preview(x, "A", str(tmp_path / "preview.png"), n_augmented=4)
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > img.shape[0]
