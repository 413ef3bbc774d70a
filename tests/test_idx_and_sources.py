import ast
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxcnn.data import DataError, load_dataset, load_idx_dataset, read_idx, write_idx
from jaxcnn.data.sources import dataset_dir, from_arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    arr = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = str(tmp_path / f"a-idx3-ubyte{suffix}")
    write_idx(path, arr)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def _write_mnist_like(folder, n_train=12, n_test=5, gz=True, labels_hi=9):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{sfx}"), rng.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{sfx}"),
                  rng.integers(0, labels_hi + 1, n).astype(np.uint8))


def test_idx_folder_loads(tmp_path):
    _write_mnist_like(tmp_path / "m", gz=False)
    ds = load_idx_dataset(str(tmp_path / "m"))
    assert ds.x_train.shape == (12, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)
    assert ds.y_train.dtype == np.int32 and ds.num_classes == 10


def test_missing_file_named(tmp_path):
    _write_mnist_like(tmp_path / "m")
    os.remove(tmp_path / "m" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*not found"):
        load_idx_dataset(str(tmp_path / "m"))


def test_wrong_magic_named(tmp_path):
    path = str(tmp_path / "bad-idx3-ubyte")
    with open(path, "wb") as f:
        f.write(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"bad-idx3-ubyte: wrong magic number 0x12340803"):
        read_idx(path)


def test_truncated_body_named(tmp_path):
    path = str(tmp_path / "t-idx3-ubyte")
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    with open(path, "r+b") as f:
        f.truncate(16 + 100)
    with pytest.raises(DataError, match=r"t-idx3-ubyte: .*\(truncated\)"):
        read_idx(path)


def test_corrupt_gzip_named(tmp_path):
    path = str(tmp_path / "c-idx3-ubyte.gz")
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"c-idx3-ubyte.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_image_label_count_mismatch(tmp_path):
    _write_mnist_like(tmp_path / "m")
    write_idx(str(tmp_path / "m" / "train-labels-idx1-ubyte.gz"), np.zeros(11, np.uint8))
    with pytest.raises(DataError, match="12 images but .* 11 labels"):
        load_idx_dataset(str(tmp_path / "m"))


def test_labels_out_of_range(tmp_path):
    _write_mnist_like(tmp_path / "m", labels_hi=12)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 9\]"):
        load_idx_dataset(str(tmp_path / "m"))


def test_empty_split(tmp_path):
    _write_mnist_like(tmp_path / "m", n_test=0)
    with pytest.raises(DataError, match="empty"):
        load_idx_dataset(str(tmp_path / "m"))


def test_array_source_checks():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        from_arrays(np.zeros((3, 4, 4, 1)), [0, 1], np.zeros((1, 4, 4, 1)), [0], class_names=["a", "b"])
    with pytest.raises(DataError, match=r"labels must lie in \[0, 1\]"):
        from_arrays(np.zeros((2, 4, 4, 1)), [0, 2], np.zeros((1, 4, 4, 1)), [0], class_names=["a", "b"])


def test_dataset_dir_env_and_error(tmp_path, monkeypatch):
    (tmp_path / "fashion-mnist").mkdir()
    monkeypatch.setenv("JAXCNN_DATA_DIR", str(tmp_path))
    assert dataset_dir("fashion-mnist") == str(tmp_path / "fashion-mnist")
    with pytest.raises(DataError, match="JAXCNN_DATA_DIR"):
        dataset_dir("no-such-dataset")


def test_a_given_data_dir_without_the_dataset_is_an_error_not_the_bundled_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXCNN_DATA_DIR", raising=False)
    assert dataset_dir("mnist").endswith(os.path.join("_datasets", "mnist"))  # nothing given: bundled
    (tmp_path / "empty").mkdir()
    (tmp_path / "other" / "cifar10-jpeg").mkdir(parents=True)
    for root, problem in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "is empty"),
                          (tmp_path / "other", "holds no mnist/ folder")):
        with pytest.raises(DataError, match=problem) as e:
            load_dataset("mnist", data_dir=str(root))
        assert str(e.value).startswith(os.path.join(str(root), "mnist") + ":")
    monkeypatch.setenv("JAXCNN_DATA_DIR", str(tmp_path / "missing"))  # a bad environment variable too
    with pytest.raises(DataError, match="JAXCNN_DATA_DIR .*missing does not exist"):
        load_dataset("mnist")


def test_data_dir_may_be_the_dataset_folder_itself(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXCNN_DATA_DIR", raising=False)
    _write_mnist_like(str(tmp_path / "datasets" / "mnist"))
    parent = load_dataset("mnist", data_dir=str(tmp_path / "datasets"))
    own = load_dataset("mnist", data_dir=str(tmp_path / "datasets" / "mnist") + os.sep)
    np.testing.assert_array_equal(own.x_train, parent.x_train)
    assert own.name == "mnist" and len(own.x_test) == 5
    monkeypatch.setenv("JAXCNN_DATA_DIR", str(tmp_path / "datasets" / "mnist"))  # the environment too
    assert dataset_dir("mnist") == str(tmp_path / "datasets" / "mnist")
    with pytest.raises(DataError, match="holds no fashion-mnist/ folder"):  # another dataset's folder
        load_dataset("fashion_mnist", data_dir=str(tmp_path / "datasets" / "mnist"))


def test_real_mnist_and_fashion(data_dir):
    mnist = load_dataset("mnist", data_dir=data_dir)
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert list(mnist.y_train[:6]) == [5, 0, 4, 1, 9, 2] and list(mnist.y_test[:6]) == [7, 2, 1, 0, 4, 1]
    assert np.bincount(mnist.y_train).min() > 5000
    fashion = load_dataset("fashion_mnist", data_dir=data_dir)
    assert fashion.x_train.shape == (60000, 28, 28, 1) and fashion.class_names[9] == "Ankle boot"


def test_bundled_mnist_matches_shared(data_dir, monkeypatch):
    monkeypatch.delenv("JAXCNN_DATA_DIR")
    bundled = load_dataset("mnist")
    shared = load_dataset("mnist", data_dir=data_dir)
    np.testing.assert_array_equal(bundled.x_test, shared.x_test)


def test_take_keeps_every_class_of_a_split_stored_class_by_class():
    from jaxcnn.data.sources import Dataset

    y = np.repeat(np.arange(2, dtype=np.int32), 50)  # all cats, then all dogs (as image folders load)
    x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    small = Dataset("t", x, y, x, y, class_names=("cat", "dog")).take(10, 4)
    np.testing.assert_array_equal(np.bincount(small.y_train), [5, 5])
    np.testing.assert_array_equal(np.bincount(small.y_test), [2, 2])
    np.testing.assert_array_equal(small.x_train[:, 0, 0, 0], [0, 1, 2, 3, 4, 50, 51, 52, 53, 54])  # original order


def test_take_limits_nest_and_stay_close_to_the_first_examples_on_shuffled_data():
    from jaxcnn.data.sources import spread_indices

    y = np.random.default_rng(0).integers(0, 10, 1000)
    big, small = spread_indices(y, 96), spread_indices(y, 64)
    np.testing.assert_array_equal(big[spread_indices(y[big], 64)], small)
    assert np.all(np.diff(small) > 0) and small[-1] < 200


DATA_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxcnn", "data")


def _data_imports(path):
    """(module-level, nested) names of the jaxcnn.data modules that the file at `path` imports."""
    top, nested = set(), set()
    tree = ast.parse(open(path).read())
    module_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxcnn.data"):
            names = ([node.module.split(".")[2]] if node.module != "jaxcnn.data"
                     else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[2] for a in node.names if a.name.startswith("jaxcnn.data.")]
        (top if id(node) in module_level else nested).update(names)
    return top, nested


def test_data_modules_import_only_modules_below_them_without_lazy_workarounds():
    files = {os.path.basename(p)[:-3]: p for p in glob.glob(os.path.join(DATA_PACKAGE, "*.py"))}
    graph = {}
    for name, path in files.items():
        if name == "__init__":
            continue
        top, nested = _data_imports(path)
        assert not nested, f"{name}.py imports {sorted(nested)} inside a function"
        graph[name] = top & set(files)
    order, seen = [], set()

    def visit(name, stack):
        assert name not in stack, f"import loop: {' -> '.join(stack + [name])}"
        if name not in seen:
            for dep in sorted(graph[name]):
                visit(dep, stack + [name])
            seen.add(name)
            order.append(name)

    for name in sorted(graph):
        visit(name, [])
    assert graph["base"] <= {"errors"} and "sources" not in graph["image_folder"]


def test_each_data_module_imports_alone_and_the_package_registers_every_source():
    code = ("import importlib, sys; importlib.import_module(sys.argv[1]); import jaxcnn.data as d; "
            "print(d.list_datasets(), d.list_sources())")
    for module in ("image_folder", "records", "sources", "audio", "video", "base", "pipeline"):
        out = subprocess.run([sys.executable, "-c", code, f"jaxcnn.data.{module}"], capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == ("['cifar10', 'fashion_mnist', 'mnist', 'moving_digits', 'spoken_digits'] "
                               "['image_folder', 'prepared', 'tfds']"), module


def test_a_registered_source_is_found_by_its_prefix(monkeypatch):
    from jaxcnn.data import base

    monkeypatch.setattr(base, "_SOURCES", dict(base._SOURCES))
    monkeypatch.setattr(base, "_SPECS", dict(base._SPECS))
    x = np.zeros((4, 2, 2, 1), np.uint8)

    @base.register_source("zeros", "N")
    def zeros(spec, data_dir=None, scale=1):
        n = int(spec) * scale
        return from_arrays(x[:n], np.zeros(n), x[:n], np.zeros(n), name=f"zeros:{spec}")

    assert len(load_dataset("zeros:2", scale=2).x_train) == 4
    with pytest.raises(DataError, match=r"unknown dataset 'nozeros:2'.*zeros:N"):
        load_dataset("nozeros:2")
