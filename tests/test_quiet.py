"""What the command line prints: its own results and errors, not its libraries' start-up noise;
one format for the `jaxcnn` logger's lines whatever configured logging.

The noise lines below are copied from this project's CPU host (TensorFlow 2.21, jax 0.10.2).
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys

import pytest

from jaxcnn import quiet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796674013.054780   26173 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796674013.060016   26173 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "E0000 00:00:1796674018.309316   26173 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "W0000 00:00:1796674020.352930   26173 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "[Gloo] Rank 1 is connected to 1 peer ranks. Expected number of connected peer ranks is : 1",
    "2024-03-01 12:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.",
]
KEPT = [
    "Epoch 1/2 - 3.1s - loss: 0.5000 - accuracy: 0.7500",
    "jaxcnn: error: runs/x: no trained model here",
    "/tmp/a.png: 2 (0.1710), 0 (0.1366), 3 (0.1079)",
    # native errors that are not CUDA probing, and fatal ones, are shown
    "E0000 00:00:1796674018.309316   26173 pjrt_client.cc:99] Out of memory allocating 123 bytes",
    "F0000 00:00:1796674018.309316   26173 shape_util.cc:42] Check failed: rank >= 0",
    "Traceback (most recent call last):",
]
# Broader than jaxcnn.quiet.NOISE on purpose: anything that looks like a library's start-up line.
LOOKS_LIKE_NOISE = re.compile(r"cuInit|cuda drivers|oneDNN|absl::InitializeLog|XNNPACK|tf\.lite\.Interpreter|"
                              r"\[Gloo\]|^[IWE]\d{4} \d\d:|TF_ENABLE_ONEDNN_OPTS|rebuild TensorFlow")


def test_noise_lines_are_recognised_and_results_are_not():
    assert [line for line in NOISE if not quiet.is_noise(line)] == []
    assert [line for line in KEPT if quiet.is_noise(line)] == []
    assert quiet.is_noise("\r" + NOISE[1])


def test_filter_drops_noise_and_passes_everything_else():
    data = ("\n".join(NOISE[:3] + KEPT[:2] + NOISE[3:] + KEPT[2:]) + "\nprogress 1/3\rprogress 2/3\rno newline")
    read, write = os.pipe()
    out_read, out_write = os.pipe()
    os.write(write, data.encode())
    os.close(write)
    quiet.filter_main(read, out_write)
    os.close(read), os.close(out_write)
    with os.fdopen(out_read, "rb") as f:
        shown = f.read().decode()
    assert shown == "\n".join(KEPT) + "\nprogress 1/3\rprogress 2/3\rno newline"


_CHILD = """\
import os, sys
from jaxcnn import quiet
quiet.install()
print(sys.stderr.isatty(), flush=True)
os.write(2, {noise!r}.encode() + b"\\n")
os.write(2, b"a native line\\n")
print("a python line", file=sys.stderr)
os.write(2, b"last words")
if sys.argv[1] == "abort":
    os.abort()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal as Linux has it")
@pytest.mark.parametrize("ending", ["exit", "abort"])
def test_install_filters_descriptor_2_keeps_the_terminal_and_loses_nothing_on_a_crash(ending):
    """A process that installs the filter: noise gone, other native and Python lines shown,
    `sys.stderr` still the terminal; a process that aborts still gets its last native words out."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(noise=NOISE[3]), ending], stderr=slave,
                          stdout=subprocess.PIPE, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO, "JAXCNN_VERBOSE": "", "JAXCNN_DEBUG": ""})
    os.close(slave)
    chunks = []
    while True:  # the filter may still be writing its last bytes after the abort
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    err = b"".join(chunks).decode().replace("\r\n", "\n")
    assert proc.stdout == "True\n"  # progress bars and `verbose="auto"` still see a terminal
    assert (proc.returncode == 0) == (ending == "exit")
    assert "cuInit" not in err, err
    assert "a native line\n" in err and "a python line\n" in err and "last words" in err, err


def test_one_format_for_the_logger_whatever_configured_root_logging(capsys):
    """Someone's `logging.basicConfig` (or absl, TensorFlow) configured the root logger: jaxcnn's
    lines keep their own Keras-like format and go to stderr once, not through the root's handler."""
    from jaxcnn.train.callbacks import Progress, logger

    root_stream = io.StringIO()
    handlers, level = logging.root.handlers[:], logging.root.level
    logging.basicConfig(stream=root_stream, level=logging.DEBUG, force=True)
    try:
        Progress(verbose=2, epochs=8, steps=3).end(0, {"loss": 0.5, "accuracy": 0.75, "seconds": 3.14})
        logger.warning("EarlyStopping: %r is not in the logs", "val_auc")
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    assert capsys.readouterr().err == ("Epoch 1/8 - 3.1s - loss: 0.5000 - accuracy: 0.7500\n"
                                       "jaxcnn: warning: EarlyStopping: 'val_auc' is not in the logs\n")
    assert root_stream.getvalue() == ""


# -- the commands, end to end ------------------------------------------------------------------------
def _jaxcnn(*argv, cwd, **env):
    # TF_CPP_MIN_LOG_LEVEL unset (conftest sets it): the command line must not rely on the caller's
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "jaxcnn.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**base, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
                                            "JAXCNN_DEBUG": "", "JAXCNN_VERBOSE": "", **env})


def _noise(out) -> list[str]:
    return [line for line in (out.stdout + out.stderr).splitlines() if LOOKS_LIKE_NOISE.search(line)]


@pytest.mark.slow
def test_train_predict_evaluate_export_print_no_start_up_noise(tmp_path, data_dir):
    """Each command's whole output is its results; `--verbose` shows what was left out (so this
    test sees the noise where there is some: TensorFlow decodes the JPEG and runs the export)."""
    import numpy as np
    from PIL import Image

    run = str(tmp_path / "run")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(tmp_path / "b.jpg")
    env = {"JAXCNN_DATA_DIR": data_dir}
    commands = {
        "train": ("train", "mnist_cnn", "--limit", "64", "--epochs", "1", "--workdir", run, "--quiet"),
        "predict": ("predict", run, str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--convert", "--quiet"),
        "evaluate": ("evaluate", run, "--limit", "20"),
        "export": ("export", run, "--format", "onnx", "--check", "8"),
    }
    outs = {name: _jaxcnn(*argv, cwd=tmp_path, **env) for name, argv in commands.items()}
    for name, out in outs.items():
        assert out.returncode == 0, (name, out.stderr[-3000:])
        assert _noise(out) == [], (name, out.stdout + out.stderr)
    assert [ln.split(": ")[0] for ln in outs["predict"].stdout.splitlines()] == [str(tmp_path / "a.png"),
                                                                                 str(tmp_path / "b.jpg")]
    assert outs["predict"].stderr == ""
    assert outs["evaluate"].stdout.startswith(f"{run}: accuracy ") and outs["evaluate"].stderr == ""
    assert outs["export"].stdout.strip().endswith("model.onnx")
    assert outs["export"].stderr.startswith(f"{run}/export/model.onnx: checked in its runtime on 8 test images")
    assert [ln.split(":")[0] for ln in outs["train"].stderr.splitlines()] == ["mnist_cnn"]  # the result line

    verbose = _jaxcnn("--verbose", *commands["predict"], cwd=tmp_path, **env)
    assert verbose.returncode == 0 and verbose.stdout == outs["predict"].stdout
    assert _noise(verbose), verbose.stderr  # what the quiet run left out
