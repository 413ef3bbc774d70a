"""Chaos run: train N1 while a driver kills the process at random moments and restarts it.

    PYTHONPATH=. python benchmarks/chaos.py --kills 20 --road pipeline --devices 2
    PYTHONPATH=. python benchmarks/chaos.py --kills 200 --images 6000 --epochs 8   # longer

First an uninterrupted reference run; then the same run in a fresh folder, killed at least
`--kills` times (SIGKILL, SIGTERM, SIGINT, drawn at random) and restarted until it finishes.
Kills land at random: during start-up, during a step, during a checkpoint save (between the
save's start and its files being complete), at an epoch end (validation, the epoch's logs)
and during the final evaluation. The finished run must equal the reference bitwise: final
params, test metrics, history.json, the CSV log and every TensorBoard scalar; and no temporary
or partial checkpoint folder may be left. The log says how many kills of each kind landed
where; `--json FILE` writes the record. Kills come early in each start near the end of the run;
a run that finishes before the last kill is started (and killed) again: rerunning a finished
run must change nothing either.

The worker (`chaos.py worker WORKDIR ...`) is N1 (`mnist_cnn`, with dense dropout so the
random state matters) on the first `--images` MNIST training images, batch `--batch`, a
checkpoint every 3 steps and at epoch ends, TensorBoard, a CSV log, EarlyStopping and
ReduceLROnPlateau on. It prints a marker line before each phase (IMPORTED, BEGIN, STEP n,
SAVE n, SAVED n, VALIDATE e, EPOCH_END e, EVALUATE, DONE), which the driver uses to aim kills and name where
they landed.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import queue
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
T0 = time.perf_counter()
KINDS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


# -- the worker: one training process ---------------------------------------------------------------
def worker(args) -> None:
    import jax  # noqa: I001 (the worker's imports are its start-up, timed)
    import numpy as np

    from jaxcnn.checkpoint import CheckpointCallback, TrainingStopped, exit_on_stop
    from jaxcnn.checkpoint import manager as manager_module
    from jaxcnn.data import load_dataset
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer
    from jaxcnn.train.callbacks import CSVLogger, EarlyStopping, ReduceLROnPlateau, TensorBoard

    def say(line):
        print(line, flush=True)

    save, record = manager_module.CheckpointManager.save, manager_module.CheckpointManager._record_checksums

    def marked_save(self, step, *a, **k):
        say(f"SAVE {step}")
        return save(self, step, *a, **k)

    def marked_record(self):
        out = record(self)
        say(f"SAVED {self._saving}")
        return out

    manager_module.CheckpointManager.save = marked_save
    manager_module.CheckpointManager._record_checksums = marked_record

    class Markers:
        def on_train_begin(self, trainer):
            say(f"BEGIN {trainer.global_step}")

        def on_step_end(self, trainer, epoch, step):
            say(f"STEP {trainer.global_step}")
            if step >= trainer.epoch_stop:
                say(f"VALIDATE {epoch}")

        def on_epoch_logs(self, trainer, epoch, logs):
            say(f"EPOCH_END {epoch}")

    say(f"IMPORTED {time.perf_counter() - T0:.1f}s")
    ds = load_dataset("mnist").take(args.images, args.test_images)
    w = args.workdir
    trainer = Trainer(get_model("mnist_cnn", dense_dropout=0.25), ds.input_shape, optimizer="adam", seed=0,
                      data_backend="numpy", road=args.road)
    callbacks = [CheckpointCallback(os.path.join(w, "checkpoints"), every_n_steps=3, max_to_keep=2,
                                    best_metric="val_accuracy"),
                 Markers(), TensorBoard(os.path.join(w, "tensorboard"), images=4),
                 CSVLogger(os.path.join(w, "log.csv")), EarlyStopping("val_loss", patience=args.epochs),
                 ReduceLROnPlateau("val_loss", factor=0.5, patience=1, min_delta=1e9)]
    with exit_on_stop():  # SIGTERM / Ctrl-C: checkpoint saved, exit 143 / 130 without a traceback
        try:
            trainer.fit(ds.x_train, ds.y_train, epochs=args.epochs, batch_size=args.batch, verbose=0, log_every=2,
                        validation_data=(ds.x_test, ds.y_test), callbacks=callbacks, steps_per_call=2)
        except TrainingStopped as e:
            say(f"STOPPED {type(e).__name__}")
            raise
    say("EVALUATE")
    test = trainer.evaluate(ds.x_test, ds.y_test, batch_size=args.batch)
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(trainer.state.params))[0]
    np.savez(os.path.join(w, "final.npz"), **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
    with open(os.path.join(w, "metrics.json"), "w") as f:
        json.dump(test, f)
    with open(os.path.join(w, "history.json"), "w") as f:
        json.dump({k: v for k, v in trainer.history.items() if k != "seconds"}, f)
    say(f"DONE road={trainer.road} devices={jax.device_count()}")


# -- the driver ------------------------------------------------------------------------------------
def _env(args, cache_dir):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", TF_CPP_MIN_LOG_LEVEL="3")
    if args.devices > 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}").strip()
    return env


def _command(args, workdir):
    return [sys.executable, os.path.abspath(__file__), "worker", workdir, "--road", args.road, "--images",
            str(args.images), "--test-images", str(args.test_images), "--epochs", str(args.epochs),
            "--batch", str(args.batch)]


def _phase(last: str | None, saving: set) -> str:
    """Where a kill landed, from the last marker line the worker printed."""
    if saving:
        return "save"
    if last is None:
        return "start-up"
    word = last.split()[0]
    return {"IMPORTED": "start-up", "BEGIN": "step", "STEP": "step", "SAVE": "save", "SAVED": "step",
            "VALIDATE": "validation", "EPOCH_END": "epoch end",
            "EVALUATE": "final evaluation", "STOPPED": "stopping", "DONE": "exit"}.get(word, word)


def _attempt(args, env, workdir, rng, kill: str | None, kills_left: int = 0):
    """One start of the worker; with `kill`, a signal at a random moment.

    `kills_left`: the kills still to come, so that a run near its end is killed early in each
    start (it must not finish before the last kill).

    Returns (exit status, where the kill landed or None, stdout, stderr).
    """
    proc = subprocess.Popen(_command(args, workdir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: queue.Queue = queue.Queue()
    err_lines: list[str] = []
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout] + [lines.put(None)], daemon=True).start()
    threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True).start()
    # Aim: a random moment of start-up, after a random number of markers (steps, saves, epoch
    # ends), or a few milliseconds after the next save starts.
    aim = rng.choice(["start-up", "steps", "steps", "save"]) if kill else None
    steps_ahead, fire_at = rng.randint(0, 6), None
    total = args.epochs * (args.images // args.batch)
    deadline = time.monotonic() + rng.uniform(0.5, 8.0) if aim == "start-up" else None
    last, saving, phase, out, after, resent = None, set(), None, [], 0, 0
    while True:
        try:
            line = lines.get(timeout=0.02)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            line = line.rstrip("\n")
            out.append(line)
            if line.startswith("SAVE "):
                saving.add(line.split()[1])
            elif line.startswith("SAVED "):
                saving.discard(line.split()[1])
        if kill and phase is not None and line and not resent:
            # Still going after the signal (a stop comes at the first step end after it): a
            # Ctrl-C in start-up can be swallowed (Python drops a KeyboardInterrupt raised inside
            # a garbage-collector callback). Send it again.
            after += line.startswith("STEP ")
            if (after >= 2 or line.startswith(("BEGIN ", "EVALUATE"))) and proc.poll() is None:
                resent += 1
                proc.send_signal(KINDS[kill])
        if not kill or phase is not None:
            continue
        fire = deadline is not None and time.monotonic() >= deadline
        if line:
            last = line
            if line.startswith("BEGIN "):  # the step this start resumes from
                begun = int(line.split()[1])
                fire_at = begun + steps_ahead
                if total - begun < 2 * kills_left and aim == "steps":  # near the end: at the next marker
                    aim = "next"
            at_step = line.startswith("STEP ") and fire_at is not None and int(line.split()[1]) > fire_at
            fire = (fire or (aim == "steps" and at_step) or (aim == "save" and line.startswith("SAVE "))
                    or (aim == "next" and not line.startswith("BEGIN ")))
            if fire and aim == "save":
                time.sleep(rng.uniform(0.0, 0.05))
        if fire and proc.poll() is None:
            phase = _phase(last, saving)
            proc.send_signal(KINDS[kill])
    try:
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:  # a stop signal must end the process: a hang is a failure
        proc.kill()
        raise RuntimeError(f"the worker hung after {kill}:\n{''.join(err_lines)[-3000:]}")
    time.sleep(0.05)  # the stderr reader's last lines
    if resent:
        phase += " (swallowed, sent again)"
    return proc.returncode, phase, "\n".join(out), "".join(err_lines)


def _scalars(workdir):
    """Every TensorBoard scalar but the wall-clock ones (step time, input wait, images/s)."""
    from jaxcnn.train.callbacks import tb_events
    from jaxcnn.train.callbacks.timing import TIMING_KEYS

    wall = {f"epoch_{k}" for k in TIMING_KEYS}
    return {run: {k: v for k, v in tb_events.scalars(os.path.join(workdir, "tensorboard", run)).items()
                  if k[0] not in wall} for run in ("train", "validation")}


def _compare(run, ref) -> list[str]:
    """What differs between the chaos run's folder and the reference's (empty: bitwise equal)."""
    import numpy as np

    problems = []
    with np.load(os.path.join(run, "final.npz")) as a, np.load(os.path.join(ref, "final.npz")) as b:
        if sorted(a.files) != sorted(b.files):
            problems.append("params: other names")
        problems += [f"params {k} differ" for k in b.files if k in a.files and not np.array_equal(a[k], b[k])]
    for name in ("metrics.json", "history.json"):
        if json.load(open(os.path.join(run, name))) != json.load(open(os.path.join(ref, name))):
            problems.append(f"{name} differs")

    def csv_rows(d):
        rows = [r.split(",") for r in open(os.path.join(d, "log.csv")).read().splitlines()]
        drop = rows[0].index("seconds")
        return [[v for i, v in enumerate(r) if i != drop] for r in rows]

    if csv_rows(run) != csv_rows(ref):
        problems.append("log.csv differs")
    got, want = _scalars(run), _scalars(ref)
    for r in want:
        twice = sorted(k for k, v in got[r].items() if len(v) > 1)
        if twice:
            problems.append(f"tensorboard/{r}: logged twice: {twice[:5]}")
        diff = sorted(k for k in set(got[r]) | set(want[r]) if got[r].get(k, [None])[:1] != want[r].get(k, [None])[:1])
        if diff:
            problems.append(f"tensorboard/{r}: {len(diff)} scalars differ, e.g. {diff[:3]}")
    leftovers = [p for p in glob.glob(os.path.join(run, "checkpoints", "*"))
                 if not (os.path.basename(p).isdigit() or os.path.basename(p) in ("checkpoint.log", "corrupt"))]
    leftovers += glob.glob(os.path.join(run, "tensorboard", "*", ".*.tmp")) + glob.glob(os.path.join(run, "*.tmp"))
    if leftovers:
        problems.append(f"left behind: {sorted(os.path.basename(p) for p in leftovers)}")
    if os.path.isdir(os.path.join(run, "checkpoints", "corrupt")):
        problems.append(f"checkpoints moved to corrupt/: {os.listdir(os.path.join(run, 'checkpoints', 'corrupt'))}")
    return problems


def chaos(args, log=print) -> dict:
    """The reference, then the killed-and-restarted run; returns the record (`passed`, counts)."""
    rng = random.Random(args.seed)
    root = args.workdir or tempfile.mkdtemp(prefix="jaxcnn-chaos-")
    ref, run = os.path.join(root, "reference"), os.path.join(root, "run")
    for d in (ref, run):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    env = _env(args, os.path.join(root, "xla_cache"))
    t0 = time.perf_counter()
    rc, _, out, err = _attempt(args, env, ref, rng, None)
    if rc != 0 or "DONE" not in out:
        raise RuntimeError(f"the reference run failed (rc {rc}):\n{err[-3000:]}")
    log(f"chaos: reference run {out.splitlines()[-1]} in {time.perf_counter() - t0:.0f}s")
    counts = collections.Counter()
    outcomes = collections.Counter()
    kills, starts = [], 0
    t1 = time.perf_counter()
    while True:
        kind = rng.choice(list(KINDS)) if len(kills) < args.kills else None
        rc, phase, out, err = _attempt(args, env, run, rng, kind, args.kills - len(kills))
        starts += 1
        if starts > 3 * args.kills + 10:
            raise RuntimeError(f"{starts} starts and only {len(kills)} kills landed")
        if kind and phase is not None:
            kills.append((kind, phase, rc))
            counts[(kind, phase)] += 1
            stopped = "STOPPED" in out
            outcomes[f"{kind}: {'saved and stopped' if stopped else 'died'} (rc {rc})"] += 1
            if rc == 0 and "DONE" in out:  # a swallowed Ctrl-C: the run finished anyway
                log(f"chaos: {kind} at {phase} did not stop the run; it finished")
            bad = [l for l in err.splitlines() if "Traceback" in l] if kind == "SIGTERM" and stopped else []
            if bad:
                raise RuntimeError(f"SIGTERM ended in a traceback:\n{err[-3000:]}")
            continue
        if rc == 0 and "DONE" in out and kind is None:
            break
        if rc == 0 and "DONE" in out:  # finished before the aimed moment: restart a finished run, kill again
            continue
        raise RuntimeError(f"the worker failed without a kill (rc {rc}):\n{err[-3000:]}")
    seconds = time.perf_counter() - t1
    problems = _compare(run, ref)
    record = {"passed": not problems and len(kills) >= args.kills, "kills": len(kills), "starts": starts,
              "by_kind": dict(collections.Counter(k for k, _, _ in kills)),
              "by_phase": dict(collections.Counter(p for _, p, _ in kills)),
              "by_kind_and_phase": {f"{k} @ {p}": n for (k, p), n in sorted(counts.items())},
              "outcomes": dict(outcomes), "problems": problems, "seconds": round(seconds, 1),
              "config": {k: v for k, v in vars(args).items() if k not in ("fn", "json")}}
    log(f"chaos: {len(kills)} kills in {starts} starts, {seconds:.0f}s; road {args.road}, {args.devices} device(s)")
    for (k, p), n in sorted(counts.items()):
        log(f"chaos:   {k:7s} during {p:16s} x{n}")
    for o, n in sorted(outcomes.items()):
        log(f"chaos:   {o} x{n}")
    log("chaos: " + ("PASSED: bitwise equal to the uninterrupted run, nothing left behind" if record["passed"]
                     else f"FAILED: {problems or 'too few kills'}"))
    if not args.workdir and record["passed"]:
        shutil.rmtree(root, ignore_errors=True)
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    w.add_argument("workdir")
    for parser in (p, w):
        parser.add_argument("--road", default="pipeline", choices=["pipeline", "device"])
        parser.add_argument("--images", type=int, default=2000)
        parser.add_argument("--test-images", type=int, default=200)
        parser.add_argument("--epochs", type=int, default=4)
        parser.add_argument("--batch", type=int, default=100)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--devices", type=int, default=1, help="fake CPU devices (2: data parallel over two)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a stopped worker may take to exit")
    p.add_argument("--workdir", help="keep the runs here (default: a temporary folder, removed if it passes)")
    p.add_argument("--json", help="write the record here")
    args = p.parse_args(argv)
    if args.cmd == "worker":
        worker(args)
        return 0
    record = chaos(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
