import json
import os
import subprocess
import sys

import numpy as np

from jaxcnn import checkpoint
from jaxcnn.cli import list_experiments, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_list_names_the_experiments(capsys):
    assert "mnist_cnn" in list_experiments()
    main(["list"])
    assert "mnist_cnn" in capsys.readouterr().out


def test_train_writes_results_and_params(tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    main(["train", "mnist_cnn", "--epochs", "2", "--limit", "320", "--workdir", workdir,
          "--data-dir", data_dir, "--quiet"])
    for f in ("history.json", "metrics.json", "curves.png"):
        assert os.path.getsize(os.path.join(workdir, f)) > 0
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert metrics["test_examples"] == 320 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["reported"]["test_accuracy"] == 0.9845
    assert len(history["val_accuracy"]) == 2
    restored = checkpoint.restore_params(os.path.join(workdir, "params"))
    assert restored["params"]["conv1"]["kernel"].shape == (3, 3, 1, 32)


def test_python_dash_m_experiment(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.mnist_cnn", "--epochs", "1", "--limit", "64",
                          "--workdir", str(tmp_path), "--quiet"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "test accuracy" not in out.stdout  # results go to stderr and the workdir
    assert json.load(open(tmp_path / "metrics.json"))["train_examples"] == 64


def test_unknown_experiment_is_a_clear_error(capsys):
    try:
        main(["train", "no_such_experiment"])
    except SystemExit as e:
        assert "unknown experiment 'no_such_experiment'" in str(e) and "mnist_cnn" in str(e)
    else:
        raise AssertionError("expected SystemExit")


def test_params_round_trip(tmp_path):
    params = {"conv": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    checkpoint.save_params(str(tmp_path / "p"), params)
    back = checkpoint.restore_params(str(tmp_path / "p"), like={"params": params, "batch_stats": {}})
    np.testing.assert_array_equal(back["params"]["conv"]["kernel"], params["conv"]["kernel"])


def test_augment_preview_command(tmp_path, data_dir):
    out = str(tmp_path / "preview.png")
    assert main(["augment-preview", "mnist", "--augment", "A", "--count", "2", "--out", out,
                 "--data-dir", data_dir]) == 0
    assert os.path.getsize(out) > 0


def test_convert_weights_command_reports_a_missing_file(tmp_path, capsys):
    assert main(["convert-weights", "vgg16", str(tmp_path / "no-such.h5"), str(tmp_path / "out")]) == 2
    assert "no-such.h5" in capsys.readouterr().err
