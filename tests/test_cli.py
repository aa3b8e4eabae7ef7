import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from zoo import cli


def test_zoo_list_prints_every_model(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "alexnet" in out and "227x227" in out and "Krizhevsky" in out


def test_python_dash_m_zoo_and_console_script_agree():
    module = subprocess.run([sys.executable, "-m", "zoo", "list"], capture_output=True,
                            text=True, timeout=120)
    assert module.returncode == 0, module.stderr[-2000:]
    assert "alexnet" in module.stdout


def test_unknown_model_is_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["info", "alexnett"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zoo: error: unknown model 'alexnett'; available: alexnet")
    assert not any("Traceback" in line for line in err)


def test_info_prints_the_model_facts(capsys):
    assert cli.main(["info", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "25,557,032 trainable" in out and "4.09 G" in out and "zoo.resnet50(" in out


def test_train_command_writes_a_run_directory_and_reports_test_error(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    code = cli.main(["train", "--model", "alexnet", "--epochs", "1", "--batch-size", "128",
                     "--model-arg", "width=32", "--model-arg", "towers=2",
                     "--run-dir", run_dir])
    assert code == 0
    out = capsys.readouterr().out
    assert "Training alexnet" in out and "test top-1 error" in out
    assert f"Run directory: {run_dir}" in out

    assert {"statistics.npz", "history.csv", "config.json", "checkpoints"} <= set(
        os.listdir(run_dir))

    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["model_kwargs"] == {"width": 32, "towers": 2}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "alexnet", "--dataset", "nope"], "Unknown dataset 'nope'"),
        (["train", "--model", "alexnet", "--model-arg", "towers=3", "--epochs", "1"],
         "`towers` must be 1"),
        (["train", "--model", "alexnet", "--model-arg", "width"], "takes KEY=VALUE"),
    ],
)
def test_train_user_errors_are_one_line_and_exit_code_2(argv, message, capsys, tmp_path):
    assert cli.main(argv + ["--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zoo train: error:") and message in err[0]


@pytest.mark.parametrize("argv", [["train", "--model", "alexnet", "--strategy", "tpu"],
                                  ["train", "--model", "alexnet", "--epochs", "0"],
                                  ["train"]])
def test_train_bad_flags_exit_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_demo_smoke_run_end_to_end(tmp_path):
    """`zoo demo --quick`: every stage runs (mirrored strategy, variants, snapshots,
    evaluation, plots, report, export and reload) in a fresh process."""
    out = str(tmp_path / "demo")
    result = subprocess.run([sys.executable, "-m", "zoo", "demo", "--quick", "--output-dir", out],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 replicas" in result.stdout
    assert result.stdout.count("predicted") == 5  # the reloaded SavedModel classified them

    table = pd.read_csv(os.path.join(out, "results.csv"), index_col="model")
    ensemble_rows = [name for name in table.index if name.endswith(": ensemble")]
    assert len(ensemble_rows) == 4  # dropout, width, snapshots, all
    for name in ensemble_rows:
        mean = table.loc[name.replace(": ensemble", ": mean member")]
        assert table.loc[name, "nll"] < mean["nll"]
    for name in ("report.md", "size_curve.png", "reliability.png", "statistics.npz",
                 os.path.join("ensemble_savedmodel", "saved_model.pb"),
                 os.path.join("alexnet_dropout0p5", "learning_curves.png")):
        assert os.path.exists(os.path.join(out, name)), name
