import subprocess
import sys

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
        cli.main(["demo", "--model", "alexnett"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zoo: error: unknown model 'alexnett'; available: alexnet")
    assert not any("Traceback" in line for line in err)


def test_demo_builds_the_paper_alexnet_and_takes_one_step(capsys):
    assert cli.main(["demo", "--batch-size", "2", "--towers", "2"]) == 0
    out = capsys.readouterr().out
    assert "60,965,224 parameters" in out
    loss = float(out.strip().splitlines()[-1].rsplit(" ", 1)[-1])
    assert loss == loss  # finite, not NaN
