"""Fuzzed data readers: IDX files, prepared-record folders and image folders on random and damaged
bytes answer with a DataError naming the file, never a raw IndexError, struct.error, KeyError... or a hang.
"""

import functools
import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import strategies as st

from jaxcnn.data import records
from jaxcnn.data.errors import DataError
from jaxcnn.data.idx import read_idx, write_idx
from tests._fuzz import count, damaged, fuzz_tests, mutated_json, reporter

counts = pytest.fixture(scope="module", autouse=True)(reporter)
SCRATCH = tempfile.mkdtemp(prefix="jaxcnn-fuzz-data-")  # rewritten by every input


def _idx_bytes(shape, dtype) -> bytes:
    path = os.path.join(SCRATCH, "valid.idx")
    write_idx(path, (np.arange(int(np.prod(shape))) % 7).astype(dtype).reshape(shape))
    with open(path, "rb") as f:
        return f.read()


VALID_IDX = [_idx_bytes((3, 4, 4), np.uint8), _idx_bytes((5,), np.uint8), _idx_bytes((2, 3), np.float32)]


def _read_idx(raw: bytes, name: str, what: str):
    path = os.path.join(SCRATCH, name)
    with open(path, "wb") as f:
        f.write(raw)
    count(what)
    try:
        arr = read_idx(path)
    except DataError as e:
        assert path in str(e)
        return
    assert arr.nbytes + 4 + 4 * arr.ndim == len(gzip.decompress(raw) if name.endswith(".gz") else raw)


def check_idx(data):
    _read_idx(data.draw(damaged(data.draw(st.sampled_from(VALID_IDX)))), "x-idx3-ubyte", "idx")


def check_idx_gzip(data):
    _read_idx(data.draw(damaged(gzip.compress(data.draw(st.sampled_from(VALID_IDX))))), "x-idx3-ubyte.gz", "idx.gz")


test_idx_reader_fuzzed, test_idx_reader_fuzzed_long = fuzz_tests(check_idx, 30, 2000)
test_idx_gzip_fuzzed, test_idx_gzip_fuzzed_long = fuzz_tests(check_idx_gzip, 15, 500)


def test_idx_header_whose_shape_overflows_is_refused(tmp_path):
    """Dimensions whose product overflows int64 (to 0 here) must not pass the size check."""
    path = tmp_path / "big"
    path.write_bytes(b"\x00\x00\x08\x04" + (2 ** 16).to_bytes(4, "big") * 4)
    with pytest.raises(DataError, match="bytes of data"):
        read_idx(str(path))


# -- prepared records ---------------------------------------------------------------------------------
@functools.cache
def prepared() -> str:
    out = os.path.join(tempfile.mkdtemp(prefix="jaxcnn-fuzz-prepared-"), "tiny")
    x = (np.arange(6 * 2 * 2 * 1) % 255).astype(np.uint8).reshape(6, 2, 2, 1)
    y = np.array([0, 1, 0, 1, 0, 1])
    records.prepare_arrays(out, {"train": (x, y), "test": (x[:2], y[:2])}, ["a", "b"], name="tiny",
                           shard_size=4, progress=False)
    return out


def _damaged_copy() -> str:
    root = os.path.join(SCRATCH, "prepared")
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(prepared(), root)
    return root


def _load_all(root, verify=False):
    """Open the folder and read every record of both splits: a DataError or the arrays."""
    try:
        ds = records.load_prepared(root, verify=verify)
        for split in (ds.x_train, ds.x_test):
            split[np.arange(len(split))]
            split.close()
    except DataError as e:
        assert root in str(e)


def check_manifest(data):
    root = _damaged_copy()
    with open(os.path.join(root, records.MANIFEST)) as f:
        manifest = json.load(f)
    with open(os.path.join(root, records.MANIFEST), "w") as f:
        json.dump(data.draw(mutated_json(manifest)), f)
    count("records manifest (a value changed)")
    _load_all(root)


def check_record_files(data):
    root = _damaged_copy()
    names = sorted(f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f)))
    path = os.path.join(root, data.draw(st.sampled_from(names)))
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(data.draw(damaged(raw)))
    count("records files (bytes)")
    _load_all(root, verify=data.draw(st.booleans()))


test_prepared_manifest_fuzzed, test_prepared_manifest_fuzzed_long = fuzz_tests(check_manifest, 15, 1000)
test_prepared_files_fuzzed, test_prepared_files_fuzzed_long = fuzz_tests(check_record_files, 12, 600)


# -- image folders --------------------------------------------------------------------------------------
def _png(h=4, w=4) -> bytes:
    rows = b"".join(b"\x00" + bytes(range(w * 3)) for _ in range(h))

    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", h.to_bytes(4, "big") + w.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00")
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = _png()
image_places = st.sampled_from(["train/a", "train/b", "test/a", "test/b"])


def _load_folder(path, on_error):
    from jaxcnn.data.image_folder import load_image_folder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load_image_folder(path, on_error=on_error, use_cache=False)
        except DataError as e:
            assert path in str(e) or "x0.png" in str(e)
    return None


def check_image_folder(data):
    root = os.path.join(SCRATCH, "images")
    shutil.rmtree(root, ignore_errors=True)
    for split in ("train", "test"):
        for c in ("a", "b"):
            os.makedirs(os.path.join(root, split, c))
            with open(os.path.join(root, split, c, "ok.png"), "wb") as f:
                f.write(PNG)
    for i, (where, raw) in enumerate(data.draw(st.lists(st.tuples(image_places, damaged(PNG)), min_size=1,
                                                        max_size=3))):
        with open(os.path.join(root, where, f"x{i}.png"), "wb") as f:
            f.write(raw)
    count("image folder (damaged images)")
    ds = _load_folder(root, data.draw(st.sampled_from(["skip", "raise"])))
    if ds is not None:
        assert ds.x_train.shape[1:] == (4, 4, 3) and len(ds.x_train) >= 2


def _tar(files) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, raw in files:
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


TAR = _tar([(f"d/{s}/{c}/1.png", PNG) for s in ("train", "test") for c in "ab"])


def check_image_archive(data):
    path = os.path.join(SCRATCH, "photos.tar.gz")
    with open(path, "wb") as f:
        f.write(data.draw(damaged(TAR)))
    count("image archive (bytes)")
    _load_folder(path, "skip")


test_image_folder_fuzzed_long = fuzz_tests(check_image_folder, 1, 60)[1]  # ~0.7 s an input: slow tier only
test_image_archive_fuzzed, test_image_archive_fuzzed_long = fuzz_tests(check_image_archive, 10, 300)
