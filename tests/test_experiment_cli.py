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


def test_train_writes_results_and_params(tmp_path, data_dir, capsys):
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
    assert json.load(open(os.path.join(workdir, "config.json")))["epochs_done"] == 2
    # Reruns in the same workdir: fewer epochs than done, or other settings, stop before any data.
    common = ["train", "mnist_cnn", "--limit", "320", "--workdir", workdir, "--data-dir", data_dir, "--quiet"]
    assert main([*common, "--epochs", "1"]) == 2
    assert main([*common, "--epochs", "2", "--batch-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "2 epochs are already done, so --epochs 1 is below that" in err
    assert "another configuration (recorded -> now):\n  batch_size: 32 -> 64" in err and "Traceback" not in err


def test_python_dash_m_experiment(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.mnist_cnn", "--epochs", "1", "--limit", "64",
                          "--workdir", str(tmp_path), "--quiet"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "test accuracy" not in out.stdout  # results go to stderr and the workdir
    assert json.load(open(tmp_path / "metrics.json"))["train_examples"] == 64


def test_unknown_experiment_is_a_clear_error(capsys):
    assert main(["train", "no_such_experiment"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxcnn: error: unknown experiment 'no_such_experiment'; known:") and "mnist_cnn" in err


def test_errors_are_one_line_exit_2_and_debug_shows_the_traceback(tmp_path, capsys):
    import pytest

    from jaxcnn.data import DataError

    missing = str(tmp_path / "no-such-dir")
    argv = ["train", "mnist_cnn", "--data-dir", missing, "--workdir", str(tmp_path / "w"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"jaxcnn: error: {os.path.join(missing, 'mnist')}: dataset 'mnist' not found")
    assert err[1].startswith("jaxcnn: (add --debug") and len(err) == 2
    with pytest.raises(DataError, match="no-such-dir"):
        main([*argv, "--debug"])
    # The workdir is checked first: a file there is reported before the (missing) data.
    (tmp_path / "file").write_text("")
    assert main([*argv[:-3], "--workdir", str(tmp_path / "file")]) == 2
    assert "file: the workdir exists and is not a directory" in capsys.readouterr().err


def test_jaxcnn_train_and_python_dash_m_share_one_entry(monkeypatch):
    from jaxcnn import experiment
    from jaxcnn.experiment import runner

    assert runner.run is experiment.run  # one entry, named from the package and from its module
    calls = []
    fake = lambda config, args: calls.append((config, args.overrides, args.fresh))  # noqa: E731
    monkeypatch.setattr(experiment, "run", fake)  # what `jaxcnn train` calls
    monkeypatch.setattr(runner, "run", fake)  # what `experiment.main` calls
    assert main(["train", "mnist_cnn", "--epochs", "2", "--set", "seed=3", "--fresh"]) == 0
    module = __import__("jaxcnn.cli", fromlist=["load_experiment"]).load_experiment("mnist_cnn")
    experiment.main(module.get_config(), ["--epochs", "2", "--set", "seed=3", "--fresh"])
    assert calls[0] == calls[1] and calls[0][1] == [("epochs", 2), ("seed", 3)]


def test_python_dash_m_reports_errors_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.mnist_cnn", "--data-dir", str(tmp_path / "nope"),
                          "--workdir", str(tmp_path / "w")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"jaxcnn: error: {tmp_path / 'nope' / 'mnist'}: dataset 'mnist' not found" in out.stderr


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


# -- the run folder and the one set of validators ------------------------------------------------------
def test_run_folder_names_writes_and_reads_back(tmp_path):
    import pytest

    from jaxcnn.model_card import NoTrainedModelError, make_card, read_card, write_card
    from jaxcnn.run import RunFolder

    folder = RunFolder(str(tmp_path))
    assert folder.metrics_path == str(tmp_path / "metrics.json")
    assert folder.checkpoints_dir("_finetune") == str(tmp_path / "checkpoints_finetune")
    folder.write_metrics({"test_loss": float("nan"), "acc": np.float32(0.5)})
    folder.update_metrics({"report_accuracy": 0.25, "report_loss": float("inf")})
    assert folder.read_metrics() == {"test_loss": None, "acc": 0.5, "report_accuracy": 0.25, "report_loss": None,
                                     "non_finite": ["test_loss", "report_loss"]}
    assert not any(p.endswith(".tmp") for p in os.listdir(tmp_path))
    card = make_card(model="mnist_cnn", model_kwargs={"num_classes": 10}, input_shape=(28, 28, 1),
                     input_dtype=np.uint8, class_names=range(10), loss="sparse_categorical_crossentropy")
    assert write_card(str(tmp_path), card) == folder.model_card_path and read_card(str(tmp_path)) == card
    with pytest.raises(NoTrainedModelError, match="no final weights"):
        folder.weights_source("final")
    with pytest.raises(NoTrainedModelError, match="no checkpoints"):
        folder.weights_source("auto")
    os.makedirs(folder.params_dir)
    os.makedirs(os.path.join(folder.checkpoints_dir(), "12"))
    assert folder.weights_source("auto") == (folder.params_dir, "latest")
    assert folder.weights_source("12") == (folder.checkpoints_dir(), 12)


def test_validators_live_in_one_place():
    import argparse

    import pytest

    from jaxcnn import cli, config, config_flags

    assert cli.positive_float is config.positive_float and cli.port_number is config.port_number
    assert cli.checkpoint_choice is config.checkpoint_choice and config_flags.positive_int is config.positive_int
    assert config.port_number("8080") == 8080 and config.positive_float("0.5") == 0.5
    assert config.checkpoint_choice("best") == "best" and config.checkpoint_choice("120") == "120"
    for parse, raw, match in [(config.port_number, "70000", r"must be a port number \(1-65535\), got 70000"),
                              (config.port_number, "0", "must be a positive integer, got 0"),
                              (config.positive_float, "inf", "must be a positive number, got inf"),
                              (config.positive_float, "x", "expected a number, got 'x'"),
                              (config.positive_int, "-1", "must be a positive integer, got -1"),
                              (config.checkpoint_choice, "newest",
                               "expected auto, final, best, latest or a step number, got 'newest'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=match):
            parse(raw)
