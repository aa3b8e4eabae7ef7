"""The GPU benchmark's every Keras path, run on the CPU with tiny sizes (`--smoke`)."""

import csv
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_writes_its_table(tmp_path):
    out = tmp_path / "gpu.csv"
    result = subprocess.run([sys.executable, "benchmarks/gpu.py", "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    models = {(r["model"], r["mode"]) for r in rows}
    for name in ("alexnet (one tower)", "alexnet (two towers)", "googlenet", "resnet50"):
        assert {(f"zoo.{name}", "train"), (f"zoo.{name}", "inference")} <= models
    assert {("ensemble of 2 zoo.resnet18", "one graph"),
            ("ensemble of 2 zoo.resnet18", "members in turn")} <= models
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    assert "one-graph ensemble / members in turn" in result.stdout
