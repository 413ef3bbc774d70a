"""The chaos run (benchmarks/chaos.py) in the slow tier: N1 on 800 MNIST images for 3 epochs
on the device road over 2 fake devices, killed at least 20 times at random moments (SIGKILL,
SIGTERM, SIGINT; in start-up, steps, saves, validation, the final evaluation) and restarted;
the finished run equals the uninterrupted one bitwise (params, test metrics, history.json, the
CSV log, TensorBoard scalars) and leaves no temporary or partial folder behind.

Run it longer, on the other road or one device: `PYTHONPATH=. python benchmarks/chaos.py --help`.
"""

import importlib.util
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("chaos", os.path.join(REPO, "benchmarks", "chaos.py"))
chaos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chaos)


@pytest.mark.slow
def test_killed_20_times_the_run_still_equals_the_uninterrupted_one_bitwise(tmp_path, data_dir, capsys):
    args = ["--kills", "20", "--road", "device", "--devices", "2", "--images", "800", "--test-images", "200",
            "--epochs", "3", "--batch", "50", "--seed", "30", "--workdir", str(tmp_path), "--json",
            str(tmp_path / "chaos.json")]
    code = chaos.main(args)
    log = capsys.readouterr().out
    print(log)  # the kill counts and where they landed, in the test's output
    record = json.load(open(tmp_path / "chaos.json"))
    assert code == 0 and record["passed"], log
    assert record["kills"] >= 20 and not record["problems"], record
    assert set(record["by_kind"]) == {"SIGKILL", "SIGTERM", "SIGINT"}, record["by_kind"]
    assert any(p.startswith("save") for p in record["by_phase"]), record["by_phase"]
