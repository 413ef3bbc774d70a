"""The loaders' warnings (issue 26 item 6): every skipped file named (past five: the first five, the
count and a file listing all), attributed to the user's own line, and said once (also by `jaxcnn prepare`)."""

import os
import subprocess
import sys
import warnings
import zlib

import pytest

from jaxcnn.data import load_dataset
from jaxcnn.data.image_folder import load_image_folder
from jaxcnn.data.records import prepare

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(h=4, w=4) -> bytes:
    rows = b"".join(b"\x00" + bytes(range(w * 3)) for _ in range(h))

    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", h.to_bytes(4, "big") + w.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00")
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def photos(root, broken: int):
    """train/ and test/ with classes a, b (two good PNGs each) and `broken` undecodable .png files."""
    for split in ("train", "test"):
        for c in "ab":
            os.makedirs(os.path.join(root, split, c))
            for i in range(2):
                with open(os.path.join(root, split, c, f"ok{i}.png"), "wb") as f:
                    f.write(_png())
    names = []
    for i in range(broken):
        path = os.path.join(root, "train" if i % 2 == 0 else "test", "ab"[i % 2], f"broken{i}.png")
        with open(path, "wb") as f:
            f.write(b"not an image")
        names.append(path)
    return str(root), names


def skip_warnings(record):
    return [w for w in record if "could not be decoded" in str(w.message)]


def test_one_warning_names_every_skipped_file_at_the_users_line(tmp_path):
    root, broken = photos(tmp_path / "photos", 3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        load_image_folder(root, cache_dir=str(tmp_path / "cache"))
    (w,) = skip_warnings(record)
    assert all(name in str(w.message) for name in broken), str(w.message)
    assert (w.filename, w.lineno) == (__file__, line)  # this test's line, not the library's


def test_past_five_the_warning_gives_the_count_and_the_file_listing_all(tmp_path):
    root, broken = photos(tmp_path / "photos", 7)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        load_dataset(f"image_folder:{root}", use_cache=False, cache_dir=str(tmp_path / "cache"))
    (w,) = skip_warnings(record)
    msg = str(w.message)
    assert "skipped 7 file(s)" in msg and "and 2 more (all listed in " in msg
    listing = msg.split("(all listed in ")[1].split(")")[0]
    assert sorted(open(listing).read().split()) == sorted(broken)
    assert (w.filename, w.lineno) == (__file__, line)  # through the source registry, still the user's line


@pytest.mark.slow  # decodes shard by shard (a second or two)
def test_prepare_says_it_once_and_lists_the_files_in_the_prepared_folder(tmp_path):
    root, broken = photos(tmp_path / "photos", 6)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        manifest = prepare(f"image_folder:{root}", str(tmp_path / "prep"), shard_size=3, progress=False)
    (w,) = skip_warnings(record)  # once, though the files lie in several shards (the first: broken files only)
    assert w.filename == __file__ and "skipped 6 file(s)" in str(w.message)
    assert sorted(open(tmp_path / "prep" / "skipped.txt").read().split()) == sorted(broken)
    assert len([n for n in manifest["notes"] if "could not be decoded" in n]) == 1


@pytest.mark.slow
def test_the_prepare_command_prints_the_skip_warning_once(tmp_path):
    root, broken = photos(tmp_path / "photos", 2)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "prepare", f"image_folder:{root}", "--out",
                           str(tmp_path / "prep")], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("could not be decoded") == 1, proc.stderr
    assert all(name in proc.stderr for name in broken)
    assert "image_folder.py" not in proc.stderr and "writer.py" not in proc.stderr
