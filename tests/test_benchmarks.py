"""The benchmarks CI runs on the CPU with tiny sizes (`--smoke`): the GPU benchmark's every
Keras path, and the CIFAR snapshot study's three runs."""

import csv
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_writes_its_table(tmp_path):
    """As on the GPU image: Keras on JAX, and TensorFlow not importable."""

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
    # The batches each row timed (it said --steps for all: fit's rows time the warm-up's
    # too, predict's two calls of 2 batches).
    steps = {(r["model"], r["mode"]): int(r["steps"]) for r in rows}
    assert steps["zoo.resnet50", "train"] == 2 and steps["zoo.resnet50", "inference"] == 1
    assert steps["ensemble of 2 zoo.resnet18", "one graph, predict"] == 4
    assert "one-graph ensemble / members in turn, predict" in result.stdout
    assert "(--smoke: tiny sizes on the CPU; these ratios check the code" in result.stdout
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
    # The full study in the smoke run's folder: a run of other settings there is one line.
    again = subprocess.run([sys.executable, "benchmarks/beyond_averaging.py", "--output-dir",
                            str(tmp_path)], capture_output=True, text=True, timeout=600,
                           cwd=REPO)
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr[-3000:]
    assert "holds a run with other settings" in again.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_mc_dropout_study_trains_each_seed_in_a_folder_of_its_own(tmp_path):
    """The README reports benchmarks/mc_dropout_digits.py for seeds 0-2, but every seed
    trained in one folder: seed 1 after seed 0 stopped with a traceback (a run of other
    settings there). One run, of seed 1, shows where each seed's folder is (running seed 0
    before it doubled the test's 286 s in CI)."""
    script = os.path.join(REPO, "benchmarks", "mc_dropout_digits.py")
    result = subprocess.run([sys.executable, script, "--seed", "1", "--epochs", "1",
                             "--samples", "2"], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(tmp_path / "runs" / "mc_dropout_digits") == ["seed1"]
    assert (tmp_path / "runs" / "mc_dropout_digits" / "seed1" / "results.csv").is_file()


@pytest.mark.all_backends
def test_the_timed_sides_are_checked_to_compute_the_same_numbers(monkeypatch):
    """A ratio of two different computations measures nothing: the step benchmark holds
    zoo.train's step to the hand-jitted one (a hand step of twice the learning rate is
    caught), and the ensemble benchmark the one graph to the members' mean."""
    import keras
    import numpy as np
    import tensorflow as tf

    import ensembles
    import zoo
    from benchmarks.common import check_same_results

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 8, 8, 3)).astype("float32")
    members = [zoo.resnet20(input_shape=(8, 8, 3), classes=3, width=0.25) for _ in range(2)]
    mean = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    check_same_results(ensembles.Ensemble(members).predict(x, verbose=0), mean, "ensemble")
    with pytest.raises(AssertionError, match=r"ensemble: the two sides disagree"):
        check_same_results(members[0].predict(x, verbose=0), mean, "ensemble")
    if keras.backend.backend() != "jax":
        return  # (the hand-jitted step is JAX's)
    from benchmarks.step_overhead import check_same_step

    batch = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 3)).batch(8)

    def build():  # weights decayed and spared (kernels; biases, BatchNorm), its statistics
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))

    assert check_same_step(build, batch) < 1e-4
    paper_sgd = zoo.PaperSGD  # zoo.train's optimizer is zoo.optimizers'; the hand's zoo's
    monkeypatch.setattr(zoo, "PaperSGD", lambda *args, **kwargs: paper_sgd(
        0.02, momentum=0.9, l2=5e-4))
    with pytest.raises(AssertionError, match=r"update the weights differently"):
        check_same_step(build, batch)


@pytest.mark.slow
def test_step_overhead_smoke_run_measures_both_steps():
    """benchmarks/step_overhead.py under JAX with tiny sizes: zoo.train's step and the
    hand-jitted one both train and are timed."""
    import json

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


def test_gpu_benchmark_rewrites_its_csv_after_each_row_and_skips_what_would_pass_the_deadline(
        tmp_path, capsys):
    """What a short GPU lease relies on, without a GPU: every row on disk as soon as it is
    measured, a phase skipped (and said) when its expected cost would pass the deadline, and
    the targets' ratios from the rows."""
    import time

    from benchmarks import gpu

    out = tmp_path / "rows.csv"
    results = gpu.Results(str(out), 100, {"batch": 256}, start=time.monotonic() - 90)
    assert not results.allows("resnet50")  # 90 s gone + 120 s expected > 100 s
    assert "skipped resnet50: 90 s gone" in capsys.readouterr().out
    assert gpu.Results(str(out), None, {}).allows("resnet50")  # no deadline
    results.add("keras", "zoo.alexnet (one tower)", "train", 1000.0, 227)
    assert [r["images_per_s"] for r in csv.DictReader(open(out))] == ["1000.0"]
    results.add("keras", "zoo.alexnet (two towers)", "train", 940.0, 227)
    rows = list(csv.DictReader(open(out)))
    assert [r["model"] for r in rows] == ["zoo.alexnet (one tower)", "zoo.alexnet (two towers)"]
    assert {r["batch"] for r in rows} == {"256"}
    assert [path.name for path in tmp_path.iterdir()] == ["rows.csv"]  # no scratch file left
    ratios = {r["ratio"]: (r["value"], r["target"]) for r in gpu.ratios(rows)}
    assert ratios == {"two-tower / one-tower AlexNet train": (0.94, 0.95)}
    # Two runs' files reported together: the medians of each side (the first run's rows
    # alone were used, without a word), and the count said.
    again = [{**row, "images_per_s": value} for row, value in zip(rows, ("1100", "1023"))]
    (ratio,) = gpu.ratios(rows + again)
    assert (ratio["value"], ratio["runs"]) == (round(981.5 / 1050, 3), 2)
    gpu._print_ratios(rows + again)
    assert "0.935x (target >= 0.95) (medians of 2 runs)" in capsys.readouterr().out
    # A run that measured nothing (--no-keras where torch or CUDA is missing) says so and
    # fails: it printed "wrote" a file it never wrote.
    with pytest.raises(SystemExit, match=r"measured nothing: .*none.csv was not written"):
        gpu.main(["--no-keras", "--out", str(tmp_path / "none.csv")])
    assert not (tmp_path / "none.csv").exists()


HLO = """HloModule jit_train_step, is_scheduled=true

%fused_computation.1 (param_0.1: f32[2,4]) -> f32[2,4] {
  %param_0.1 = f32[2,4]{1,0} parameter(0)
  ROOT %convolution.3 = f32[2,4]{1,0} convolution(%param_0.1), metadata={op_name="jit(train_step)/transpose(jvp(conv2_tower1))/conv_general_dilated"}
}

%fused_computation.2 (param_0.2: f32[2,4]) -> f32[2,4] {
  %param_0.2 = f32[2,4]{1,0} parameter(0)
  ROOT %convolution.4 = f32[2,4]{1,0} convolution(%param_0.2)
}

ENTRY %main.9 (state: f32[2,4]) -> f32[2,4] {
  %state = f32[2,4]{1,0} parameter(0)
  %fusion.1 = f32[2,4]{1,0} fusion(%state), kind=kLoop, calls=%fused_computation.1
  %fusion.2 = f32[2,4]{1,0} fusion(%fusion.1), kind=kCustom, calls=%fused_computation.2
  %multiply.5 = f32[2,4]{1,0} multiply(%fusion.2, %fusion.2), metadata={op_name="jit(train_step)/paper_sgd/mul"}
  ROOT %add.6 = f32[2,4]{1,0} add(%multiply.5, %state), metadata={op_name="jit(train_step)/jvp(conv2_tower2)/add"}
}
"""


def _profile_run(directory, device_micros):
    """A profiled run's files as gpu_profile's child writes them: the HLO dump, a Perfetto
    trace whose host launches each kernel the device runs, and the wall time of one step."""
    import gzip
    import json

    (directory / "hlo").mkdir(parents=True)
    (directory / "hlo" / "module_0001.jit_train_step.sm_90_gpu_after_optimizations.txt"
     ).write_text(HLO)
    events = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
              {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}}]
    for op, micros in device_micros.items():
        for pid in (1, 2):  # the host's launch (not counted) and the device's kernel
            events.append({"ph": "X", "pid": pid, "tid": 7, "ts": 0, "dur": micros,
                           "name": f"kernel_{op}", "args": {"hlo_op": op,
                                                            "hlo_module": "jit_train_step"}})
    trace = directory / "trace" / "plugins" / "profile" / "run"
    trace.mkdir(parents=True)
    with gzip.open(trace / "perfetto_trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)
    (directory / "wall.json").write_text(json.dumps({"seconds_per_step": 0.01, "steps": 2}))


def test_gpu_profile_traces_kernels_back_to_layers_and_sums_the_towers(tmp_path, capsys):
    """gpu_profile's path on a GPU's trace, without a GPU: the device's kernels counted (not
    the host's launches), named by the HLO's metadata (a fusion's from its computation, none
    from the operation it ends in), and the towers summed per stage beside the one tower."""
    from benchmarks import gpu_profile

    names = gpu_profile.op_names(_write_hlo(tmp_path / "dump"))
    assert gpu_profile.layer_of(names["fusion.1"]) == ("conv2_tower1", "backward")
    assert gpu_profile.layer_of(names["fusion.2"]) == ("(convolution, no metadata)", "other")
    assert gpu_profile.layer_of(names["multiply.5"]) == ("optimizer", "update")
    assert gpu_profile.layer_of(names["add.6"]) == ("conv2_tower2", "forward")

    _profile_run(tmp_path / "two", {"fusion.1": 3000, "add.6": 1000, "multiply.5": 500})
    rows, wall_ms = gpu_profile.layer_table(str(tmp_path / "two"))
    times = {(r["layer"], r["direction"]): r["ms_per_step"] for r in rows}
    assert times == {("conv2_tower1", "backward"): 1.5, ("conv2_tower2", "forward"): 0.5,
                     ("optimizer", "update"): 0.25}  # per step: 2 steps traced
    assert wall_ms == 10
    one = [{"layer": "conv2", "stage": "conv2", "direction": "forward", "ms_per_step": 1.0}]
    gpu_profile.print_tables({"alexnet": (one, 5.0), "alexnet2": (rows, wall_ms)})
    printed = capsys.readouterr().out
    stages = printed[printed.index("side by side"):].splitlines()
    conv2 = next(line.split() for line in stages if line.startswith("conv2"))
    assert [float(value) for value in conv2[1:]] == [1.0, 2.0]  # one tower; both towers


def _write_hlo(directory):
    directory.mkdir(parents=True)
    (directory / "module_0001.jit_train_step.sm_90_gpu_after_optimizations.txt").write_text(HLO)
    return str(directory)


def test_gpu_benchmark_arguments_and_reports_are_one_line(tmp_path, capsys):
    """Caught by the parser, before a GPU minute goes: --out a folder (a traceback after
    the first phase), --steps 0 (rows of 0 images/s), a --compile typo (the compile peers
    silently gone); --report of a missing or foreign file, an empty rate, and rows of
    another batch or precision (a --smoke file's beside a full run's made a ratio)."""
    from benchmarks import gpu

    header = "framework,model,mode,images_per_s,size,batch,steps,precision\n"
    full = tmp_path / "full.csv"
    full.write_text("\ufeff" + header  # (saved by Excel: a BOM)
                    + "keras,zoo.alexnet (one tower),train,100,227,256,10,mixed_bfloat16\n"
                    + "keras,zoo.alexnet (two towers),train,90,227,256,10,mixed_bfloat16\n")
    assert gpu.main(["--report", str(full)]) is None
    assert "two-tower / one-tower AlexNet train" in capsys.readouterr().out
    smoke = tmp_path / "smoke.csv"
    smoke.write_text(header + "keras,zoo.alexnet (one tower),train,5,67,2,1,mixed_bfloat16\n")
    empty = tmp_path / "empty.csv"
    empty.write_text(header + "keras,zoo.alexnet (one tower),train,,67,2,1,mixed_bfloat16\n")
    (tmp_path / "bench.csv").write_text("benchmark,ours,ratio\nx,y,1.0\n")
    keras_h200, torch_h100 = tmp_path / "keras.csv", tmp_path / "torch.csv"
    keras_h200.write_text(header.replace("\n", ",device\n") + "keras,zoo.resnet50,train,"
                          "100,224,256,10,mixed_bfloat16,NVIDIA H200\n")
    torch_h100.write_text(header.replace("\n", ",device\n") + "torchvision torch.compile,"
                          "resnet50,train,100,224,256,10,mixed_bfloat16,NVIDIA H100 80GB HBM3\n")
    for argv, message in (
            (["--out", str(tmp_path)], f"Cannot write the file {tmp_path}: a directory is "
                                       "there."),
            (["--steps", "0"], "--steps must be at least 1; received 0."),
            (["--deadline", "-1"], "--deadline is seconds from the start: a number > 0; "
                                   "received -1."),
            (["--compile", "resnet"], "argument --compile: invalid choice: 'resnet'"),
            (["--report", str(tmp_path / "absent.csv")], "Cannot read "),
            (["--report", str(tmp_path / "bench.csv")], "has no framework, model, mode, "
                                                        "images_per_s, batch, precision"),
            (["--report", str(empty)], "line 2: images_per_s must be a number; received ''."),
            (["--report", str(full), str(smoke)],
             "other batch sizes or precisions (batch 2, mixed_bfloat16; batch 256, "
             "mixed_bfloat16)"),
            # (the short lease's two runs on two kinds of GPU made one "side by side" ratio)
            (["--report", str(keras_h200), str(torch_h100)],
             "measured on other devices (NVIDIA H100 80GB HBM3, NVIDIA H200): a ratio is of "
             "two rates measured on one machine")):
        with pytest.raises(SystemExit) as exit:
            gpu.main(argv)
        assert exit.value.code == 2
        assert message in capsys.readouterr().err.strip().splitlines()[-1], argv
    # gpu_profile's --steps 0 was fit's "until the data ends" on an endless generator: a
    # profiled child that grew until the kernel killed it.
    from benchmarks import gpu_profile

    with pytest.raises(SystemExit) as exit:
        gpu_profile.main(["--steps", "0", "--out", str(tmp_path / "profile")])
    assert exit.value.code == 2 and not (tmp_path / "profile").exists()
    assert "--steps must be at least 1; received 0." in capsys.readouterr().err


def test_make_bench_checks_its_table_first_and_never_deletes_a_users_file(
        tmp_path, monkeypatch, capsys):
    """benchmarks/run_all.py: `-h` ran every benchmark and wrote a file named -h; a folder
    at --out failed after every benchmark had run; a user's NAME.partial.csv was written
    over, then deleted."""
    from benchmarks import common, run_all

    rows = [common.result_row("a", "zoo", 2.0, "keras", 1.0),
            [common.result_row("b", "zoo", 3.0, "keras", 1.5)]]
    monkeypatch.setattr(run_all, "BENCHMARKS", [lambda row=row: row for row in rows])
    out = tmp_path / "bench.csv"
    run_all.main(["--out", str(out)])
    table = list(csv.DictReader(open(out)))
    assert [(r["benchmark"], r["ratio"]) for r in table] == [("a", "2.0"), ("b", "2.0")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.csv"]  # partial removed
    (tmp_path / "bench.partial.csv").write_text("my notes\n")
    (tmp_path / "folder.csv").mkdir()
    for argv, message in ((["--out", str(out)], "bench.partial.csv is there and is not a "
                                                "table of this script's"),
                          (["--out", str(tmp_path / "folder.csv")], "a directory is there"),
                          (["-x"], "unrecognized arguments: -x")):
        with pytest.raises(SystemExit) as exit:
            run_all.main(argv)
        assert exit.value.code == 2 and message in capsys.readouterr().err, argv
    assert (tmp_path / "bench.partial.csv").read_text() == "my notes\n"
    assert list(csv.DictReader(open(out))) == table


@pytest.mark.slow  # three Python starts, two of them TensorFlow's
@pytest.mark.parametrize("script", ["folder_scan.py", "serving_runtimes.py",
                                    "step_overhead.py"])
def test_a_benchmark_asked_for_help_says_what_it_measures_and_runs_nothing(script):
    """Each read its argv by hand, or not at all: --help ran the whole benchmark (the
    serving table; step_overhead's minutes of JAX training)."""
    done = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: {script}") and "Run:" in done.stdout
    assert "img/s" not in done.stdout.split("Run:")[0].splitlines()[0]  # (no result row)
