"""Checkpoints that survive anything: exact resume after SIGKILL / SIGTERM, corrupt files, weights.

Training runs are subprocesses of tests/ckpt_worker.py (N2 with dropout, 256 MNIST images,
batch 32, 2 epochs of 8 steps, a checkpoint every 3 steps and at epoch ends), sharing a
persistent XLA compilation cache so that each start costs seconds, not a compile. The reference
is an uninterrupted run; every interrupted-and-resumed run must end with bitwise equal params.
"""

import glob
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxcnn import checkpoint
from jaxcnn.train.callbacks import tb_events
from jaxcnn.train.callbacks.timing import TIMING_KEYS
from jaxcnn.weights import store

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
_spec = importlib.util.spec_from_file_location("ckpt_worker", os.path.join(HERE, "ckpt_worker.py"))
worker = sys.modules.setdefault("ckpt_worker", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(worker)
STEPS = worker.STEPS_PER_EPOCH


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir):
    e = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAXCNN_DATA_DIR=data_dir, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("xla_cache")),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return e


def start(workdir, env, *args):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "ckpt_worker.py"), str(workdir), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def train(workdir, env, *args):
    rc, out, err = finish(start(workdir, env, *args))
    assert rc == 0 and "DONE" in out, f"rc={rc}\n{out[-2000:]}\n{err[-4000:]}"
    return out, err


def interrupt(workdir, env, sig, when, *args):
    """Start a run, send `sig` once a stdout line satisfies `when`; return (last step seen, rc, out, err)."""
    proc = start(workdir, env, "--step-sleep", "0.15", *args)
    last, lines = 0, []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("STEP "):
            last = int(line.split()[1])
        if when(line):
            proc.send_signal(sig)
            break
    rc, out, err = finish(proc)
    for line in out.splitlines():
        if line.startswith("STEP "):
            last = int(line.split()[1])
    return last, rc, "".join(lines) + out, err


def final_params(workdir):
    with np.load(os.path.join(workdir, "final.npz")) as f:
        return {k: f[k] for k in f.files}


def assert_same_run(workdir, reference):
    got, want = final_params(workdir), final_params(reference)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} differs from the uninterrupted run")
    assert_same_logs(workdir, reference)


# Wall-clock scalars (jaxcnn.train.callbacks.timing): the ones a resumed run cannot repeat.
WALL_CLOCK_TAGS = {f"epoch_{k}" for k in TIMING_KEYS}


def csv_rows(path):
    """The CSV log's rows without the `seconds` column (wall time, the one log that may differ)."""
    rows = [line.rstrip("\n").split(",") for line in open(path)]
    drop = rows[0].index("seconds") if "seconds" in rows[0] else None
    return [[v for i, v in enumerate(r) if i != drop] for r in rows]


def assert_same_logs(workdir, reference):
    """history.json, the CSV log and the TensorBoard scalars equal the reference's bitwise."""
    h, ref_h = (json.load(open(os.path.join(d, "history.json"))) for d in (workdir, reference))
    assert h == ref_h  # every epoch's metrics and learning rate, to the last bit
    assert csv_rows(os.path.join(workdir, "log.csv")) == csv_rows(os.path.join(reference, "log.csv"))
    for run in ("train", "validation"):
        got, want = ({k: v for k, v in tb_events.scalars(os.path.join(d, "tensorboard", run)).items()
                      if k[0] not in WALL_CLOCK_TAGS} for d in (workdir, reference))
        twice = {k: v for k, v in got.items() if len(v) > 1}
        assert not twice, f"{run}: steps logged more than once: {sorted(twice)[:5]}"
        assert got == want, f"{run}: " + ", ".join(
            f"{k}: {got.get(k)} vs {want.get(k)}" for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))


def copy_run(reference, workdir):
    """The reference's run folder as a killed run leaves it: checkpoints, TensorBoard and CSV logs."""
    shutil.copytree(reference / "checkpoints", workdir / "checkpoints")
    shutil.copytree(reference / "tensorboard", workdir / "tensorboard")
    shutil.copy(reference / "log.csv", workdir / "log.csv")


def steps_on_disk(workdir):
    return checkpoint.CheckpointManager(os.path.join(workdir, "checkpoints"), create=False).all_steps()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
    """The uninterrupted run (it also fills the compilation cache)."""
    workdir = tmp_path_factory.mktemp("reference")
    out, _ = train(workdir, env)
    assert [int(x.split()[1]) for x in out.splitlines() if x.startswith("STEP")] == list(range(1, 2 * STEPS + 1))
    return workdir


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_sigkill_in_second_epoch_then_resume_is_bitwise_equal(backend, tmp_path, env, reference):
    # The reference ran on the numpy pipeline; the tf.data one must give the very same batches.
    target = random.randint(STEPS + 1, 2 * STEPS - 2)  # a random step of the second epoch
    last, rc, out, err = interrupt(tmp_path, env, signal.SIGKILL, lambda l: l == f"STEP {target}\n",
                                   "--backend", backend)
    assert rc == -signal.SIGKILL, err[-2000:]
    assert not os.path.exists(tmp_path / "final.npz")
    assert STEPS < last < 2 * STEPS, f"killed at step {last}, wanted the second epoch"
    _, err = train(tmp_path, env, "--backend", backend)
    assert "resuming from" in err, err[-2000:]
    assert_same_run(tmp_path, reference)


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_streamed_from_records_killed_mid_epoch_then_resumed_equals_the_in_memory_run(backend, tmp_path, env,
                                                                                      reference):
    # The same images read from a prepared dataset (numpy: a prefetch thread; tf: tf.data's map):
    # the run, killed and then resumed from the checkpoint, must end bitwise where the
    # uninterrupted in-memory run ended.
    prepared = worker.prepare_data(str(tmp_path / "prepared"))
    target = random.randint(STEPS + 1, 2 * STEPS - 2)
    last, rc, out, err = interrupt(tmp_path, env, signal.SIGKILL, lambda l: l == f"STEP {target}\n",
                                   "--backend", backend, "--prepared", prepared)
    assert rc == -signal.SIGKILL and STEPS < last < 2 * STEPS, err[-2000:]
    _, err = train(tmp_path, env, "--backend", backend, "--prepared", prepared)
    assert "resuming from" in err, err[-2000:]
    assert_same_run(tmp_path, reference)


def test_sigkill_during_a_save_leaves_no_complete_looking_checkpoint(tmp_path, env, reference):
    # The commit (rename) of checkpoint 12 hangs after all its files are written; kill it there.
    _, rc, out, err = interrupt(tmp_path, env, signal.SIGKILL, lambda l: l == "IN_SAVE\n",
                                "--hang-in-save", "12")
    assert rc == -signal.SIGKILL and "IN_SAVE" in out, err[-2000:]
    ckdir = tmp_path / "checkpoints"
    assert glob.glob(str(ckdir / "12.orbax-checkpoint-tmp*")), os.listdir(ckdir)
    assert 12 not in steps_on_disk(tmp_path) and max(steps_on_disk(tmp_path)) == 9
    _, err = train(tmp_path, env)
    assert "checkpoints/9: epoch 2, step 1" in err, err[-2000:]
    assert not glob.glob(str(ckdir / "*.orbax-checkpoint-tmp*"))  # the leftover was cleaned up
    assert_same_run(tmp_path, reference)


def test_sigterm_mid_epoch_saves_and_resume_loses_no_steps(tmp_path, env, reference):
    last, rc, out, err = interrupt(tmp_path, env, signal.SIGTERM, lambda l: l == f"STEP {STEPS + 2}\n")
    assert rc == checkpoint.SIGTERM_EXIT_CODE, f"rc={rc}\n{out}\n{err[-3000:]}"
    saved = int(re.search(r"PREEMPTED SIGTERM: saved checkpoint \S+/checkpoints/(\d+) ", out).group(1))
    # Nothing lost: the newest checkpoint is the step it stopped at (at or after the last one it
    # reported done: the signal may land while the next step runs).
    assert max(steps_on_disk(tmp_path)) == saved and last <= saved < 2 * STEPS
    _, err = train(tmp_path, env)
    assert f"checkpoints/{saved}: epoch 2, step {saved - STEPS}" in err, err[-2000:]
    assert_same_run(tmp_path, reference)


def _truncate_largest(step_dir):
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**"), recursive=True) if os.path.isfile(f)]
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)


def _delete_piece(step_dir):
    shutil.rmtree(os.path.join(step_dir, "state", "ocdbt.process_0"))


@pytest.mark.parametrize("damage", [_truncate_largest, _delete_piece], ids=["truncate", "delete"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous(damage, tmp_path, env, reference):
    copy_run(reference, tmp_path)  # the run's logs come along: they must be cut back to the fallback
    steps = steps_on_disk(tmp_path)
    newest, previous = steps[-1], steps[-2]
    damage(str(tmp_path / "checkpoints" / str(newest)))
    _, err = train(tmp_path, env)
    assert f"checkpoint step {newest} is corrupt" in err and f"resuming from step {previous}" in err, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err and "absl" not in err, err[-3000:]
    assert os.listdir(tmp_path / "checkpoints" / "corrupt")  # moved aside, not deleted
    assert newest in steps_on_disk(tmp_path)  # and written again by the resumed run
    assert_same_run(tmp_path, reference)


@pytest.mark.parametrize("content", ["empty", "loop_only", "checksums_only"])
def test_an_empty_or_partial_step_folder_is_moved_aside_and_the_run_resumes_from_the_previous(
        content, reference, tmp_path, capsys):
    """A numbered folder without its items (a save killed before writing, a folder left by a tool),
    with or without a checksum record, is damage: moved to corrupt/ with a message, and the run
    resumes from the newest intact checkpoint (it used to stop on the missing loop/metadata)."""
    trainer = worker.make_trainer()
    ckdir = tmp_path / "checkpoints"
    shutil.copytree(reference / "checkpoints", ckdir)
    newest = steps_on_disk(reference)[-1]
    want, _ = checkpoint.CheckpointManager(str(reference / "checkpoints"), create=False).restore(
        newest, trainer.state)
    bogus = ckdir / str(newest + 100)
    bogus.mkdir()
    if content == "loop_only":
        shutil.copytree(ckdir / str(newest) / "loop", bogus / "loop")
    if content == "checksums_only":
        shutil.copy(ckdir / str(newest) / checkpoint.CHECKSUMS_FILE, bogus)
    callback = checkpoint.CheckpointCallback(str(ckdir))
    callback.on_train_begin(trainer)
    callback.manager.close()
    assert callback.resumed_from == newest and int(trainer.state.step) == int(want.step)
    chex.assert_trees_all_equal(trainer.state.params, want.params)
    assert not bogus.exists() and len(os.listdir(ckdir / "corrupt")) == 1
    assert f"checkpoint step {newest + 100} is corrupt" in capsys.readouterr().err


def test_weights_folders_carry_checksums_checked_on_every_load(tmp_path):
    params = {"conv": {"kernel": np.arange(3 * 3 * 1 * 4, dtype=np.float32).reshape(3, 3, 1, 4),
                       "bias": np.ones(4, np.float32)}}
    path = str(tmp_path / "params")
    checkpoint.save_params(path, params)
    assert os.path.isfile(os.path.join(path, checkpoint.CHECKSUMS_FILE))
    chex.assert_trees_all_equal(checkpoint.restore_params(path)["params"], params)
    data = [f for f in glob.glob(os.path.join(path, "variables", "**"), recursive=True)
            if os.path.isfile(f) and "/d/" in f]
    _flip_bit(max(data, key=os.path.getsize), random.Random(3))
    for load in (checkpoint.restore_params, checkpoint.restore_variables):
        with pytest.raises(checkpoint.CheckpointCorruptError,
                           match=r"params: the weights folder is corrupt: variables/.* \(array data\) does not match"):
            load(path)
    os.remove(os.path.join(path, checkpoint.CHECKSUMS_FILE))  # a folder from before checksums
    assert checkpoint.restore_params(path)["params"]["conv"]["kernel"].shape == (3, 3, 1, 4)


def test_a_checkpoint_path_that_is_a_file_is_refused_when_the_manager_opens(tmp_path):
    (tmp_path / "checkpoints").write_text("")
    with pytest.raises(checkpoint.CheckpointError, match="checkpoints: exists and is not a directory"):
        checkpoint.CheckpointManager(str(tmp_path / "checkpoints"))


def _flip_bit(path, rng):
    data = bytearray(open(path, "rb").read())
    pos, bit = rng.randrange(len(data)), rng.randrange(8)
    data[pos] ^= 1 << bit
    open(path, "wb").write(bytes(data))
    return f"{path} byte {pos} bit {bit}"


def test_every_single_bit_flip_in_a_checkpoint_is_detected_and_the_previous_one_used(reference, tmp_path):
    trainer = worker.make_trainer()
    steps = steps_on_disk(reference)
    newest, previous = steps[-1], steps[-2]
    for step in steps:  # written with the checkpoint, inside its atomic commit
        assert os.path.isfile(reference / "checkpoints" / str(step) / checkpoint.CHECKSUMS_FILE)
    want, _ = checkpoint.CheckpointManager(str(reference / "checkpoints"), create=False).restore(
        previous, trainer.state)
    step_dir = reference / "checkpoints" / str(newest)
    files = sorted(os.path.relpath(f, step_dir) for f in glob.glob(str(step_dir / "*" / "**"), recursive=True)
                   if os.path.isfile(f))  # state/ (arrays), loop/, metrics/
    biggest = max(files, key=lambda f: os.path.getsize(step_dir / f))  # the arrays' data
    rng = random.Random(14)
    for trial in range(8):
        ckdir = tmp_path / f"flip{trial}"
        shutil.copytree(reference / "checkpoints", ckdir)
        what = _flip_bit(ckdir / str(newest) / (biggest if trial < 3 else rng.choice(files)), rng)
        mgr = checkpoint.CheckpointManager(str(ckdir))
        state, loop = mgr.restore_latest(trainer.state)
        mgr.close()
        assert loop["global_step"] == previous, f"not detected: {what}"
        assert len(os.listdir(ckdir / "corrupt")) == 1 and str(newest) not in os.listdir(ckdir)
        chex.assert_trees_all_equal(checkpoint.state_tree(state), checkpoint.state_tree(want))
    # A lost checksum record is damage too (the loop state says one was written).
    ckdir = tmp_path / "no-record"
    shutil.copytree(reference / "checkpoints", ckdir)
    os.remove(ckdir / str(newest) / checkpoint.CHECKSUMS_FILE)
    mgr = checkpoint.CheckpointManager(str(ckdir))
    assert mgr.restore_latest(trainer.state)[1]["global_step"] == previous
    mgr.close()


def _without_file_permission_override():
    """As root, reading a mode-000 file succeeds; drop the capabilities that allow it (Linux)."""
    if os.geteuid() != 0:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def drop():  # PR_CAPBSET_DROP CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: exec leaves them out
        for cap in (1, 2):
            if libc.prctl(24, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    probe = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=drop, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here: root reads any file")
    return drop


def test_permission_denied_is_an_error_naming_the_file_not_corruption(reference, tmp_path, env):
    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    before = steps_on_disk(tmp_path)
    locked = sorted(glob.glob(str(tmp_path / "checkpoints" / "*" / "state" / "ocdbt.process_0" / "d" / "*")))
    for f in locked:
        os.chmod(f, 0)
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "ckpt_worker.py"), str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_without_file_permission_override())
    rc, out, err = finish(proc)
    for f in locked:
        os.chmod(f, 0o644)
    assert rc == 1, f"rc={rc}\n{out}\n{err[-3000:]}"
    line = re.search(r"CheckpointIOError: (\S+): cannot read checkpoint: Permission denied", err)
    assert line and line.group(1) in locked, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    assert steps_on_disk(tmp_path) == before and not os.path.exists(tmp_path / "checkpoints" / "corrupt")


def test_disk_full_during_a_save_is_one_line_and_the_rerun_uses_the_previous_checkpoint(reference, tmp_path, env):
    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    before = steps_on_disk(tmp_path)
    # A third epoch resumes from the end of the second and saves at step 18: every file over
    # 32 KiB fails to write (EFBIG, as on a full disk), and the state's array file is bigger.
    # (No compilation cache: its writes would fail too, with a warning of JAX's: the rate that
    # ReduceLROnPlateau lowered at the end of epoch 2 compiles a step the cache has not seen.)
    no_cache = {k: v for k, v in env.items() if k != "JAX_COMPILATION_CACHE_DIR"} | {"JAXCNN_COMPILATION_CACHE": "off"}
    rc, out, err = finish(start(tmp_path, no_cache, "--epochs", "3", "--file-size-limit", "32768"))
    assert rc == 1, f"rc={rc}\n{out}\n{err[-3000:]}"
    assert re.search(r"CheckpointIOError: \S+/checkpoints/18\S*: cannot write checkpoint step 18: File too large",
                     err), err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err and "absl" not in err, err[-3000:]
    assert len([l for l in err.splitlines() if not l.startswith("jaxcnn.checkpoint: resuming")]) == 1, err
    assert steps_on_disk(tmp_path) == before
    assert "File too large" in open(tmp_path / "checkpoints" / checkpoint.LOG_FILE).read()  # the details
    _, err = train(tmp_path, env, "--epochs", "3")
    assert f"checkpoints/{before[-1]}: epoch 3, step 0" in err, err[-2000:]
    assert not glob.glob(str(tmp_path / "checkpoints" / "*.orbax-checkpoint-tmp*"))
    assert steps_on_disk(tmp_path)[-1] == 3 * STEPS


def test_a_failed_writes_unretrieved_future_goes_to_the_log_file_even_after_close(tmp_path, caplog):
    # TensorStore's gathered write futures fail in Orbax's event loop; asyncio reports them as
    # "exception was never retrieved" whenever the garbage collector runs, maybe after close.
    import asyncio
    import gc

    checkpoint.CheckpointManager(str(tmp_path / "checkpoints")).close()

    def unretrieved(message):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(asyncio.sleep(0))
        failed = loop.create_future()
        gathered = asyncio.gather(failed)
        failed.set_exception(ValueError(message))
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        del failed, gathered
        gc.collect()

    with caplog.at_level("ERROR", logger="asyncio"):
        unretrieved('OUT_OF_RANGE: Error writing "opt_state.0.nu/0" in OCDBT database: File too large')
        unretrieved("a user's own coroutine failed")
    shown = [r.getMessage() + str(r.exc_info) for r in caplog.records]
    assert len(shown) == 1 and "a user's own coroutine failed" in shown[0], shown
    details = open(tmp_path / "checkpoints" / checkpoint.LOG_FILE).read()
    assert "never retrieved" in details and "OCDBT database: File too large" in details


# -- in-process: weights for inference, and clear errors ---------------------------------------------
@pytest.fixture(scope="module")
def sgd_trainer():
    return worker.make_trainer(optimizer="sgd")


def test_restore_params_into_a_fresh_model_for_predict(reference, sgd_trainer, tmp_path):
    ds = worker.data()
    trainer = sgd_trainer  # another optimizer: only the weights are taken
    step = checkpoint.load_weights(trainer, str(reference / "checkpoints"))
    assert step == 2 * STEPS
    want = final_params(reference)
    np.testing.assert_array_equal(trainer.predict(ds.x_test), want["predictions"])
    # One step's folder, and the plain weights folder (`workdir/params`) work the same way.
    assert checkpoint.load_weights(trainer, str(reference / "checkpoints" / str(step))) == step
    checkpoint.save_params(str(tmp_path / "params"), trainer.state.params, trainer.state.batch_stats)
    trainer.state = trainer.state.replace(params=jax.tree.map(jnp.zeros_like, trainer.state.params))
    assert checkpoint.load_weights(trainer, str(tmp_path / "params")) is None
    np.testing.assert_array_equal(trainer.predict(ds.x_test), want["predictions"])
    best = checkpoint.load_weights(trainer, str(reference / "checkpoints"), step="best")
    loop = checkpoint.CheckpointManager(str(reference / "checkpoints"), create=False).read_loop(2 * STEPS)
    assert best == loop["best"]["step"] and loop["best"]["metric"] == "val_accuracy"
    assert loop["best"]["value"] == max(loop["history"]["val_accuracy"])


def test_one_weights_format_and_the_older_layout_still_loads(reference, sgd_trainer, tmp_path):
    trainer, ds = sgd_trainer, worker.data()
    checkpoint.load_weights(trainer, str(reference / "checkpoints"))
    want = trainer.predict(ds.x_test)
    params, stats = jax.device_get(trainer.state.params), jax.device_get(trainer.state.batch_stats)
    # save_params and save_variables write one folder format, and each reads the other's.
    checkpoint.save_params(str(tmp_path / "p"), params, stats)
    checkpoint.save_variables(tmp_path / "v", {"params": params}, metadata={"arch": "n2"})
    layout = [checkpoint.CHECKSUMS_FILE, "meta.json", "variables"]
    assert sorted(os.listdir(tmp_path / "p")) == sorted(os.listdir(tmp_path / "v")) == layout
    assert checkpoint.read_metadata(tmp_path / "v")["arch"] == "n2"
    like = {"params": params, "batch_stats": stats}
    for tree in (checkpoint.restore_variables(tmp_path / "p"), checkpoint.restore_params(str(tmp_path / "v")),
                 checkpoint.restore_params(str(tmp_path / "v"), like=like)):
        chex.assert_trees_all_equal(tree, like)
    # A weights folder of the older layout (Orbax's checkpoint at its top, as `save_params` wrote
    # it before): restored by both, loaded by load_weights, and replaced whole by a new save.
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(str(tmp_path / "old"), like)
    for tree in (checkpoint.restore_params(str(tmp_path / "old"), like=like),
                 checkpoint.restore_variables(tmp_path / "old")):
        chex.assert_trees_all_equal(tree, like)
    for folder in ("old", "v"):
        trainer.state = trainer.state.replace(params=jax.tree.map(jnp.zeros_like, trainer.state.params))
        assert checkpoint.load_weights(trainer, str(tmp_path / folder)) is None
        np.testing.assert_array_equal(trainer.predict(ds.x_test), want)
    checkpoint.save_params(str(tmp_path / "old"), params, stats)
    assert sorted(os.listdir(tmp_path / "old")) == layout
    assert store.save_variables is checkpoint.save_variables


def test_loop_state_is_the_json_file_orbax_wrote(reference):
    # The on-disk layout runs resume from: `<step>/loop/metadata` is the loop state as JSON, and
    # a `state/` item; read through Orbax's API, it is the same.
    mgr = checkpoint.CheckpointManager(str(reference / "checkpoints"), create=False)
    for step in mgr.all_steps():
        raw = json.load(open(reference / "checkpoints" / str(step) / "loop" / "metadata"))
        assert mgr.read_loop(step) == raw and raw["jaxcnn_format"] == checkpoint.FORMAT_VERSION
        assert os.path.isdir(reference / "checkpoints" / str(step) / "state")


def test_other_model_or_optimizer_is_a_clear_error(reference, tmp_path, sgd_trainer):
    ckdir = str(reference / "checkpoints")
    before = sorted(os.listdir(ckdir))
    narrow = worker.make_trainer(model=worker.N2(width=4))
    with pytest.raises(checkpoint.CheckpointMismatchError) as e:
        checkpoint.load_weights(narrow, ckdir)
    assert "params/conv1/kernel: checkpoint (3, 3, 1, 8) vs model (3, 3, 1, 4)" in str(e.value)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="another model"):
        checkpoint.CheckpointCallback(ckdir).on_train_begin(narrow)
    sgd = sgd_trainer
    with pytest.raises(checkpoint.CheckpointMismatchError, match="optimizer differs") as e:
        checkpoint.CheckpointCallback(ckdir).on_train_begin(sgd)
    assert "opt_state/0/mu/conv1/kernel: checkpoint (3, 3, 1, 8), not in model" in str(e.value)
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="no checkpoint directory"):
        checkpoint.load_weights(sgd, str(tmp_path / "missing"))
    assert sorted(os.listdir(ckdir)) == before  # nothing was moved or deleted
    assert not os.path.exists(os.path.join(ckdir, "corrupt"))


def test_newer_format_is_a_clear_error(reference, tmp_path, sgd_trainer):
    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    newest = steps_on_disk(tmp_path)[-1]
    path = tmp_path / "checkpoints" / str(newest) / "loop" / "metadata"
    loop = json.load(open(path))
    loop["jaxcnn_format"] = checkpoint.FORMAT_VERSION + 1
    json.dump(loop, open(path, "w"))
    checkpoint.write_checksums(str(tmp_path / "checkpoints" / str(newest)))  # as the newer jaxcnn did
    with pytest.raises(checkpoint.CheckpointFormatError, match="newer jaxcnn"):
        checkpoint.CheckpointCallback(str(tmp_path / "checkpoints")).on_train_begin(sgd_trainer)
    assert newest in steps_on_disk(tmp_path)  # left in place


def test_experiment_rerun_resumes_in_the_same_workdir(tmp_path, data_dir):
    from jaxcnn.cli import main

    workdir = str(tmp_path / "run")
    args = ["train", "mnist_cnn", "--limit", "64", "--batch-size", "32", "--workdir", workdir,
            "--data-dir", data_dir, "--quiet", "--checkpoint-every", "1"]
    assert main(args + ["--epochs", "1"]) == 0
    assert steps_on_disk(workdir) == [1, 2]
    assert main(args + ["--epochs", "2"]) == 0  # the same command with more epochs: continues
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert metrics["resumed_from_step"] == 2 and len(history["loss"]) == 2
    assert metrics["best_checkpoint"]["metric"] == "val_accuracy"
    assert steps_on_disk(workdir)[-1] == 4


def test_all_checkpoints_unreadable_is_an_error_then_a_fresh_start(reference, tmp_path, sgd_trainer):
    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    steps = steps_on_disk(tmp_path)
    for step in steps:
        os.remove(tmp_path / "checkpoints" / str(step) / "loop" / "metadata")
    cb = checkpoint.CheckpointCallback(str(tmp_path / "checkpoints"))
    with pytest.raises(checkpoint.CheckpointCorruptError, match="no intact checkpoint"):
        cb.on_train_begin(sgd_trainer)
    assert len(os.listdir(tmp_path / "checkpoints" / "corrupt")) == len(steps)  # kept for inspection
    cb.on_train_begin(sgd_trainer)  # the directory is usable again: a fresh start
    cb.on_train_end(sgd_trainer)
    assert cb.resumed_from is None and steps_on_disk(tmp_path) == []


def test_tensorboard_logs_are_cut_back_to_the_step_a_run_resumes_from(tmp_path):
    # What a killed process leaves: per-step scalars past its last checkpoint (step 6), an epoch
    # scalar of an epoch the checkpoint does not hold, and a record torn by the kill.
    from jaxcnn.train.callbacks import SummaryWriter

    logdir = str(tmp_path / "train")
    w = SummaryWriter(logdir)
    w.text("model", "summary", 0)
    for step in range(2, 11, 2):
        w.scalar("batch_loss", float(step), step)
    w.scalar("epoch_loss", 1.5, 0)
    w.scalar("epoch_loss", 2.5, 1)
    w.close()
    with open(w.path, "ab") as f:
        f.write(b"\x30\x00\x00\x00\x00\x00\x00\x00torn")
    assert tb_events.cut_back(logdir, step=6, epochs=1) == 3  # steps 8 and 10, epoch 1 (and the torn tail)
    assert tb_events.scalars(logdir) == {("batch_loss", 2): [2.0], ("batch_loss", 4): [4.0],
                                         ("batch_loss", 6): [6.0], ("epoch_loss", 0): [1.5]}
    assert len(tb_events.read_records(w.path)) == 6  # and the file-version record and the text
    assert tb_events.cut_back(logdir, step=6, epochs=1) == 0 and os.listdir(logdir) == [os.path.basename(w.path)]
    tb_events.cut_back(logdir, step=0, epochs=0)  # a run that starts over: nothing of the old one
    assert tb_events.scalars(logdir) == {} and len(tb_events.read_records(w.path)) == 1
