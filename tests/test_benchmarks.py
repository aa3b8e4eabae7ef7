"""The benchmarks CI runs on the CPU with tiny sizes (`--smoke`): the GPU benchmark's every
Keras path, and the CIFAR snapshot study's three runs."""

import csv
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_writes_its_table(tmp_path):
    """As on the GPU image: Keras on JAX, and TensorFlow not importable."""
    import os

    out = tmp_path / "gpu.csv"
    code = ("import runpy, sys; sys.modules['tensorflow'] = None; "
            f"sys.argv = ['gpu.py', '--smoke', '--out', {str(out)!r}]; "
            "runpy.run_path('benchmarks/gpu.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600, cwd=REPO, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    models = {(r["model"], r["mode"]) for r in rows}
    for name in ("alexnet (one tower)", "alexnet (two towers)", "googlenet", "resnet50"):
        assert {(f"zoo.{name}", "train"), (f"zoo.{name}", "inference")} <= models
    assert ("zoo.alexnet (one tower)", "train, hand-jitted") in models  # (one, on a CPU)
    assert {("ensemble of 2 zoo.resnet18", mode) for mode in (
        "one graph", "members in turn", "one graph, predict", "members in turn, predict")
    } <= models
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    assert "one-graph ensemble / members in turn, predict" in result.stdout
    # --report measures nothing: the ratios of a CSV written before (as on a short lease).
    report = subprocess.run([sys.executable, "benchmarks/gpu.py", "--report", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert report.returncode == 0, report.stderr[-3000:]
    two, one = ({r["mode"]: float(r["images_per_s"]) for r in rows if r["model"] == m}
                for m in ("zoo.alexnet (two towers)", "zoo.alexnet (one tower)"))
    line = next(line for line in report.stdout.splitlines()
                if line.startswith("two-tower / one-tower AlexNet train"))
    assert f"{two['train'] / one['train']:.3f}x (target >= 0.95)" in line


@pytest.mark.slow
def test_snapshot_cifar_smoke_run_trains_all_three_rows(tmp_path):
    """benchmarks/snapshot_cifar.py --smoke: the standard-schedule run with its NoCycle
    checkpoints and the cyclic snapshot run, on a synthetic stand-in of CIFAR-10's shapes."""
    out = tmp_path / "snapshot_cifar.csv"
    result = subprocess.run([sys.executable, "benchmarks/snapshot_cifar.py", "--smoke", "--out",
                             str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r[""]: r for r in csv.DictReader(open(out))}
    assert list(rows) == ["single model", "NoCycle", "snapshot ensemble"]
    assert all(0 <= float(r["top1_error_%"]) <= 100 and float(r["nll"]) > 0
               for r in rows.values())


@pytest.mark.slow
def test_beyond_averaging_smoke_run_writes_both_tables(tmp_path):
    """benchmarks/beyond_averaging.py --smoke: the demo's members at tiny sizes, the three
    calibration orders of every group, and the teacher and both students."""
    result = subprocess.run([sys.executable, "benchmarks/beyond_averaging.py", "--smoke",
                             "--output-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "calibration.csv")))
    assert {r["group"] for r in rows} == {"alexnet variants", "resnet18 snapshots", "all"}
    assert len(rows) == 9 and all(float(r["nll"]) > 0 for r in rows)
    models = [r["model"] for r in csv.DictReader(open(tmp_path / "distillation.csv"))]
    assert models == ["teacher: snapshot ensemble", "student, labels only",
                      "student, distilled (T=4, alpha=0.9)"]


@pytest.mark.slow
def test_step_overhead_smoke_run_measures_both_steps():
    """benchmarks/step_overhead.py under JAX with tiny sizes: zoo.train's step and the
    hand-jitted one both train and are timed."""
    import json
    import os

    done = subprocess.run([sys.executable, "benchmarks/step_overhead.py", "--smoke", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    speeds = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(speeds) == {"zoo.train", "hand-jitted"}
    assert all(value > 0 for value in speeds.values())


@pytest.mark.slow
def test_gpu_profile_smoke_run_times_each_layer_of_the_step(tmp_path):
    """benchmarks/gpu_profile.py --smoke on the CPU: the trace's thunks are traced back, through
    the optimised HLO's metadata, to the Keras layers they belong to, forward and backward."""
    import os

    import pandas as pd

    done = subprocess.run([sys.executable, "benchmarks/gpu_profile.py", "--smoke", "--models",
                           "alexnet2", "--steps", "2", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "layers_alexnet2.csv")
    times = rows.set_index(["layer", "direction"])["ms_per_step"]
    for tower in ("tower1", "tower2"):
        for layer in ("conv2", "conv3", "conv4", "conv5"):
            assert times[(f"{layer}_{tower}", "forward")] > 0
            assert times[(f"{layer}_{tower}", "backward")] > 0
    assert times[("optimizer", "update")] > 0
    assert set(rows.loc[rows["layer"] == "conv2_tower2", "stage"]) == {"conv2"}
    assert "per stage (towers summed)" not in done.stdout  # one model: no side-by-side table
    assert "alexnet (two towers):" in done.stdout
