"""Image-folder datasets: folder trees and .tar.gz archives, errors, extraction once, caches, CIFAR-10."""

import os
import tarfile

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxcnn.data import image_folder  # noqa: E402
from jaxcnn.data.errors import DataError  # noqa: E402
from jaxcnn.data.image_folder import (  # noqa: E402
    CIFAR10_CLASSES,
    extract_archive,
    load_image_folder,
)
from jaxcnn.data.sources import load_dataset  # noqa: E402

CLASSES = ("zebra", "ant", "moth")  # written unsorted: labels must follow sorted names


def _write_tree(root, n=(3, 2), size=(6, 5), corrupt=True):
    """split/class/i.png|jpg with known pixels (PNG is lossless); returns {(split, class): [arrays]}."""
    rng = np.random.default_rng(0)
    pixels = {}
    for split, count in zip(("train", "test"), n):
        for c in CLASSES:
            d = os.path.join(root, split, c)
            os.makedirs(d)
            for i in range(count):
                img = rng.integers(0, 256, size + (3,), dtype=np.uint8)
                with open(os.path.join(d, f"{i:03d}.png"), "wb") as f:
                    f.write(tf.io.encode_png(img).numpy())
                pixels.setdefault((split, c), []).append(img)
    with open(os.path.join(root, "train", "ant", "notes.txt"), "w") as f:
        f.write("not an image")
    if corrupt:
        with open(os.path.join(root, "train", "moth", "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 this is no jpeg")
    return pixels


def _tar(src, path):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="tree")  # a wrapper folder, as many archives have
    return path


def _expected(pixels, split, classes):
    xs, ys = [], []
    for label, c in enumerate(classes):
        xs += pixels[(split, c)]
        ys += [label] * len(pixels[(split, c)])
    return np.stack(xs), np.array(ys)


def test_folder_tree_sorted_classes_pixels_and_skip(tmp_path):
    pixels = _write_tree(tmp_path / "data")
    with pytest.warns(UserWarning, match=r"skipped 1 file.*broken\.jpg"):
        ds = load_image_folder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    assert ds.class_names == ("ant", "moth", "zebra")
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        want_x, want_y = _expected(pixels, split, ds.class_names)
        assert x.dtype == np.uint8 and x.shape == want_x.shape
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)


def test_corrupt_file_raise_names_it(tmp_path):
    _write_tree(tmp_path / "data")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        load_image_folder(str(tmp_path / "data"), on_error="raise", use_cache=False)


def test_class_subset_labels_in_given_order_and_resize(tmp_path):
    pixels = _write_tree(tmp_path / "data", corrupt=False)
    ds = load_image_folder(str(tmp_path / "data"), classes=("zebra", "ant"), image_size=(8, 4),
                           use_cache=False)
    assert ds.class_names == ("zebra", "ant")
    assert ds.x_train.shape == (6, 8, 4, 3) and ds.x_test.shape == (4, 8, 4, 3)
    np.testing.assert_array_equal(ds.y_train, [0, 0, 0, 1, 1, 1])
    want = tf.cast(tf.round(tf.image.resize(pixels[("train", "zebra")][0], (8, 4))), tf.uint8).numpy()
    np.testing.assert_array_equal(ds.x_train[0], want)
    with pytest.raises(DataError, match="no class folder"):
        load_image_folder(str(tmp_path / "data"), classes=("cat",), use_cache=False)


def test_mixed_sizes_need_image_size(tmp_path):
    _write_tree(tmp_path / "data", corrupt=False)
    odd = np.zeros((9, 9, 3), np.uint8)
    with open(tmp_path / "data" / "test" / "ant" / "odd.png", "wb") as f:
        f.write(tf.io.encode_png(odd).numpy())
    with pytest.raises(DataError, match=r"odd\.png: image size \(9, 9\) differs from \(6, 5\); pass image_size"):
        load_image_folder(str(tmp_path / "data"), use_cache=False)
    ds = load_image_folder(str(tmp_path / "data"), image_size=7, use_cache=False)
    assert ds.x_test.shape[1:] == (7, 7, 3)


def test_archive_streamed_equals_folder_and_npz_cache(tmp_path, monkeypatch):
    pixels = _write_tree(tmp_path / "data")
    archive = _tar(tmp_path / "data", str(tmp_path / "tree.tar.gz"))
    cache = str(tmp_path / "cache")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = load_image_folder(archive, cache_dir=cache)
    assert not os.path.exists(os.path.join(cache, "extracted"))  # streamed: nothing extracted
    want_x, want_y = _expected(pixels, "train", ds.class_names)
    np.testing.assert_array_equal(ds.x_train, want_x)
    np.testing.assert_array_equal(ds.y_train, want_y)
    assert len(os.listdir(os.path.join(cache, "arrays"))) == 1

    def no_decode(*a, **k):
        raise AssertionError("decoded again despite the .npz cache")

    with pytest.warns(UserWarning, match="skipped 1"):
        subset = load_image_folder(archive, classes=("zebra", "moth"), use_cache=False)
    monkeypatch.setattr(image_folder, "decode_images", no_decode)
    again = load_image_folder(archive, cache_dir=cache)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    assert again.class_names == ds.class_names
    # A class subset comes from the cached whole dataset, as if decoded directly.
    sub = load_image_folder(archive, cache_dir=cache, classes=("zebra", "moth"))
    assert sub.class_names == ("zebra", "moth")
    for a, b in ((sub.x_train, subset.x_train), (sub.y_train, subset.y_train),
                 (sub.x_test, subset.x_test), (sub.y_test, subset.y_test)):
        np.testing.assert_array_equal(a, b)
    # A changed archive is a different cache entry.
    os.utime(archive, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load_image_folder(archive, cache_dir=cache)


def test_extract_once_and_redo_interrupted(tmp_path, monkeypatch):
    _write_tree(tmp_path / "data", corrupt=False)
    archive = _tar(tmp_path / "data", str(tmp_path / "tree.tar.gz"))
    cache = str(tmp_path / "cache")
    opened = []
    real_open = tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))

    target = extract_archive(archive, cache)
    marker = os.path.join(target, image_folder._COMPLETE)
    assert os.path.isfile(marker) and os.path.isdir(os.path.join(target, "tree", "train", "ant"))
    mtime = os.stat(marker).st_mtime_ns
    ds = load_image_folder(archive, cache_dir=cache, extract=True, use_cache=False)
    assert ds.class_names == ("ant", "moth", "zebra") and len(ds.x_train) == 9
    assert extract_archive(archive, cache) == target
    assert len(opened) == 1 and os.stat(marker).st_mtime_ns == mtime  # extracted exactly once

    # An interrupted extraction (no marker) is thrown away and done again.
    os.remove(marker)
    with open(os.path.join(target, "partial-leftover"), "w") as f:
        f.write("x")
    assert extract_archive(archive, cache) == target
    assert len(opened) == 2 and os.path.isfile(marker)
    assert not os.path.exists(os.path.join(target, "partial-leftover"))


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_image_folder(str(tmp_path / "missing"))
    (tmp_path / "flat" / "cats").mkdir(parents=True)
    (tmp_path / "flat" / "dogs").mkdir()
    with pytest.raises(DataError, match="split folders"):
        load_image_folder(str(tmp_path / "flat"))
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match="bad.tar.gz"):
        load_image_folder(str(bad), use_cache=False)


def test_image_folder_route_in_registry(tmp_path):
    _write_tree(tmp_path / "data", corrupt=False)
    ds = load_dataset(f"image_folder:{tmp_path / 'data'}", use_cache=False)
    assert ds.num_classes == 3 and ds.input_shape == (6, 5, 3)


@pytest.fixture(scope="session")
def persistent_cache(request, tmp_path_factory):
    """$JAXCNN_CACHE_DIR if set, else pytest's own cache folder: decoding runs once per machine."""
    if os.environ.get("JAXCNN_CACHE_DIR"):
        return os.environ["JAXCNN_CACHE_DIR"]
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return str(cache.mkdir("jaxcnn-cache")) if cache else str(tmp_path_factory.mktemp("jaxcnn-cache"))


def test_real_cifar10_archive(data_dir, persistent_cache):
    ds = load_dataset("cifar10", data_dir=data_dir, cache_dir=persistent_cache)
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert ds.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(ds.y_train), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert 100 < ds.x_test.mean() < 140 and ds.x_test.std() > 50  # real photos, not blanks


# -- color mode, empty classes, warnings from the cache ------------------------------------------------
def _mixed_tree(root):
    """train/test with a grayscale PNG first (sorted), then RGB and RGBA ones, in two classes."""
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            d = os.path.join(root, split, c)
            os.makedirs(d)
            for i, ch in enumerate((1, 3, 4)):
                img = rng.integers(0, 256, (6, 5, ch), dtype=np.uint8)
                with open(os.path.join(d, f"{i}.png"), "wb") as f:
                    f.write(tf.io.encode_png(img).numpy())


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale", "rgba", None])
def test_color_mode_sets_the_channels_of_every_image_as_keras_does(tmp_path, color_mode):
    keras = pytest.importorskip("keras")
    _mixed_tree(tmp_path / "data")
    kwargs = {} if color_mode is None else {"color_mode": color_mode}  # None: the default, rgb
    ds = load_image_folder(str(tmp_path / "data"), use_cache=False, **kwargs)
    want = keras.utils.image_dataset_from_directory(
        str(tmp_path / "data" / "train"), image_size=(6, 5), shuffle=False, batch_size=None, **kwargs)
    x = np.stack([np.asarray(img) for img, _ in want])
    y = np.array([int(label) for _, label in want])
    assert ds.x_train.shape == x.shape and x.shape[-1] == {"grayscale": 1, "rgba": 4}.get(color_mode, 3)
    np.testing.assert_array_equal(ds.x_train, np.round(x).astype(np.uint8))
    np.testing.assert_array_equal(ds.y_train, y)
    assert ds.x_test.shape[-1] == x.shape[-1]
    with pytest.raises(ValueError, match="color_mode"):
        load_image_folder(str(tmp_path / "data"), color_mode="cmyk", use_cache=False)


def test_an_empty_class_folder_warns_or_raises(tmp_path):
    _write_tree(tmp_path / "data", corrupt=False)
    os.remove(tmp_path / "data" / "train" / "ant" / "notes.txt")
    for f in os.listdir(tmp_path / "data" / "test" / "moth"):
        os.remove(tmp_path / "data" / "test" / "moth" / f)
    with pytest.warns(UserWarning, match=r"no images of class\(es\) 'moth' in the test split"):
        ds = load_image_folder(str(tmp_path / "data"), use_cache=False)
    assert ds.class_names == ("ant", "moth", "zebra") and 1 not in ds.y_test
    with pytest.raises(DataError, match=r"'moth' in the test split"):
        load_image_folder(str(tmp_path / "data"), use_cache=False, on_error="raise")


def test_the_skip_warning_repeats_on_a_cached_reload(tmp_path):
    _write_tree(tmp_path / "data")
    cache = str(tmp_path / "cache")
    for _ in range(2):  # decoded, then from the .npz cache
        with pytest.warns(UserWarning) as record:
            ds = load_image_folder(str(tmp_path / "data"), cache_dir=cache)
        messages = " ".join(str(w.message) for w in record)
        assert "skipped 1 file(s)" in messages and "broken.jpg" in messages, messages
        assert "ignored 1 file(s) without an image extension" in messages
    assert os.listdir(os.path.join(cache, "arrays")) and ds.x_train.shape[0] == 3 * 3
