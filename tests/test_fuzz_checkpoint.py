"""Fuzzed checkpoint and run-folder metadata: a run's JSON records (config.json, history.json,
metrics.json), a weights folder's meta.json and checksum record and its Orbax files, and a
checkpoint step's files, damaged byte by byte or a JSON value at a time, answer with the library's
own errors (RunFileError, CheckpointCorruptError...) or a fallback to an intact checkpoint,
never a raw JSONDecodeError, UnicodeDecodeError, KeyError, TypeError or a hang.
"""

import functools
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import strategies as st

from jaxcnn.checkpoint import CheckpointCorruptError, CheckpointError, read_metadata, restore_params, save_params
from jaxcnn.config import ExperimentConfig
from jaxcnn.errors import UsageError
from jaxcnn.run import RunFileError, RunFolder, config_record
from tests._fuzz import count, damaged, fuzz_tests, mutated_json, reporter

counts = pytest.fixture(scope="module", autouse=True)(reporter)
SCRATCH = tempfile.mkdtemp(prefix="jaxcnn-fuzz-ckpt-")
CONFIG = ExperimentConfig(name="t", model="mnist_cnn", epochs=3)
RECORDS = {"config.json": {"config": config_record(CONFIG), "epochs_done": 2},
           "history.json": {"loss": [0.5, 0.25], "accuracy": [0.8, 0.9]},
           "metrics.json": {"test_loss": 0.3, "test_accuracy": 0.9, "non_finite": []}}


def _run_folder(name: str, raw: bytes) -> RunFolder:
    work = os.path.join(SCRATCH, "run")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for n, record in RECORDS.items():
        with open(os.path.join(work, n), "wb") as f:
            f.write(raw if n == name else json.dumps(record).encode())
    return RunFolder(work)


def _read_back(folder: RunFolder, name: str):
    try:
        folder.read_history(), folder.read_metrics(), folder.read_record()
        folder.prepare(CONFIG)  # the rerun's check against the record
    except UsageError as e:  # RunFileError, or the record's config differs / epochs below those done
        assert name in str(e) or "configuration" in str(e) or "epochs" in str(e)


def check_run_record_bytes(data):
    name = data.draw(st.sampled_from(sorted(RECORDS)))
    raw = data.draw(damaged(json.dumps(RECORDS[name]).encode()))
    count("run folder JSON (bytes)")
    _read_back(_run_folder(name, raw), name)


def check_run_record_values(data):
    name = data.draw(st.sampled_from(sorted(RECORDS)))
    raw = json.dumps(data.draw(mutated_json(RECORDS[name]))).encode()
    count("run folder JSON (a value changed)")
    _read_back(_run_folder(name, raw), name)


test_run_records_bytes_fuzzed, test_run_records_bytes_fuzzed_long = fuzz_tests(check_run_record_bytes, 15, 1000)
test_run_records_values_fuzzed, test_run_records_values_fuzzed_long = fuzz_tests(check_run_record_values, 15, 1000)


def test_a_damaged_run_record_names_the_file_and_the_way_out(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"config": {"name": "t"}, "epochs_done": \xff}')
    with pytest.raises(RunFileError, match=r"config.json: not readable JSON .*--fresh"):
        RunFolder(str(tmp_path)).read_record()
    (tmp_path / "history.json").write_text("[1, 2]")
    with pytest.raises(RunFileError, match="history.json: holds a JSON list, not the dict"):
        RunFolder(str(tmp_path)).read_history()


# -- weights folders ------------------------------------------------------------------------------------
@functools.cache
def weights_folder() -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="jaxcnn-fuzz-weights-"), "params")
    params = {"conv": {"kernel": np.arange(18, dtype=np.float32).reshape(3, 3, 1, 2), "bias": np.ones(2, np.float32)}}
    save_params(path, params, {"bn": {"mean": np.zeros(2, np.float32)}}, metadata={"arch": "tiny"})
    return path


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def check_weights_folder(data):
    src = weights_folder()
    path = os.path.join(SCRATCH, "params")
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(src, path)
    rel = data.draw(st.sampled_from(_files(path)))
    with open(os.path.join(path, rel), "rb") as f:
        raw = f.read()
    damage = data.draw(damaged(raw) if not rel.endswith(".json") else st.one_of(
        damaged(raw), mutated_json(json.loads(raw)).map(lambda v: json.dumps(v).encode())))
    with open(os.path.join(path, rel), "wb") as f:
        f.write(damage)
    count("weights folder files")
    try:
        read_metadata(path)
        tree = restore_params(path)
    except CheckpointCorruptError as e:
        assert path in str(e)
        return
    # the damage left the folder valid (e.g. a key no reader uses, or Orbax's commit bookkeeping)
    np.testing.assert_array_equal(tree["params"]["conv"]["bias"], np.ones(2, np.float32))


test_weights_folder_fuzzed, test_weights_folder_fuzzed_long = fuzz_tests(check_weights_folder, 4, 300)


# -- checkpoints ------------------------------------------------------------------------------------------
@functools.cache
def checkpoints():
    """A checkpoint folder with steps 1 and 2 of a tiny model's training state, and that state."""
    from jaxcnn.checkpoint import CheckpointManager
    from jaxcnn.train import Trainer
    from tests.helpers import Tiny

    state = Trainer(Tiny(), (8, 8, 1)).state
    root = os.path.join(tempfile.mkdtemp(prefix="jaxcnn-fuzz-ckpts-"), "checkpoints")
    mgr = CheckpointManager(root, async_save=False)
    for step in (1, 2):
        mgr.save(step, state.replace(step=step), {"epoch": step, "step_in_epoch": 0, "global_step": step})
    mgr.close()
    return root, state


def check_checkpoint_files(data):
    from jaxcnn.checkpoint import CheckpointManager

    src, state = checkpoints()
    root = os.path.join(SCRATCH, "checkpoints")
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(src, root)
    step_dir = os.path.join(root, "2")
    rel = data.draw(st.sampled_from(_files(step_dir)))
    with open(os.path.join(step_dir, rel), "rb") as f:
        raw = f.read()
    with open(os.path.join(step_dir, rel), "wb") as f:
        f.write(data.draw(damaged(raw)))
    count("checkpoint step files")
    try:
        mgr = CheckpointManager(root)
        try:
            restored = mgr.restore_latest(state)
        finally:
            mgr.close()
    except CheckpointError as e:
        assert root in str(e)
        return
    assert restored is not None and int(restored[0].step) in (1, 2)


test_checkpoint_files_fuzzed_long = fuzz_tests(check_checkpoint_files, 1, 60)[1]  # ~1 s per input (Orbax)
