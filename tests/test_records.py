"""Prepared datasets (jaxcnn.data.records): `jaxcnn prepare`, reading by index, bad input, pipelines.

Tiny image folders are made here; the CIFAR-10 JPEG archive of the shared datasets goes through
the command with a small limit.
"""

import json
import os

import numpy as np
import pytest

from jaxcnn.data import DataError, load_dataset
from jaxcnn.data import records
from jaxcnn.data.pipeline import ArrayPipeline


def _png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """train/ and test/ with 3 classes of 10x12 RGB PNGs, one corrupt file, one text file."""
    root = tmp_path_factory.mktemp("imgs") / "shapes"
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("test", 3)):
        for c in ("circle", "square", "star"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                _png(d / f"{i:02d}.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    (root / "train" / "square" / "05.png").write_bytes(b"not a png")  # replaces a good one
    (root / "train" / "star" / "notes.txt").write_text("ignored")
    return str(root)


def _prepare(src, out, **kw):
    kw.setdefault("progress", False)
    with pytest.warns(UserWarning):
        return records.prepare(src, str(out), **kw)


def test_prepared_folder_holds_what_load_image_folder_loads(folder, tmp_path):
    manifest = _prepare(f"image_folder:{folder}", tmp_path / "p", shard_size=4)
    ds = load_dataset(f"prepared:{tmp_path / 'p'}", verify=True)
    with pytest.warns(UserWarning, match="skipped 1 file"):
        want = load_dataset(f"image_folder:{folder}", use_cache=False)
    assert ds.class_names == want.class_names == ("circle", "square", "star")
    assert manifest["splits"]["train"]["num_examples"] == 20 and manifest["splits"]["train"]["skipped"] == 1
    assert manifest["splits"]["train"]["class_counts"] == [7, 6, 7]
    assert len(manifest["splits"]["train"]["files"]) == 6  # 21 files in shards of 4
    for entry in manifest["splits"]["train"]["files"]:
        assert records.sha256_file(str(tmp_path / "p" / entry["path"])) == entry["sha256"]
    for x, y, wx, wy in ((ds.x_train, ds.y_train, want.x_train, want.y_train),
                         (ds.x_test, ds.y_test, want.x_test, want.y_test)):
        assert x.shape == wx.shape and len(x) == len(y)
        np.testing.assert_array_equal(x[np.arange(len(x))], wx)
        np.testing.assert_array_equal(y, wy)
    order = np.array([19, 0, 7, 7, 3])  # any order, repeats, across shards
    np.testing.assert_array_equal(ds.x_train[order], want.x_train[order])
    np.testing.assert_array_equal(ds.x_train[5:9][np.arange(4)], want.x_train[5:9])  # a view
    small, want_small = ds.take(6, 3), want.take(6, 3)  # spread over the class-sorted split, as Dataset's
    assert sorted(set(small.y_train.tolist())) == [0, 1, 2]
    np.testing.assert_array_equal(small.y_train, want_small.y_train)
    np.testing.assert_array_equal(np.asarray(small.x_train), want_small.x_train)
    with pytest.raises(DataError, match=r"05\.png"):
        records.prepare(f"image_folder:{folder}", str(tmp_path / "strict"), on_error="raise", progress=False)


def test_an_interrupted_preparation_continues_where_it_stopped(folder, tmp_path, monkeypatch):
    clean = _prepare(f"image_folder:{folder}", tmp_path / "clean", shard_size=4)
    real, calls = records.write_shard, []

    def failing(path, images):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C during the third shard
        return real(path, images)

    monkeypatch.setattr(records.writer, "write_shard", failing)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        records.prepare(f"image_folder:{folder}", str(out), shard_size=4, progress=False)
    assert not (out / records.MANIFEST).exists()
    with pytest.raises(DataError, match="did not finish"):
        load_dataset(f"prepared:{out}")
    done = {p: os.path.getmtime(p) for p in calls[:2]}
    calls.clear()
    monkeypatch.setattr(records.writer, "write_shard", lambda p, im: (calls.append(p), real(p, im))[1])
    resumed = _prepare(f"image_folder:{folder}", out, shard_size=4)
    assert not set(done) & set(calls) and len(calls) == 9 - 2  # 6 train + 3 test shards, 2 kept
    assert all(os.path.getmtime(p) == t for p, t in done.items())
    for split in ("train", "test"):
        assert [f["sha256"] for f in resumed["splits"][split]["files"]] == \
               [f["sha256"] for f in clean["splits"][split]["files"]]
    # An unfinished folder is continued only with the same source and options.
    monkeypatch.setattr(records.writer, "write_shard", failing)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        records.prepare(f"image_folder:{folder}", str(tmp_path / "half"), shard_size=4, progress=False)
    with pytest.raises(DataError, match="other data or options"):
        records.prepare(f"image_folder:{folder}", str(tmp_path / "half"), shard_size=5, progress=False)


def test_cifar10_archive_through_the_command(data_dir, tmp_path, capsys):
    from jaxcnn.cli import main

    archive = os.path.join(data_dir, "cifar10-jpeg", "cifar10-jpeg.tar.gz")
    out = str(tmp_path / "cifar")
    assert main(["prepare", f"image_folder:{archive}", "--limit", "30", "--out", out, "--quiet",
                 "--shard-size", "16"]) == 0
    assert "train 30, test 30 examples of (32, 32, 3), 10 classes" in capsys.readouterr().out
    ds = load_dataset(f"prepared:{out}", verify=True)
    assert ds.class_names[:2] == ("airplane", "automobile") and np.bincount(ds.y_train).tolist() == [3] * 10
    images = ds.x_train[np.arange(30)]
    assert images.dtype == np.uint8 and images.std() > 20  # real photographs, not blank records
    assert main(["prepare", f"image_folder:{archive}", "--limit", "30", "--out", out, "--quiet",
                 "--shard-size", "16"]) == 0  # done already: nothing written
    assert main(["prepare", f"image_folder:{archive}", "--limit", "40", "--out", out, "--quiet"]) == 2
    assert "holds a prepared dataset of other data or options" in capsys.readouterr().err
    assert main(["prepare", "image_folder:/nonexistent/folder", "--out", str(tmp_path / "x")]) == 2
    assert "jaxcnn: error: /nonexistent/folder: image folder or archive not found" in capsys.readouterr().err


# -- bad input: every problem names the file ----------------------------------------------------
@pytest.fixture()
def prepared(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (20, 6, 6, 1), dtype=np.uint8)
    y = np.arange(20) % 4
    out = str(tmp_path / "tiny")
    records.prepare_arrays(out, {"train": (x, y), "test": (x[:8], y[:8])}, list("abcd"), name="tiny",
                           shard_size=8, progress=False)
    return out, x, y


def _shard(out, split="train", k=0):
    return os.path.join(out, json.load(open(os.path.join(out, records.MANIFEST)))["splits"][split]["files"][k]["path"])


def test_missing_truncated_or_changed_files_are_named(prepared):
    out, x, y = prepared
    np.testing.assert_array_equal(records.load_prepared(out, "train")[np.arange(20)], x)
    shard = _shard(out, k=1)
    data = open(shard, "rb").read()
    os.remove(shard)
    with pytest.raises(DataError, match=f"{shard}: record file missing"):
        records.load_prepared(out)
    open(shard, "wb").write(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{shard}: .* bytes but the manifest says {len(data)}: the file is truncated"):
        records.load_prepared(out, "train")
    changed = bytearray(data)
    changed[200] ^= 0xFF  # same size, other bytes: only the checksum sees it
    open(shard, "wb").write(bytes(changed))
    records.load_prepared(out, "train")
    with pytest.raises(DataError, match=f"{shard}: sha256 differs from the manifest"):
        records.load_prepared(out, "train", verify=True)
    labels = os.path.join(out, "train-labels.npy")
    os.remove(labels)
    with pytest.raises(DataError, match=f"{labels}: labels file missing"):
        records.load_prepared(out, "train")


def test_zero_records_count_mismatch_and_undecodable_records(prepared, tmp_path, monkeypatch):
    out, x, y = prepared
    path = os.path.join(out, records.MANIFEST)
    manifest = json.load(open(path))
    shard = _shard(out, "test")
    bad = json.loads(json.dumps(manifest))
    bad["splits"]["test"]["files"][0]["num_records"] = 9
    json.dump(bad, open(path, "w"))
    with pytest.raises(DataError, match=f"{shard}: holds 8 records but the manifest says 9"):
        records.load_prepared(out, "test")
    # A split whose files hold zero records (written so: the manifest agrees).
    entry = records.write_shard(shard, np.zeros((0, 6, 6, 1), np.uint8))
    np.save(os.path.join(out, "test-labels.npy"), np.zeros(0, np.int32))
    bad["splits"]["test"].update(num_examples=0, files=[entry])
    json.dump(bad, open(path, "w"))
    with pytest.raises(DataError, match=f"{path}: split 'test' has zero records"):
        records.load_prepared(out, "test")
    # Records of the wrong length (not an image of the manifest's shape) fail when read.
    entry = records.write_shard(_shard(out, "train", 2), np.zeros((4, 3, 3, 1), np.uint8))
    manifest["splits"]["train"]["files"][2] = entry
    json.dump(manifest, open(path, "w"))
    split = records.load_prepared(out, "train")
    np.testing.assert_array_equal(split[np.arange(16)], x[:16])  # the intact shards read fine
    with pytest.raises(DataError, match=f"{_shard(out, 'train', 2)}: record 1 holds 9 bytes, not an image"):
        split[np.array([3, 17])]
    with pytest.raises(DataError, match="not found: not a prepared dataset"):
        records.load_prepared(str(tmp_path))
    np.testing.assert_array_equal(np.asarray(split[:5]), x[:5])  # a small view converts
    with pytest.raises(TypeError, match="read by index"):
        monkeypatch.setattr(records.reader, "ARRAY_LIMIT_BYTES", 100)
        np.asarray(split)  # a big split is never loaded whole by accident


# -- pipelines: a source gives the batches an array gives; each process reads only its slice ------
@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_pipeline_batches_from_records_equal_those_from_arrays(prepared, backend):
    out, x, y = prepared
    split = records.load_prepared(out, "train")
    kw = dict(batch_size=4, seed=3, backend=backend)
    a, b = ArrayPipeline(x, y, **kw), ArrayPipeline(split, split.labels, **kw)
    for got, want in ((b.train_batches(1, start_step=2), a.train_batches(1, start_step=2)),
                      (b.eval_batches(), a.eval_batches())):
        got, want = list(got), list(want)
        assert len(got) == len(want) > 0
        for g, w in zip(got, want):
            for k in w:
                np.testing.assert_array_equal(g[k], w[k], err_msg=k)


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_a_record_that_fails_to_decode_stops_the_epoch_with_an_error_naming_its_file(prepared, backend):
    out, x, y = prepared
    path = os.path.join(out, records.MANIFEST)
    manifest = json.load(open(path))
    shard = _shard(out, "train", 2)
    manifest["splits"]["train"]["files"][2] = records.write_shard(shard, np.zeros((4, 3, 3, 1), np.uint8))
    json.dump(manifest, open(path, "w"))
    split = records.load_prepared(out, "train")
    pipe = ArrayPipeline(split, split.labels, 4, seed=0, backend=backend)
    with pytest.raises(DataError, match=f"^{shard}: record \\d holds 9 bytes"):  # itself, not tf's wrapper
        list(pipe.train_batches(0))


def test_each_process_reads_only_its_slice_of_every_global_batch(prepared):
    out, x, y = prepared
    read = []
    for p in range(2):
        split = records.load_prepared(out, "train")
        split.reads = []
        pipe = ArrayPipeline(split, split.labels, 5, seed=1, backend="numpy", process_index=p, process_count=2)
        batches = list(pipe.train_batches(0))
        assert len(batches) == 2
        read.append(split.reads)
    assert len(read[0]) == len(read[1]) == 10 and not set(read[0]) & set(read[1])
    assert sorted(read[0] + read[1]) == list(range(20))


def test_an_experiment_trains_from_prepared_records(data_dir, tmp_path, capsys):
    from jaxcnn.cli import main

    out = str(tmp_path / "mnist")
    assert main(["prepare", "mnist", "--limit", "96", "--out", out, "--quiet", "--data-dir", data_dir]) == 0
    workdir = tmp_path / "run"
    assert main(["train", "mnist_cnn", "--data", f"prepared:{out}", "--limit", "64", "--epochs", "1",
                 "--batch-size", "32", "--workdir", str(workdir), "--quiet"]) == 0
    metrics = json.load(open(workdir / "metrics.json"))
    assert metrics["dataset"] == f"prepared:{out}"
    assert metrics["train_examples"] == 64 and metrics["test_examples"] == 64
    assert (workdir / "errors.png").exists()  # the report reads its images from the records


def test_fsdd_spectrograms_are_prepared_as_float32_records_and_train(data_dir, tmp_path, capsys):
    from jaxcnn.cli import main

    out = str(tmp_path / "fsdd")
    assert main(["prepare", "spoken_digits", "--limit", "30", "--out", out, "--quiet", "--data-dir", data_dir]) == 0
    assert "train 30, test 30 examples of (64, 64, 1), 10 classes" in capsys.readouterr().out
    ds = load_dataset(f"prepared:{out}", verify=True)
    assert ds.manifest["dtype"] == "float32" and ds.x_train.dtype == np.float32
    want = load_dataset("spoken_digits", data_dir=data_dir).take(30, 30)
    np.testing.assert_array_equal(ds.x_train[np.arange(30)], want.x_train)  # bit for bit, not rounded to uint8
    np.testing.assert_array_equal(ds.y_test, want.y_test)
    workdir = tmp_path / "run"
    assert main(["train", "spoken_digits_cnn", "--data", f"prepared:{out}", "--limit", "16", "--epochs", "1",
                 "--batch-size", "8", "--workdir", str(workdir), "--quiet"]) == 0
    metrics = json.load(open(workdir / "metrics.json"))
    assert metrics["train_examples"] == 16 and np.isfinite(metrics["test_loss"])


def test_records_refuse_arrays_they_cannot_hold(tmp_path):
    x = np.zeros((4, 2, 2, 1), np.float64)
    x[2, 1, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"train shard 0: example 2 holds NaN/inf"):
        records.prepare_arrays(str(tmp_path / "nan"), {"train": (x, np.zeros(4))}, ["a"], progress=False)
    with pytest.raises(DataError, match=r"records hold uint8, float16, float32 arrays, not int64"):
        records.prepare_arrays(str(tmp_path / "int"), {"train": (np.zeros((4, 2, 2, 1), np.int64), np.zeros(4))},
                               ["a"], progress=False)
