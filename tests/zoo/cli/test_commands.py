import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import ensembles
import zoo
from safeio.checks import UserError
from tests.helpers import SMALL_VGG, run_python
from zoo import cli
from zoo.cli import commands, common, runs
from zoo.prediction import NoViewWarning


def test_zoo_list_prints_every_model(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "alexnet" in out and "227x227" in out and "Krizhevsky" in out


def test_python_dash_m_zoo_and_console_script_agree():
    module = subprocess.run([sys.executable, "-m", "zoo", "list"], capture_output=True,
                            text=True, timeout=120)
    assert module.returncode == 0, module.stderr[-2000:]
    assert "alexnet" in module.stdout


def test_zoo_help_and_list_start_neither_keras_nor_tensorflow():
    """What makes `zoo --help`, every `zoo COMMAND --help`, `zoo list`, `zoo info` and a
    mistyped model name or argument instant: the facts, choices, names and arguments are
    static (one fresh process checks them all)."""
    code = ("import sys\nfrom zoo.cli import main\n"
            "assert main(['list', 'resnet*']) == 0\n"
            "assert main(['train', '--model', 'resnt18']) == main(['info', 'resnet5']) == 2\n"
            "assert main(['train', '--model', 'resnet18', '--model-arg', 'widht=1']) == 2\n"
            "assert main(['info', 'resnet50']) == 0\n"
            "for argv in (['--help'], *([c, '--help'] for c in sys.argv[1:])):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n"
            "        assert e.code == 0, argv\n"
            "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subcommands = ["list", "info", "train", "evaluate", "ensemble", "distill", "export",
                   "diagnose", "search", "demo"]
    out = run_python(code, args=subcommands).stdout
    assert out.count("He, Zhang, Ren, Sun 2015") == 11 and "alexnet" not in out.split("usage")[0]
    assert "parameters        25,557,032 trainable" in out  # zoo info resnet50
    assert out.count("usage: zoo") == 1 + len(subcommands)
    assert "adam, rmsprop, adagrad" in out


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_output_that_cannot_be_written_is_one_line_and_a_reader_gone_is_quiet():
    """`zoo list > /dev/full` was "an internal error" and a traceback (the system names no
    file); `zoo list | head -0` (the reader gone before the output) ends quietly."""
    command = [sys.executable, "-m", "zoo", "list"]
    # (Output buffered as Python buffers a file or a pipe: with PYTHONUNBUFFERED, as set on
    # some machines, each print wrote at once, and the flush at exit was never tested.)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True,
                                timeout=120, env=env)
    assert (result.returncode, result.stderr) == (
        2, "zoo list: error: No space left on device: standard output\n")
    reader, writer = os.pipe()
    os.close(reader)
    result = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True,
                            timeout=120, env=env)
    os.close(writer)
    assert (result.returncode, result.stderr) == (1, "")


def test_every_flag_with_a_default_says_it_in_its_help():
    """`zoo diagnose --lr`, `--examples`, `zoo search --top`, `--lr`, ... set defaults their
    help did not tell; a number the help gives is the code's (the defaults of zoo search's
    ranges, written out, included); and zoo diagnose's --augment offered the presets it
    refuses."""
    import argparse
    import re

    sub = next(a for a in commands._parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
                continue
            shown = parser._get_formatter()._expand_help(action)
            assert "default" in shown, (name, action.option_strings, shown)
            said = re.search(r"\(default: ([^()]*)\)$", " ".join(shown.split()))
            if said and isinstance(action.default, (int, float, tuple)):
                values = action.default if isinstance(action.default, tuple) else [
                    action.default]
                numbers = re.findall(r"\d[\d.]*(?:e[-+]?\d+)?", said.group(1))
                assert [float(v) for v in numbers] == list(values), (
                    name, action.option_strings, shown)
    diagnose = sub.choices["diagnose"]
    augment = next(a for a in diagnose._actions if a.dest == "augment")
    assert "paper" not in augment.help and "flip" not in augment.help


def test_info_of_a_saved_file_says_what_it_holds(tmp_path, capsys, monkeypatch):
    """`zoo info MODEL.keras`: an ensemble's members, rule, weights and temperature, the
    input, the class names and the resize mode it records; a file that records neither says
    so; a missing file is one line."""
    import keras

    from tests.helpers import tiny_model

    names = [f"n{i}" for i in range(10)]
    members = [zoo.set_resize_mode(zoo.set_class_names(tiny_model(classes=10), names), "crop")
               for _ in range(2)]
    ensemble = ensembles.calibration.with_temperature(
        ensembles.Ensemble(members, weights=[3, 1]), 1.5)
    path = zoo.save_model(ensemble, str(tmp_path / "e.keras"))
    capsys.readouterr()
    assert cli.main(["info", path]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: an ensemble of 2 members (tiny_1, tiny_2), combined by mean, weights 0.75, 0.25",
        "  temperature       1.5 (calibrated)",
        "  input             8x8x3",
        "  classes           10: n0, n1, n2, n3, n4, n5, n6, n7, ...",
        "  resize mode       crop: trained on crops; zoo evaluate, predict and export resize "
        "images so",
        f"  parameters        {ensemble.count_params():,}"]
    plain = zoo.save_model(tiny_model(), str(tmp_path / "plain.keras"))
    assert cli.main(["info", plain]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{plain}: tiny\n") and "4 (no names recorded)" in out
    assert "none recorded (zoo predict and export centre-crop" in out
    # Converted weights' pixels: the resize line does not promise a centre crop they refuse.
    from zoo.pretrained import TORCHVISION

    converted = zoo.save_model(zoo.saving.set_input_pixels(tiny_model(), TORCHVISION),
                               str(tmp_path / "converted.keras"))
    assert cli.main(["info", converted]) == 0
    out = capsys.readouterr().out
    assert "  resize mode       none recorded\n" in out and "centre-crop" not in out
    assert "  preprocessing     " in out
    # An export folder or another file: what zoo info reads, not "Unknown model 'served'".
    (tmp_path / "served").mkdir()
    (tmp_path / "m.onnx").write_bytes(b"")
    for other, kind in ((tmp_path / "served", "folder"), (tmp_path / "m.onnx", "file")):
        assert cli.main(["info", str(other)]) == 2
        assert (f"zoo info describes a model name (zoo list) or a .keras file; received "
                f"'{other}', a {kind}") in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # (a run folder named after a model is no file of it)
    (tmp_path / "alexnet").mkdir()
    assert cli.main(["info", "alexnet"]) == 0
    # Other files users have: members calibrated one by one, an ensemble that also outputs
    # its members, a model of flat inputs, a hand-made graph around CombineMembers.
    calibrated = ensembles.Ensemble([ensembles.calibration.with_temperature(members[0], 2.0),
                                     members[1]], return_members=True)
    inputs = keras.Input((5,))
    flat = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    stacked = keras.layers.Concatenate(axis=1)([keras.layers.Reshape((1, 3))(
        keras.layers.Dense(3, activation="softmax")(inputs)) for _ in range(2)])
    handmade = keras.Model(inputs, ensembles.CombineMembers("mean")(stacked), name="mine")
    for model, expected in ((calibrated, ["  member temperatures 2, 1", "classes           10:"]),
                            (flat, ["  input             5\n", "classes           3 "]),
                            (handmade, [": mine, combining probabilities by mean (no member "
                                        "models)", "classes           3 "])):
        assert cli.main(["info", zoo.save_model(model, str(tmp_path / "m.keras"))]) == 0
        out = capsys.readouterr().out
        assert all(line in out for line in expected), (expected, out)
    assert cli.main(["info", str(tmp_path / "absent.keras")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo info: error: Cannot load {tmp_path / 'absent.keras'}: no such file."]
    # A named pipe (never opened) or a link to nothing is there: "no such file" sent the
    # user looking elsewhere.
    pipe, dangling = tmp_path / "pipe.keras", tmp_path / "dangling.keras"
    os.mkfifo(pipe)
    dangling.symlink_to(tmp_path / "moved.keras")
    for path in (pipe, dangling):
        assert cli.main(["info", str(path)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"zoo info: error: Cannot load {path}: it is not a regular file (a named pipe, a "
            "device, or a link to nothing)."]
        assert cli.main(["predict", str(path), str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{path} is no model file or export folder: " in err[0], err


def test_the_commands_choices_are_the_librarys():
    """--optimizer, --strategy, --combine and --format list their choices without importing
    Keras: the copies equal the modules' own."""
    from ensembles.export import FORMAT_CHOICES
    from ensembles.weights import METHOD_CHOICES

    assert common.OPTIMIZER_CHOICES == zoo.OPTIMIZER_CHOICES
    assert common.STRATEGY_CHOICES == zoo.distribute.STRATEGY_CHOICES
    assert common.COMBINE_CHOICES == ensembles.COMBINE_CHOICES
    assert common.EXPORT_FORMAT_CHOICES == FORMAT_CHOICES
    assert common.FIT_METHOD_CHOICES == METHOD_CHOICES
    from data.preprocess import RESIZE_CHOICES

    assert common.RESIZE_CHOICES == RESIZE_CHOICES


@pytest.mark.parametrize("argv, message", [
    (["info", "alexnett"], "zoo info: error: Unknown model 'alexnett'. Did you mean 'alexnet'? "
                           "Available: alexnet, googlenet"),
    (["train", "--model", "alexnet", "--model-arg", "tower=2"],
     "zoo train: error: alexnet has no argument 'tower'. Did you mean 'towers'? Its arguments:"),
    (["train", "--model", "resnet18", "--model-arg", "zero_init_residuals=True"],
     "Did you mean 'zero_init_residual'?"),
    # Arguments the command sets itself: a second value was a TypeError's traceback.
    (["train", "--model", "resnet18", "--model-arg", "classes=5"],
     "zoo train: error: --model-arg classes is set by the command: the dataset's class count; "
     "received 'classes=5'."),
    (["train", "--model", "resnet18", "--model-arg", "input_shape=(32, 32, 3)"],
     "--model-arg input_shape is set by the command: give --image-size"),
    # A key given twice: the last value won without a word.
    (["train", "--model", "resnet20", "--model-arg", "width=0.25", "--model-arg",
      "width=0.5"], "zoo train: error: --model-arg width is given twice; received "
                    "['width=0.25', 'width=0.5']."),
    # Logits or a relu trained as probabilities, and scored so (a top-5 error of 0 %).
    (["train", "--model", "resnet20", "--model-arg", "classifier_activation=relu"],
     "--model-arg classifier_activation is set by the command: it trains on the softmax's "
     "probabilities"),
    # A name TensorFlow's scopes refuse: an internal error after the statistics pass.
    (["train", "--model", "resnet20", "--model-arg", "name=bad name"],
     "zoo train: error: --model-arg name must start with a letter, digit or '.', then "
     "letters, digits and _ . - > (TensorFlow's name scopes, less the / Keras refuses in "
     "a name); received 'name=bad name'."),
    # A name with a / passed here, then Keras refused it: an internal error.
    (["train", "--model", "resnet20", "--model-arg", "name=a/b"],
     "--model-arg name must start with a letter"),
    # NaN bounds passed the range check, after the statistics pass wrote them down.
    (["search", "--model", "resnet20", "--lr", "nan", "1"],
     "--lr must be a (low, high) pair of finite numbers with low < high; "
     "received"),
    (["search", "--model", "resnet20", "--weight-decay", "1e-6", "inf"],
     "--weight-decay must be a (low, high) pair of finite numbers"),
    # A momentum for an optimizer that has none was dropped without a word.
    (["train", "--model", "alexnet", "--optimizer", "adam", "--momentum", "0.5"],
     "zoo train: error: --momentum is SGD's, Nesterov's and RMSprop's; --optimizer adam has "
     "none: received --momentum 0.5."),
    (["list", "mobilenet*"], "zoo list: error: No model matches 'mobilenet*'; available: alexnet"),
    (["info", "./my_data"], "Unknown model './my_data'"),
])
def test_typos_are_one_line_with_the_closest_name_before_any_data_is_read(argv, message,
                                                                          capsys, tmp_path):
    # The dataset folder does not exist: a check that read data first would say so instead.
    extra = ["--dataset", str(tmp_path / "missing")] if argv[0] == "train" else []
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"zoo {argv[0]}: error: "), err
    assert message in err[0]


@pytest.mark.parametrize("argv, message", [
    (["train", "--model-arg", "width=abc"], "`width` (a channel multiplier) must be a finite "
                                            "positive"),
    (["train", "--model-arg", "stem=foo"], "`stem` must be one of"),
    (["train", "--augment", "crop+flop"], "Unknown augmentation 'flop' in 'crop+flop'"),
    (["train", "--dataset", "digitz"], "Unknown dataset 'digitz' (did you mean 'digits'?): it "
                                         "is not 'digits'"),
    (["search", "--lr", "1", "0.1"], "--lr must be a (low, high) pair of finite "
                                     "numbers with low < high"),
    (["distill", "{teacher}", "--alpha", "1.5"], "`alpha`, the soft targets' weight, must lie"),
])
def test_bad_values_are_one_line_before_the_data_is_read_and_nothing_is_written(
        argv, message, tmp_path, capsys, monkeypatch):
    """Values only the builders, the pipeline or the library check: one line, before the
    training set's statistics are computed, and no run directory (nor .lock) left behind."""
    monkeypatch.chdir(tmp_path)
    command, rest = argv[0], [a.format(teacher=tmp_path / "missing.keras") for a in argv[1:]]
    assert cli.main([command, "--model", "resnet18", "--image-size", "8", *rest]) == 2
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line.startswith(f"zoo {command}: error: ") and message in line, line
    assert "statistics" not in out
    assert os.listdir(tmp_path) == []


def test_an_unknown_flag_is_one_line_with_the_closest_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--model", "alexnet", "--lr-patiense", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["zoo train: error: unrecognized arguments: --lr-patiense 3 (did you mean "
                   "--lr-patience?); see zoo train --help"]


@pytest.mark.parametrize("argv", [["train", "--model", "alexnet", "--epochs", "0"],
                                  ["predict", "m.keras", "x.png", "--top", "0"],
                                  ["search", "--model", "vgg11", "--trials", "-1"]])
def test_a_count_below_one_is_one_line_of_its_command(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    flag, value = argv[-2:]
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo {argv[0]}: error: {flag} must be at least 1; received {value}; see zoo "
        f"{argv[0]} --help"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "alexnet", "--batch-size", str(10**20)],
     f"--batch-size must be at most {2**31 - 1}; received {10**20}"),
    (["diagnose", "--model", "alexnet", "--overfit-steps", str(2**31)],
     f"--overfit-steps must be at most {2**31 - 1}; received {2**31}"),
    (["train", "--model", "alexnet", "--image-size", "100000"],
     "--image-size must be at most 4096; received 100000"),
    (["evaluate", "m.keras", "--output", ""], "--output names no file; received ''")])
def test_counts_past_tensorflows_integers_and_an_empty_output_are_one_line(argv, message,
                                                                            capsys):
    """They were "an internal error" (TensorFlow's out-of-range integer, an OOM for 1,257
    images of 10^10 pixels) after the run directory's lock was made; an unset "$OUT" wrote
    no table without a word."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo {argv[0]}: error: {message}; see zoo {argv[0]} --help"]


@pytest.mark.parametrize("argv", [
    ["train", "--model", "resnet20", "--run-dir", ""],
    ["ensemble", "a.keras", "b.keras", "--output", "e.keras", "--snapshots", ""],
    ["ensemble", "a.keras", "b.keras", "--output", "e.keras", "--fit-weights", ""],
    ["ensemble", "a.keras", "b.keras", "--output", "e.keras", "--calibrate-on", ""],
    ["demo", "--output-dir", ""], ["train", "--model", "resnet20", "--model-arg", ""],
    ["info", ""]])
def test_an_empty_value_is_one_line_not_the_default(argv, tmp_path, monkeypatch, capsys):
    """An unset shell variable (``--run-dir "$RUN"``) was taken as a flag left out: zoo
    train trained on in the default run directory (another run's), zoo ensemble made an
    ensemble of the file alone for ``--snapshots ''`` and fitted nothing for
    ``--fit-weights ''``, all with exit 0. Nothing is read or written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    flag = argv[-2] if argv[-2].startswith("--") else "MODEL"
    leave = ", or leave the flag out" if flag != "MODEL" else ""
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo {argv[0]}: error: {flag} is empty (an unset shell variable?): give a value"
        f"{leave}; received ''; see zoo {argv[0]} --help"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command, names", [
    ("train", ["statistics.npz"]), ("diagnose", ["update_ratios.csv"]),
    ("search", ["search.csv", "search.png"])])
def test_a_commands_outputs_that_no_run_wrote_are_refused_before_any_work(command, names,
                                                                           tmp_path, capsys):
    """A user's own statistics.npz, update_ratios.csv or search.csv in the run directory
    was replaced without a word (only a run's config.json, checkpoints, ... were checked)."""
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    for name in names:
        (run_dir / name).write_text("my own\n")
    argv = [command, "--model", "resnet20", "--run-dir", str(run_dir)]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"zoo {command}: error: {run_dir} holds {', '.join(names)}, which no run of this "
        "project wrote: the command would replace them. Give a new or empty --run-dir, or "
        "move them aside.")
    assert sorted(os.listdir(run_dir)) == sorted(names)
    assert all((run_dir / name).read_text() == "my own\n" for name in names)


def test_a_ctrl_c_python_can_only_report_reaches_the_main_thread(monkeypatch):
    """TensorFlow imports JAX where installed, and a Ctrl-C landing in JAX's garbage-
    collection callback was dropped ("Exception ignored in: <function _xla_gc_callback>"):
    the run trained to its end and exited 0. The command's hook passes it on."""
    import gc
    import time
    import types

    reported = []
    hook = commands._interrupts_kept(reported.append)
    other = types.SimpleNamespace(exc_value=ValueError("other"))
    hook(other)
    assert reported == [other]
    # A Ctrl-C in a real garbage-collection callback reaches the main thread after it. (The
    # hook's own interrupt_main raised inside the hook, where Python dropped it again.)
    monkeypatch.setattr(sys, "unraisablehook", hook)
    # (as in a command's process: Python's handler, which a test worker may have set aside)
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    fired = []

    def ctrl_c(phase, info):  # (once: a later collection raises nothing)
        if phase == "start" and not fired:
            fired.append(True)
            raise KeyboardInterrupt

    gc.callbacks.append(ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):  # (however late it comes on a busy machine)
            gc.collect()
            for _ in range(500):  # (the interrupt ends it: between two sleeps)
                time.sleep(0.01)
    finally:
        gc.callbacks.remove(ctrl_c)
        signal.signal(signal.SIGINT, previous)
    assert reported == [other]
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # the command's own:
    cli.main(["list", "alexnet"])
    assert getattr(sys.unraisablehook, "keeps_interrupts", False)


def test_ctrl_c_says_which_commands_resume(monkeypatch, capsys, tmp_path):
    """Exit 130 and one line; the commands that resume say from what (zoo search did not,
    though a search resumes from its finished trials)."""
    from zoo.cli import evaluate, train, tuning

    def interrupted(args):
        raise KeyboardInterrupt

    for module, name, argv, hint in (
            (train, "_cmd_train", ["train", "--model", "resnet18"],
             "; run the same command to resume from the last completed epoch"),
            (tuning, "_cmd_search", ["search", "--model", "resnet18"],
             "; run the same command to resume from the trials finished"),
            (evaluate, "_cmd_evaluate", ["evaluate", str(tmp_path / "m.keras")], "")):
        monkeypatch.setattr(module, name, interrupted)
        assert cli.main(argv) == 130
        assert capsys.readouterr().err.strip().splitlines() == [
            f"zoo {argv[0]}: interrupted{hint}"]


@pytest.mark.parametrize("format, suffix, package", [("onnx", ".onnx", "tf2onnx"),
                                                     ("litert", ".tflite", "ai_edge_litert")])
def test_a_runtime_export_writes_nothing_to_stderr(tmp_path, format, suffix, package):
    """`zoo export --format onnx/litert` in a fresh process with TensorFlow's C++ logging at
    its default level: stderr stays empty. ONNX showed four INFO lines of Grappler's
    ("Starting new session") and NumPy's FutureWarning about Keras' own tf2onnx module;
    LiteRT its converter's "Ignored output_format." and "Ignored drop_control_dependency."
    and its interpreter's "Created TensorFlow Lite XNNPACK delegate for CPU"."""
    pytest.importorskip(package)
    from tests.helpers import tiny_model

    model = zoo.save_model(tiny_model(), str(tmp_path / "m.keras"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "zoo", "export", model,
                             str(tmp_path / f"m{suffix}"), "--format", format], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"{format}: {tmp_path / f'm{suffix}'} ")


def test_the_commands_drop_tensorflows_retracing_count_and_keep_its_other_warnings():
    """zoo demo and zoo evaluate printed "5 out of the last 6 calls to <function ...>
    triggered tf.function retracing" blocks: each member's predict function, counted."""
    import logging

    import tensorflow as tf

    from zoo.cli import quiet

    quiet.tensorflow_started_quietly()
    quiet.tensorflow_started_quietly()  # (once is enough: no second filter)
    logger = tf.get_logger()
    assert logger.filters.count(quiet._not_retracing) == 1

    def record(message):
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, (), None)

    assert not logger.filter(record("5 out of the last 6 calls to <function f at 0x1> "
                                    "triggered tf.function retracing. Tracing is expensive"))
    assert logger.filter(record("Gradients do not exist for variables"))


def test_tensorflow_start_up_lines_never_reach_the_terminal_but_real_ones_do(capfd):
    """`zoo evaluate` (which starts TensorFlow) in a fresh process, with TensorFlow's C++
    logging at its default level: no start-up line on stderr, only the command's own one.
    And the filter itself passes every other line written to file descriptor 2 (checked in
    this process: the filter is the standard library's only)."""
    import os as _os

    from zoo.cli.quiet import descriptor_filtered

    env = {k: v for k, v in _os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import sys\nfrom zoo.cli import main\nstatus = main(['evaluate', 'absent.keras'])\n"
            "assert 'tensorflow' in sys.modules\nsys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "zoo evaluate: error: Cannot load absent.keras: no such file."], result.stderr
    capfd.readouterr()
    with descriptor_filtered():
        _os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                     b"written to STDERR\n")
        _os.write(2, b"E0000 00:00:1795811006.268156   31296 cuda_platform.cc:52] failed call "
                     b"to cuInit: INTERNAL: CUDA error\n")
        _os.write(2, b"I0000 00:00:1795.2 4713 cpu_feature_guard.cc:227] This TensorFlow "
                     b"binary is optimized\n")
        _os.write(2, b"W0000 00:00:1795.4 31034 auto_shard.cc:559] a real warning\n")
        _os.write(2, b"I0000 00:00:1795.5 31034 gpu_device.cc:2020] Created device /GPU:0\n")
        # A GPU machine that trains on its CPU says why in this line: it shows.
        _os.write(2, b"W0000 00:00:1795.6 31034 gpu_device.cc:2344] Cannot dlopen some GPU "
                     b"libraries. Skipping registering GPU devices...\n")
        _os.write(2, b"Traceback: a real error\n")
    assert capfd.readouterr().err.splitlines() == [
        "W0000 00:00:1795.4 31034 auto_shard.cc:559] a real warning",
        "W0000 00:00:1795.6 31034 gpu_device.cc:2344] Cannot dlopen some GPU libraries. "
        "Skipping registering GPU devices...", "Traceback: a real error"]


def test_train_and_distill_score_best_keras_too_where_validation_chose_another_epoch(
        tmp_path):
    """zoo train and zoo distill printed the last epoch's test score beside "the student:
    checkpoints/best.keras", which scored otherwise (89.17 % against the 91.67 % printed)."""
    from tests.helpers import tiny_model

    model = tiny_model()
    (tmp_path / "checkpoints").mkdir()
    zoo.save_model(model, str(tmp_path / "checkpoints" / "best.keras"))
    same = list(runs.scored_weights(model, str(tmp_path), "auto"))
    assert same == ["the last epoch's weights"]
    best = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in best])  # trained on after the best epoch
    scored = []
    for which in runs.scored_weights(model, str(tmp_path), "auto"):
        scored.append((which, model.get_weights()[0][0, 0, 0, 0]))
    best_keras = str(tmp_path / "checkpoints" / "best.keras")
    assert scored == [("the last epoch's weights", best[0][0, 0, 0, 0] + 1),
                      (f"{best_keras}, the epoch validation chose", best[0][0, 0, 0, 0])]
    assert model.get_weights()[0][0, 0, 0, 0] == best[0][0, 0, 0, 0] + 1  # put back after
    # An ulp apart (Keras' EMA swaps round the same epoch's weights): the same epoch.
    model.set_weights([np.nextafter(w, np.inf) for w in best])
    assert len(list(runs.scored_weights(model, str(tmp_path), "auto"))) == 1
    # In a cluster scoring is collective: the last epoch's weights alone, in every process.
    assert len(list(runs.scored_weights(model, str(tmp_path), "multi_worker"))) == 1


def test_info_prints_the_model_facts(capsys):
    assert cli.main(["info", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "25,557,032 trainable" in out and "4.09 G" in out
    assert "zoo.resnet50(include_top, weights, input_tensor" in out and "stem" in out
    # The published weights, with torchvision's ImageClassification preset for each.
    assert "tv_in1k (= imagenet): resnet50-0676ba61.pth" in out
    assert "tv2_in1k: resnet50-11ad3fa6.pth" in out
    assert ("shorter side to 232, centre crop 224, RGB / 255, mean (0.485, 0.456, 0.406), "
            "std (0.229, 0.224, 0.225)") in out


def test_train_command_writes_a_run_directory_and_reports_test_error(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    code = cli.main(["train", "--model", "alexnet", "--epochs", "1", "--batch-size", "128",
                     "--model-arg", "width=8", "--model-arg", "towers=2",
                     "--run-dir", run_dir])
    assert code == 0
    out = capsys.readouterr().out
    assert "Training alexnet" in out
    assert f"Run directory: {run_dir}" in out
    # No crop augmentation: the model saw whole images, which its checkpoints record.
    assert ("the checkpoints record it, and zoo predict and zoo export resize images whole "
            "for them") in out
    # Into a file or a pipe (as here), one line per epoch: no progress bar's updates.
    assert re.search(r"^\d+/\d+ - .* - loss: [\d.]+ ", out, re.M) and "━" not in out, out
    assert "\r" not in out
    # The printed test errors are ensembles.evaluate's on the same checkpoint and split.
    import data
    import ensembles

    printed = re.search(r"test top-1 error ([\d.]+) %, top-5 error ([\d.]+) % \(the last "
                        r"epoch's weights\)\n", out)  # (one epoch: best.keras is it too)
    assert printed, out
    model = ensembles.load(os.path.join(run_dir, "checkpoints", "last.keras"))
    row = ensembles.evaluate(model, data.load("digits", "test", image_size=67,
                                              batch_size=128)).loc["alexnet"]
    assert float(printed.group(1)) == pytest.approx(100 * row["top1_error"], abs=0.006)
    assert float(printed.group(2)) == pytest.approx(100 * row["top5_error"], abs=0.006)

    assert {"statistics.npz", "history.csv", "config.json", "checkpoints"} <= set(
        os.listdir(run_dir))

    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["model_kwargs"] == {"width": 8, "towers": 2}
    assert config["data"] == {"dataset": "digits", "image_size": 67, "augment": "none",
                              "normalize": "standardize", "batch_size": 128}
    # The dataset's class names are in the run's config and in its checkpoints.
    names = list(data.info("digits").class_names)
    assert config["class_names"] == names
    assert zoo.class_names(model) == names
    # So is the way its images became inputs: whole, resized (no crop augmentation).
    assert config["resize"] == "squash"
    assert zoo.resize_mode(model) == "squash"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "alexnet", "--dataset", "nope"], "Unknown dataset 'nope'"),
        (["train", "--model", "alexnet", "--dataset", "./photos"],
         "Dataset folder not found: './photos'"),
        (["train", "--model", "alexnet", "--model-arg", "towers=3", "--epochs", "1"],
         "`towers` must be 1"),
        (["train", "--model", "alexnet", "--model-arg", "width"], "takes KEY=VALUE"),
        # (these once ended in a traceback, or trained: backwards, or not at all)
        (["train", "--model", "alexnet", "--dataset", "flowers.v2"],
         "Unknown dataset 'flowers.v2'"),
        (["train", "--model", "alexnet", "--dataset", "setup.py"], "setup.py is a file: a "
                                                                   "dataset is 'digits', an"),
        # (a trailing '/' is a folder's: TFDS could not parse the name, and logged a line)
        (["train", "--model", "alexnet", "--dataset", "photos/"],
         "Dataset folder not found: 'photos/'"),
        # (--data-dir with the digits or a folder was ignored: a folder is not looked up there)
        (["train", "--model", "alexnet", "--data-dir", "tfds"], "--data-dir is where "
         "TensorFlow Datasets keeps its prepared datasets; --dataset digits is the embedded "
         "digits: leave out --data-dir (received --data-dir tfds)."),
        (["train", "--model", "alexnet", "--dataset", ".", "--data-dir", "tfds"],
         "--dataset . is an image folder, read from where it is"),
        (["train", "--model", "alexnet", "--momentum", "2"],
         "The momentum must be a number in [0, 1); received 2.0."),
        (["train", "--model", "alexnet", "--lr", "0"], "The learning rate must be a finite "
                                                       "number above 0"),
        (["train", "--model", "alexnet", "--lr", "nan"], "received nan"),
        (["train", "--model", "alexnet", "--weight-decay", "-1"],
         "The weight decay must be a finite number >= 0; received -1.0."),
        (["diagnose", "--model", "alexnet", "--lr", "-1"], "The learning rate must be"),
        (["train", "--model", "alexnet", "--coordinator", "localhost:1", "--num-processes",
          "2", "--process-id", "0"], "--coordinator, --num-processes, --process-id join a JAX "
                                     "cluster: give --strategy multi_worker with them"),
    ],
)
def test_train_user_errors_are_one_line_and_exit_code_2(argv, message, capsys, tmp_path):
    """...before anything is written in the run directory."""
    assert cli.main(argv + ["--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"zoo {argv[0]}: error:") and message in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.all_backends
def test_jax_mirrored_on_one_device_is_refused_before_the_statistics_pass(capsys, tmp_path):
    """Under JAX with one device (the JAX pass runs this process so), --strategy mirrored
    cannot split a batch: one line saying how to get two, before the run directory is made
    (it came after the statistics pass over the whole training set had written there)."""
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("TensorFlow's mirrored strategy splits the CPU in two")
    if len(keras.distribution.list_devices()) > 1:
        pytest.skip("this JAX process sees several devices")
    argv = ["train", "--model", "resnet18", "--strategy", "mirrored", "--image-size", "16",
            "--model-arg", "stem=cifar", "--model-arg", "width=0.125", "--run-dir",
            str(tmp_path / "r")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "strategy='mirrored' needs at least 2 devices on the jax " \
        "backend" in err[0] and "XLA_FLAGS=--xla_force_host_platform_device_count=2" in err[0]
    assert not (tmp_path / "r").exists()


MIRRORED_UNEVEN_BATCHES = """
import json, sys
from zoo import cli
folder, run_dir = sys.argv[1:]
common = ["train", "--model", "resnet18", "--model-arg", "stem=cifar", "--model-arg",
          "width=0.0625", "--image-size", "16", "--dataset", folder, "--strategy", "mirrored",
          "--epochs", "1"]
refused = cli.main(common + ["--jit-compile", "--run-dir", run_dir + "_jit"])
trained = cli.main(common + ["--batch-size", "3", "--run-dir", run_dir])
print(json.dumps([refused, trained]))
"""


@pytest.mark.slow  # two fresh processes, one training under the mirrored strategy: 20 s
def test_mirrored_training_takes_odd_batches_and_last_batches_smaller_than_the_replicas(
        tmp_path):
    """Under TensorFlow's two-replica mirrored strategy a batch of 3 (17/16 of a batch of
    33 too) stopped Keras' first build with a traceback, and a last training or
    validation batch of 1 left a replica empty, which Keras' step failed on; --jit-compile
    failed as XLA cannot reach the variables of a device split in two: one line now.
    10 images a split at batch 3: the training epoch drops its last image, validation
    and the test split scored at the end pad their last batch with an example of weight
    0, so their accuracies are of 10 images."""
    _digit_folder(str(tmp_path / "digits"))
    shutil.copytree(tmp_path / "digits" / "validation", tmp_path / "digits" / "test")
    run_dir = str(tmp_path / "run")
    result = run_python(MIRRORED_UNEVEN_BATCHES, args=(str(tmp_path / "digits"), run_dir))
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [2, 0], result.stderr[-3000:]
    assert "--jit-compile does not combine with --strategy mirrored here: the strategy's 2 " \
        "replicas are one device split in parts" in result.stderr
    assert not os.path.exists(run_dir + "_jit")
    assert "test top-1 error" in result.stdout  # its last batch of 1 padded too
    history = pd.read_csv(os.path.join(run_dir, "history.csv"))
    assert np.isfinite(history["val_loss"]).all()
    # The validation accuracy is of the 10 images, not of the padding: as one device
    # scores the last epoch's weights on them.
    import data

    last = zoo.load_model(os.path.join(run_dir, "checkpoints", "last.keras"))
    alone = ensembles.evaluate(last, data.load(str(tmp_path / "digits"), "validation",
                                               image_size=16, batch_size=10))
    assert 1 - history["val_top1_accuracy"].iloc[-1] == pytest.approx(
        alone["top1_error"].iloc[0], abs=1e-6)
    # JAX: a batch that does not split over the devices is one line before any work.
    jax = run_python(
        "import sys; from zoo import cli; sys.exit(cli.main(sys.argv[1:]))", check=False,
        env={"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        args=["train", "--model", "resnet18", "--model-arg", "stem=cifar", "--strategy",
              "mirrored", "--batch-size", "7", "--run-dir", str(tmp_path / "jax")])
    assert jax.returncode == 2 and "--batch-size 7 does not split over the 2 devices of " \
        "--strategy mirrored" in jax.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "jax").exists()


def test_a_mixed_precision_checkpoint_loads_for_inference_without_a_warning(tmp_path,
                                                                            capsys):
    """Every inference command warned "Skipping variable loading for optimizer" of a
    mixed_float16 run's checkpoint (its LossScaleOptimizer's variables): the weights were
    fine, the optimizer unused. They load without it."""
    import keras

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = zoo.resnet20(input_shape=(8, 8, 3), classes=3, width=0.25)
        model.compile(zoo.PaperSGD(0.01), "sparse_categorical_crossentropy")
        model.fit(np.zeros((4, 8, 8, 3), "float32"), np.zeros(4, "int32"), verbose=0)
    finally:
        keras.config.set_dtype_policy(policy)
    path = str(tmp_path / "half.keras")
    zoo.save_model(model, path)
    import tensorflow as tf

    image = str(tmp_path / "a.png")
    with open(image, "wb") as f:
        f.write(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert cli.main(["info", path]) == 0
        table = zoo.predict(path, [image])
    assert not [str(w.message) for w in said if "Skipping variable loading" in str(w.message)]
    assert "resnet20" in capsys.readouterr().out and len(table) == 1


def _digit_folder(path, size=16):
    import tensorflow as tf

    for split in ("train", "validation"):
        for label in range(10):
            os.makedirs(os.path.join(path, split, str(label)))
            image = np.full((size, size, 3), 25 * label, np.uint8)
            with open(os.path.join(path, split, str(label), "a.png"), "wb") as f:
                f.write(tf.io.encode_png(image).numpy())


@pytest.mark.parametrize("flag, value, change", [
    ("--normalize", "none", "data.normalize 'standardize' -> 'none'"),
    ("--augment", "crop", "data.augment 'none' -> 'crop'"),
    ("--batch-size", "32", "data.batch_size 64 -> 32"),
    ("--image-size", "20", "data.image_size 16 -> 20"),
    ("--dataset", "other_digits", "data.dataset 'digits' -> "),
])
def test_a_resume_with_other_data_settings_is_refused_before_any_work(
        flag, value, change, tmp_path, capsys, monkeypatch):
    """The data's settings are in config.json: a stopped run resumed with another
    normalisation, augmentation, batch size, image size or dataset is refused in one line
    naming the change, before the statistics pass (it once trained on, and a changed
    --normalize even changed the checkpoints' architecture mid-run)."""
    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)  # what a stopped run leaves
    given = {"dataset": "digits", "image_size": 16, "augment": "none",
             "normalize": "standardize", "batch_size": 64}
    (run_dir / "config.json").write_text(json.dumps({"seed": 0, "data": given}))
    if flag == "--dataset":  # an image folder of the digits' classes
        value = str(tmp_path / value)
        _digit_folder(value)
    module = importlib.import_module("data.pipeline")
    monkeypatch.setattr(module, "compute_statistics",
                        lambda *args: pytest.fail("statistics computed before the refusal"))
    argv = ["train", "--model", "resnet18", "--epochs", "1", "--model-arg", "width=0.0625",
            "--model-arg", "stem=cifar", "--run-dir", str(run_dir),
            *(f"--{k.replace('_', '-')}={v}" for k, v in given.items()), f"{flag}={value}"]
    before = sorted(os.listdir(run_dir))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"holds a run with other settings ({change}" in err[0], err
    assert sorted(os.listdir(run_dir)) == before


def test_a_resume_compares_dataset_folders_not_what_was_typed(tmp_path, capsys, monkeypatch):
    """A run on --dataset photos resumed with ./photos/ was refused ('photos' ->
    './photos/'), and one resumed from another working directory whose photos/ is another
    folder went on. The folder is what counts: config.json records its absolute path (a
    run that recorded it as typed resumes with any name of that folder)."""
    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)  # what a stopped run leaves
    given = {"image_size": 16, "augment": "none", "normalize": "standardize",
             "batch_size": 64}
    (run_dir / "config.json").write_text(json.dumps({"seed": 0, "data": {
        "dataset": "photos", **given}}))  # as runs recorded it: as typed, in tmp_path
    _digit_folder(tmp_path / "photos")
    _digit_folder(tmp_path / "elsewhere" / "photos")

    class Passed(Exception):
        pass

    def statistics(*args):
        raise Passed  # the resume was accepted: the statistics pass comes next

    monkeypatch.setattr(importlib.import_module("data.pipeline"), "compute_statistics",
                        statistics)
    argv = ["train", "--model", "resnet18", "--epochs", "1", "--model-arg", "width=0.0625",
            "--model-arg", "stem=cifar", "--run-dir", str(run_dir),
            *(f"--{k.replace('_', '-')}={v}" for k, v in given.items())]
    monkeypatch.chdir(tmp_path)
    for typed in ("./photos/", str(tmp_path / "photos"), "photos"):
        with pytest.raises(Passed):
            cli.main(argv + [f"--dataset={typed}"])
    # A run records the folder's absolute path: from elsewhere, photos/ is another folder.
    (run_dir / "config.json").write_text(json.dumps({"seed": 0, "data": {
        "dataset": str(tmp_path / "photos"), **given}}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()  # (the lines the CLI printed for the test's own exception)
    assert cli.main(argv + ["--dataset=photos"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    change = f"data.dataset {str(tmp_path / 'photos')!r} -> " \
        f"{str(tmp_path / 'elsewhere' / 'photos')!r}"
    assert len(err) == 1 and f"holds a run with other settings ({change})" in err[0], err


def test_a_stopped_run_resumes_with_the_statistics_it_trained_with(tmp_path, capsys,
                                                                    monkeypatch):
    """A run directory holding a stopped run (its backup) and the statistics it trained
    with: `zoo train` reads those instead of the training set, and refuses other settings
    in one line without first computing any statistics. Its statistics file unreadable:
    one line naming it, and nothing in the directory changed."""
    import data

    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)  # what a stopped run leaves
    (run_dir / "config.json").write_text(json.dumps({"seed": 12345}))
    statistics = data.pipeline("digits", 16).statistics
    statistics.save(str(run_dir / "statistics.npz"))
    computed = []  # data.pipeline's calls of compute_statistics
    module = importlib.import_module("data.pipeline")  # (data.pipeline is the function)
    monkeypatch.setattr(module, "compute_statistics",
                        lambda *args: computed.append(args) or data.compute_statistics(*args))
    argv = ["train", "--model", "resnet18", "--image-size", "16", "--epochs", "1",
            "--model-arg", "width=0.0625", "--model-arg", "stem=cifar",
            "--run-dir", str(run_dir)]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "Computing the training set's pixel statistics" not in captured.out
    assert f"the pixel statistics the run trained with ({run_dir / 'statistics.npz'})" in (
        captured.out)
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "holds a run with other settings (" in err[0], err
    assert "; seed 12345 -> 0)" in err[0]
    assert computed == []

    (run_dir / "statistics.npz").write_bytes(b"PK\x03\x04 truncated")
    before = sorted(os.listdir(run_dir))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"zoo train: error: {run_dir / 'statistics.npz'} is unreadable ("), err
    assert "holds a backup of a run that trained with it" in err[0]
    assert sorted(os.listdir(run_dir)) == before
    assert (run_dir / "statistics.npz").read_bytes() == b"PK\x03\x04 truncated"

    # A run zoo.train started from Python (the README's example, then its shell command on
    # the same directory) has none: the command computed new statistics and wrote them
    # into that run, then was refused on its other settings.
    os.remove(run_dir / "statistics.npz")
    (run_dir / "config.json").write_text(json.dumps(dict.fromkeys(
        ["model", "optimizer", "keras", "started"], "x")))
    before = sorted(os.listdir(run_dir))
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"zoo train: error: {run_dir} holds a run without the pixel statistics a zoo command "
        "trains with (no statistics.npz: a run zoo.train started from Python, or the file was "
        "removed): this command would normalise its images otherwise. Give another "
        "--run-dir, or resume it from Python."]
    assert "pixel statistics (" not in captured.out and computed == []
    assert sorted(os.listdir(run_dir)) == before


INTERRUPTED_TRAIN = """
import sys
import warnings
import keras
import zoo
from zoo import cli

class CtrlC(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt

real = zoo.train
zoo.train = lambda *a, **k: real(*a, callbacks=[CtrlC()], **k)
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_an_interrupted_zoo_train_resumes_with_its_own_statistics(tmp_path):
    """Ctrl-C after the first of two epochs, then the same command in a new process: it
    resumes from the backup with the statistics file the run wrote (read, not rewritten)
    and ends. (Each in a process of its own: a run interrupted inside TensorFlow's fit
    leaves that process unfit for another.)"""
    run_dir = tmp_path / "run"
    # (A ResNet-18 at 1/16 width, CIFAR stem, 16x16, batch 128 crashed TensorFlow 2.21's
    # compiled step in 5 of 8 runs here, interrupted or not, old code too; with
    # TF_ENABLE_ONEDNN_OPTS=0 in none of 4. The AlexNet of the train-command test did not.)
    argv = ["train", "--model", "alexnet", "--epochs", "2", "--batch-size", "128",
            "--model-arg", "width=8", "--model-arg", "towers=2", "--run-dir", str(run_dir)]
    stopped = run_python(INTERRUPTED_TRAIN, args=argv, check=False)
    assert stopped.returncode == 130, stopped.stderr[-3000:]  # one line, not a traceback
    assert stopped.stderr.strip().splitlines()[-1] == (
        "zoo train: interrupted; run the same command to resume from the last completed "
        "epoch"), stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    assert (run_dir / "backup").is_dir()
    written = (run_dir / "statistics.npz").read_bytes()

    resumed = run_python("import sys; from zoo import cli; sys.exit(cli.main(sys.argv[1:]))",
                         args=argv)
    assert "Resuming: the pixel statistics the run trained with" in resumed.stdout
    assert "Computing the training set's pixel statistics" not in resumed.stdout
    assert (run_dir / "statistics.npz").read_bytes() == written
    assert len(pd.read_csv(run_dir / "history.csv")) == 2


def test_file_system_faults_are_one_line_naming_the_path(tmp_path, capsys):
    """A run directory that is a file, or a file where one of its folders should be: one
    line with the OS's reason and the path, exit 2."""
    (tmp_path / "a_file").write_text("x")
    for run_dir in (tmp_path / "a_file", tmp_path / "a_file" / "run"):
        assert cli.main(["train", "--model", "resnet18", "--run-dir", str(run_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("zoo train: error:"), err
        assert str(tmp_path / "a_file") in err[0], err
    assert (tmp_path / "a_file").read_text() == "x"


@pytest.mark.parametrize("code, reason", [(30, "Read-only file system"),
                                          (13, "Permission denied")])
def test_a_read_only_or_forbidden_run_directory_is_one_line(tmp_path, capsys, monkeypatch,
                                                            code, reason):
    """The OS refuses the run directory (a read-only mount, a folder without permission;
    simulated, as root may write anywhere): one line with its reason and the path."""
    forbidden = str(tmp_path / "mount")
    real = os.makedirs

    def makedirs(path, *args, **kwargs):
        if os.fspath(path).startswith(forbidden):
            raise (PermissionError if code == 13 else OSError)(code, reason, os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    run_dir = os.path.join(forbidden, "run")
    assert cli.main(["train", "--model", "resnet18", "--run-dir", run_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"zoo train: error: {reason}: {run_dir}"]


def _list_raises(monkeypatch, error):
    """Make `zoo list` raise ``error``; returns the real parser factory."""
    parser = commands._parser

    def raising(args):
        raise error

    def patched():
        result = parser()
        result._subparsers._group_actions[0].choices["list"].set_defaults(run=raising)
        return result

    monkeypatch.setattr(commands, "_parser", patched)
    return parser


def test_a_full_disk_is_one_line_naming_the_file_and_the_free_space(tmp_path, capsys,
                                                                     monkeypatch):
    import errno

    path = str(tmp_path / "table.csv")
    _list_raises(monkeypatch, OSError(errno.ENOSPC, "No space left on device", path))
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.fullmatch(rf"zoo list: error: No space left on device: {re.escape(path)} "
                        r"\([\d,.]+ (GB|MB|kB|bytes) free there\)", err[0]), err


def test_a_bug_shows_its_traceback_and_zoo_debug_shows_every_one(capsys, monkeypatch,
                                                                  tmp_path):
    """A ValueError from inside the library is a bug, not the user's mistake: it is not
    turned into a one-line error. ZOO_DEBUG=1 shows the traceback of a user error too."""
    parser = _list_raises(monkeypatch, ValueError("an internal inconsistency"))
    with pytest.raises(ValueError, match="an internal inconsistency"):
        cli.main(["list"])
    assert "an internal error, not a mistake of yours" in capsys.readouterr().err
    monkeypatch.setattr(commands, "_parser", parser)
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(UserError, match="Unknown dataset 'nope'"):
        cli.main(["train", "--model", "alexnet", "--dataset", "nope", "--run-dir",
                  str(tmp_path / "r")])
    # ... said as the user's mistake, not "an internal error" (as it was under ZOO_DEBUG)
    err = capsys.readouterr().err
    assert "zoo train: error: Unknown dataset 'nope'" in err and "internal error" not in err


@pytest.mark.parametrize("argv", [["train", "--model", "alexnet", "--strategy", "tpu"],
                                  ["train", "--model", "alexnet", "--epochs", "0"],
                                  ["train", "--model", "alexnet", "--seed", "-1"],
                                  ["diagnose", "--model", "alexnet", "--seed", str(2**32)],
                                  ["search", "--model", "resnet18", "--width", "1+"],
                                  ["train"]])
def test_train_bad_flags_exit_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if "--seed" in argv:  # (Keras' own check came after the statistics pass, a traceback)
        assert f"--seed must be in [0, 2**32 - 1]; received {argv[-1]}" in err


@pytest.mark.slow
def test_demo_smoke_run_end_to_end(tmp_path):
    """`zoo demo --quick` in a fresh process: every stage runs (the mirrored strategy,
    variants, snapshots, evaluation, plots, report, export and reload), and the table's
    combined row with weights fitted on validation is what the exported SavedModel serves:
    its NLL on the test split equals scikit-learn's log loss of the served probabilities."""
    import tensorflow as tf
    from sklearn.metrics import log_loss

    import data

    out = str(tmp_path / "demo")
    result = subprocess.run([sys.executable, "-m", "zoo", "demo", "--quick", "--output-dir", out],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 replicas" in result.stdout
    assert result.stdout.count("training alexnet") == 3  # dropout 0.3 and 0.4, width 384
    assert result.stdout.count("predicted") == 5  # the reloaded SavedModel classified them
    assert "to train" not in result.stdout and "resuming" not in result.stdout
    assert ("exporting the ensemble of every member (weights fitted on validation)"
            in result.stdout)

    table = pd.read_csv(os.path.join(out, "results.csv"), index_col="model")
    assert [name for name in table.index if name.endswith(": ensemble")] == [
        "alexnet variants: ensemble", "resnet18 snapshots: ensemble", "all: ensemble",
        "all, weights fitted on validation: ensemble"]
    report = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert "AlexNet members (two towers, LRN; the first on 2 replicas" in report
    assert "ResNet-18 snapshots" in report
    for name in ("report.md", "size_curve.png", "reliability.png", "statistics.npz",
                 os.path.join("ensemble_savedmodel", "saved_model.pb"),
                 os.path.join("alexnet_dropout0p3", "learning_curves.png")):
        assert os.path.exists(os.path.join(out, name)), name

    served = tf.saved_model.load(os.path.join(out, "ensemble_savedmodel"))
    with open(os.path.join(out, "ensemble_savedmodel", "assets", "zoo_model.json"),
              encoding="utf-8") as f:
        assert json.load(f)["resize"] == "crop"  # every member trained on crops
    test = data.load("digits", "test", scale=data.crop_scale(67), center_crop=67,
                     batch_size=128)
    probs, labels = [], []
    for images, y in test:
        probs.append(served.serve(images)["probabilities"].numpy())
        labels.append(y.numpy())
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    served_row = table.loc["all, weights fitted on validation: ensemble"]  # what is served
    assert served_row["nll"] == pytest.approx(log_loss(labels, probs, labels=range(10)),
                                              rel=1e-4)
    assert served_row["top1_error"] == pytest.approx(np.mean(probs.argmax(1) != labels),
                                                     abs=1e-6)


def test_the_demos_resnet_member_saved_here_runs_under_jax(tmp_path):
    """The demo's ResNet member resizes its input inside the model. Saved under TensorFlow,
    it loads and predicts under JAX with the same numbers (1e-4): its resize is one every
    backend has (TensorFlow's area averaging, which it used, made JAX refuse the file)."""
    import types

    import keras

    from zoo.cli.demo import resnet_member

    if keras.backend.backend() != "tensorflow":
        pytest.skip("saved under TensorFlow, run under JAX")
    keras.utils.set_random_seed(0)
    stand_in = types.SimpleNamespace(input=lambda: keras.Input((67, 67, 3)),
                                     info=types.SimpleNamespace(num_classes=10))
    model = resnet_member(stand_in)
    images = np.random.default_rng(0).uniform(0, 255, (2, 67, 67, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", model.predict(images, verbose=0))
    model.save(tmp_path / "member.keras")
    run_python("import sys, numpy as np, keras\n"
               "model = keras.saving.load_model(sys.argv[1] + '/member.keras')\n"
               "got = model.predict(np.load(sys.argv[1] + '/images.npy'), verbose=0)\n"
               "np.testing.assert_allclose(got, np.load(sys.argv[1] + '/expected.npy'), "
               "atol=1e-4)\n", env={"KERAS_BACKEND": "jax"}, args=[str(tmp_path)])


@pytest.mark.slow
@pytest.mark.all_backends
def test_demo_quick_runs_under_jax_with_keras_distribution(tmp_path):
    """`KERAS_BACKEND=jax zoo demo --quick` in a fresh process (the JAX pass runs it): the
    first AlexNet trains data parallel (keras.distribution.DataParallel over two CPU
    devices, which the command asks XLA for), and the table, the plots, the export and the
    served predictions all come out as under TensorFlow."""
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("the JAX pass runs it (a fresh JAX process, whatever this one runs)")
    out = str(tmp_path / "demo")
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-m", "zoo", "demo", "--quick", "--output-dir", out],
                            capture_output=True, text=True, timeout=600,
                            env={**env, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 replicas: " in result.stdout
    assert "training alexnet_dropout0p3 for 1 epoch on 2 replicas" in result.stdout
    assert result.stdout.count("training alexnet") == 3
    assert result.stdout.count("predicted") == 5
    table = pd.read_csv(os.path.join(out, "results.csv"), index_col="model")
    assert "all, weights fitted on validation: ensemble" in table.index
    assert table["nll"].notna().all()
    for name in ("report.md", "size_curve.png", "reliability.png",
                 os.path.join("ensemble_savedmodel", "saved_model.pb")):
        assert os.path.exists(os.path.join(out, name)), name


def test_the_demo_gives_jax_two_cpu_devices_when_keras_json_chooses_jax(tmp_path):
    """The demo asked XLA for two CPU devices only when KERAS_BACKEND said jax: with JAX
    chosen in keras.json its AlexNet trained on one device, "data parallel" said the
    report."""
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    code = ("from zoo.cli import demo\ndemo.two_host_devices_for_jax()\nimport jax, keras\n"
            "print(keras.backend.backend(), jax.device_count('cpu'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env={**env, "KERAS_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["jax", "2"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(models=["vgg"]), "`models` must be a non-empty subset of ('alexnet', 'resnet18'); "
                           "received ['vgg']."),
    (dict(epochs=0), "`epochs` must be a positive integer; received 0."),
    (dict(cycles=2.5), "`cycles` must be a positive integer; received 2.5."),
])
def test_demo_arguments_are_checked_before_any_work(kwargs, message, tmp_path):
    from zoo.cli import demo

    with pytest.raises(ValueError, match=re.escape(message)):
        demo.run(str(tmp_path / "demo"), **kwargs)
    assert not os.path.exists(tmp_path / "demo")


def test_the_demo_never_replaces_a_users_files_in_its_output_folder(tmp_path, capsys):
    """`zoo demo --output-dir notes` replaced the user's report.md (and results.csv,
    statistics.npz) without a word; a folder a demo wrote (its mark, or an older demo's
    report) is still the demo's to write again."""
    from tests.helpers import tiny_data, tiny_model
    from zoo.cli import demo

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("mine\n")
    (notes / "results.csv").write_text("a,b\n")
    assert cli.main(["demo", "--output-dir", str(notes)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"zoo demo: error: {notes} holds report.md, results.csv, which no zoo demo wrote: the "
        "demo would replace them. Give a new or empty --output-dir, or move them aside.")
    assert (notes / "report.md").read_text() == "mine\n" and len(os.listdir(notes)) == 2
    runs = demo.member_runs(demo.MODEL_CHOICES)
    assert runs == ["alexnet_dropout0p3", "alexnet_dropout0p4", "alexnet_width384",
                    "resnet18_snapshots"]  # the folders the demo's members train in
    (notes / "report.md").write_text("# zoo demo on digits\n\nAlexNet members ...")
    demo._check_output_dir(str(notes), runs)  # an older demo's
    (notes / "report.md").write_text("mine\n")
    (notes / demo.MARK).write_text("")
    demo._check_output_dir(str(notes), runs)  # the demo's mark
    # An older demo stopped before its report: its statistics beside its members' runs.
    older = tmp_path / "older"
    older.mkdir()
    (older / "statistics.npz").write_bytes(b"")
    with pytest.raises(UserError, match=r"holds statistics.npz, which no zoo demo wrote"):
        demo._check_output_dir(str(older), runs)
    # A `zoo train` run beside them is no demo member: the user's plots stay theirs.
    zoo.train(tiny_model(), tiny_data(n=16), epochs=1, run_dir=str(older / "alexnet_digits"),
              verbose=0)
    with pytest.raises(UserError, match=r"holds statistics.npz, which no zoo demo wrote"):
        demo._check_output_dir(str(older), runs)
    os.rename(older / "alexnet_digits", older / "alexnet_dropout0p4")
    demo._check_output_dir(str(older), runs)
    # A named pipe called report.md: the check waited on it for ever.
    piped = tmp_path / "piped"
    piped.mkdir()
    os.mkfifo(piped / "report.md")
    with pytest.raises(UserError, match=r"holds report.md, which no zoo demo wrote"):
        demo._check_output_dir(str(piped), runs)
    os.symlink(tmp_path / "notes" / demo.MARK, piped / demo.MARK)  # (a link is no mark)
    with pytest.raises(UserError, match=r"holds report.md, which no zoo demo wrote"):
        demo._check_output_dir(str(piped), runs)


def test_the_demo_refuses_what_it_would_replace_only_after_training_before_any_work(
        tmp_path, capsys, monkeypatch):
    """A user's ensemble_savedmodel folder, a member's folder holding files no run wrote,
    and an earlier run's snapshots with no run to resume were refused only when the demo
    reached them: the export after every member had trained (and the table, computed,
    was never written), the snapshots after the AlexNets."""
    from tests.helpers import tiny_data, tiny_model
    from zoo.cli import demo

    def no_work(*args, **kwargs):
        raise AssertionError("the demo started its work")

    monkeypatch.setattr(demo, "load_data", no_work)
    cases = [
        (os.path.join("ensemble_savedmodel", "notes.txt"),
         "Refusing to export to {out}/ensemble_savedmodel: "),
        (os.path.join("alexnet_width384", "config.json"),
         "{out}/alexnet_width384 holds config.json, which no run of this project wrote"),
        (os.path.join("resnet18_snapshots", "snapshots", "snapshot-1.weights.h5"),
         "{out}/resnet18_snapshots holds a run that trained ({out}/resnet18_snapshots/"
         "checkpoints/best.keras) and no backup/ to resume it from"),
    ]
    for index, (entry, message) in enumerate(cases):
        out = tmp_path / f"demo{index}"
        if entry.startswith("resnet18_snapshots"):  # an earlier run's, its backup gone
            zoo.train(tiny_model(), tiny_data(n=16), epochs=1, verbose=0,
                      run_dir=str(out / "resnet18_snapshots"))
            shutil.rmtree(out / "resnet18_snapshots" / "backup")
        (out / entry).parent.mkdir(parents=True, exist_ok=True)
        (out / entry).write_text("the user's\n")
        capsys.readouterr()
        assert cli.main(["demo", "--output-dir", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message.format(out=out) in err[0], err
        assert sorted(os.listdir(out)) == [entry.split(os.sep)[0]]  # nothing written
        assert (out / entry).read_text() == "the user's\n"
    # More cycles than the snapshot run's updates: refused after three AlexNets trained.
    import tensorflow as tf

    monkeypatch.undo()
    out = tmp_path / "cycles"
    with pytest.raises(UserError, match=r"^`cycles` must be at most the snapshot run's "
                                        r"updates, 2 epochs of 5 batches = 10; received 40\.$"):
        demo.run(str(out), epochs=1, snapshot_epochs=2, cycles=40, train_split="train[:320]",
                 strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))  # (this process)
    assert not out.exists()
    # The AlexNets alone train in none of the ResNet's folder.
    demo._check_output_dir(str(tmp_path / "demo2"), demo.member_runs(["alexnet"]))


def test_a_demo_of_other_flags_than_its_members_is_one_line_in_the_flags_words(
        tmp_path, capsys, monkeypatch):
    """Members an earlier demo trained with other --epochs, --seed or --cycles were refused
    by the resume, after the data was read, in the schedule's words (warmup_steps 0 -> 10)
    and with advice about a run directory the demo has no flag for; a demo that resumes them
    says so (a second run printed a new training's lines)."""
    import ensembles
    from tests.helpers import tiny_data, tiny_model
    from zoo.cli import demo

    def no_work(*args, **kwargs):
        raise AssertionError("the demo started its work")

    out = tmp_path / "demo"
    zoo.train(tiny_model(), tiny_data(n=16), epochs=1, seed=1, verbose=0,
              run_dir=str(out / "alexnet_dropout0p4"))  # the second variant: seed + 1
    ensembles.train_snapshots(tiny_model(), tiny_data(n=16), epochs=2, cycles=2, seed=0,
                              verbose=0, run_dir=str(out / "resnet18_snapshots"))
    monkeypatch.setattr(demo, "load_data", no_work)
    for flags, message in (
            (["--epochs", "2"], "holds a zoo demo of --epochs 1 (alexnet_dropout0p4); "
                                "received --epochs 2. Give another --output-dir, or --epochs 1 "
                                "to resume it."),
            (["--epochs", "1", "--seed", "3"], "holds a zoo demo of --seed 0 "
                                               "(alexnet_dropout0p4); received --seed 3."),
            (["--epochs", "1", "--snapshot-epochs", "2", "--cycles", "3"],
             "holds a zoo demo of --cycles 2 (resnet18_snapshots); received --cycles 3."),
            (["--epochs", "1", "--snapshot-epochs", "3", "--cycles", "2"],
             "of --snapshot-epochs 2 (resnet18_snapshots); received --snapshot-epochs 3.")):
        assert cli.main(["demo", "--output-dir", str(out), *flags]) == 2, flags
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"zoo demo: error: {out} holds a zoo demo "
                                                   "of --") and message in err[0], err
    assert sorted(os.listdir(out)) == ["alexnet_dropout0p4", "resnet18_snapshots"]
    run_dir = str(out / "alexnet_dropout0p4")
    assert demo._resumed(run_dir, 1) == (f" (trained by an earlier demo in {run_dir}: "
                                         "loaded, nothing to train)")
    assert demo._resumed(run_dir, 3) == f" (resuming {run_dir} after epoch 1)"
    assert demo._resumed(str(out / "alexnet_dropout0p3"), 1) == ""


@pytest.mark.parametrize("models", [["alexnet"], ["resnet18"], ["alexnet", "resnet18"]])
def test_the_demo_report_describes_the_models_it_trained(models):
    """`zoo demo --models resnet18` trains no AlexNet: its report said it had (two towers,
    on 2 replicas) whatever --models named."""
    from zoo.cli import demo

    paragraph = demo.report_header("digits", models, 77, 2, 360).splitlines()[2]
    assert paragraph.endswith("Test split: 360 images.")
    assert ("AlexNet" in paragraph) == ("alexnet" in models)
    assert ("2 replicas" in paragraph) == ("alexnet" in models)
    assert ("ResNet-18" in paragraph) == ("resnet18" in models)
    # Each family's own training view: the ResNet trains on centre crops, which the report
    # called random crops whenever it was trained.
    assert ("AlexNet members (two towers, LRN; the first on 2 replicas, data parallel), "
            "trained on random 67x67 crops" in paragraph) == ("alexnet" in models)
    assert ("inside the model), trained on the 67x67 centre crops" in paragraph) == (
        "resnet18" in models)
    assert "of images at 77x77; every model tested on the centre crop" in paragraph
    assert "on 1 replica," in demo.report_header("digits", ["alexnet"], 77, 1, 360)
    # A dataset with one held-out split: it validated the training and scored the models.
    assert demo.report_header("shapes", models, 77, 2, 180, "val", True).endswith(
        "Scored on the val split (180 images), which was the training's validation split "
        "too (the dataset has no other held-out split).")


def _saved_members(tmp_path, count=2):
    """Small models on 8x8 digits, trained a little so that they differ and beat chance."""
    import data
    import keras
    from tests.helpers import tiny_model

    train = data.load("digits", "train", image_size=8, batch_size=64, seed=0)
    paths = []
    for seed in range(count):
        keras.utils.set_random_seed(seed)
        model = tiny_model(size=8, classes=10)
        model.compile(optimizer=keras.optimizers.Adam(0.01),
                      loss="sparse_categorical_crossentropy")
        model.fit(train.map(lambda x, y: (x / 255.0, y)), epochs=2, verbose=0)
        inputs = keras.Input((8, 8, 3))
        rescaled = keras.Model(inputs, model(keras.layers.Rescaling(1 / 255)(inputs)),
                               name=f"member{seed}")
        paths.append(str(tmp_path / f"member{seed}.keras"))
        rescaled.save(paths[-1])
    return paths


def test_ensemble_evaluate_and_export_commands(tmp_path, capsys, monkeypatch):
    """Also: ``--output=~/ens.keras`` (the shell leaves a ``~`` after ``=`` alone) writes
    into the home, as ``--output ~/ens.keras`` does, not into a folder named ``~``."""
    import keras
    import tensorflow as tf

    import data

    a, b = _saved_members(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    ens = str(tmp_path / "ens.keras")
    assert cli.main(["ensemble", a, b, "--output=~/ens.keras"]) == 0
    assert os.path.isfile(ens) and os.listdir(tmp_path / "work") == []
    assert "ensemble of 2 members (member0, member1)" in capsys.readouterr().out

    csv = str(tmp_path / "table.csv")
    assert cli.main(["evaluate", ens, "--output", csv]) == 0
    assert ("Images of the test split resized whole (--resize squash): ensemble records "
            "no view; zoo "
            "predict and export centre-crop such a model unless told --resize."
            in capsys.readouterr().out)
    assert cli.main(["evaluate", ens, "--split", "validation"]) == 0  # ("Test images" was said)
    assert "Images of the validation split resized whole" in capsys.readouterr().out
    from_ensemble = pd.read_csv(csv, index_col=0)
    assert cli.main(["evaluate", a, b, "--output", csv]) == 0  # two files: their ensemble
    from_files = pd.read_csv(csv, index_col=0)
    assert list(from_ensemble.index) == ["member0", "member1", "best member", "mean member",
                                         "ensemble"]
    pd.testing.assert_frame_equal(from_ensemble, from_files, rtol=1e-5)
    assert from_ensemble.loc["ensemble", "top1_error"] < 0.9  # learnt something

    served_dir = str(tmp_path / "served")
    assert cli.main(["export", ens, served_dir]) == 0
    assert (f"Note: {ens} records no view; the export centre-crops images (--resize crop)"
            in capsys.readouterr().out)
    images = next(iter(data.load("digits", "test", image_size=8, batch_size=16)))[0]
    loaded = tf.saved_model.load(served_dir)  # keep a reference: it owns the variables
    served = loaded.serve(tf.constant(images))
    expected = keras.models.load_model(ens).predict(images, verbose=0)
    assert abs(served["probabilities"].numpy() - expected).max() < 1e-5
    assert served["mutual_information"].shape == (16,)


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "missing.keras"], "Cannot load missing.keras: no such file."),
    (["ensemble", "missing.keras", "--output", "x.keras"], "Cannot load missing.keras: no such"),
    (["ensemble", "a.keras", "--output", "x.h5"], "--output must end in .keras"),
    (["export", "model.txt", "out"], "Expected a saved .keras model file; received 'model.txt'"),
    (["search", "--model", "resnet18", "--lr", "0", "1", "--image-size", "8"],
     "--lr is searched on a log scale"),
])
def test_model_file_commands_user_errors_are_one_line(argv, message, capsys, tmp_path):
    if argv[0] == "search":
        argv = argv + ["--run-dir", str(tmp_path / "s")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_search_counts_are_one_line_before_the_statistics_pass(tmp_path, capsys):
    """`zoo search --fine-trials -1` failed after the statistics pass, leaving
    statistics.npz in a new run directory."""
    run_dir = tmp_path / "search"
    with pytest.raises(SystemExit) as exit:  # (argparse's: the subcommand's usage line)
        cli.main(["search", *SMALL_VGG, "--fine-trials", "-1", "--run-dir", str(run_dir)])
    assert exit.value.code == 2
    assert "--fine-trials must be at least 0; received -1" in capsys.readouterr().err
    assert not run_dir.exists()
    # The ranges' mistakes name the flags typed (they named learning_rate, weight_decay).
    for flags, said in ((["--lr", "0.1", "0.01"], "--lr must be a (low, high) pair"),
                        (["--weight-decay", "0", "0.1"], "--weight-decay is searched on a "
                                                         "log scale")):
        assert cli.main(["search", *SMALL_VGG, *flags, "--run-dir", str(run_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
    assert not run_dir.exists()


def test_search_without_a_held_out_split_is_one_line_before_the_statistics_pass(
        tmp_path, capsys):
    """An image folder of train/ alone: refused once its statistics were computed and
    saved in a new run directory."""
    import tensorflow as tf

    for value, name in enumerate(("cat", "dog")):
        (tmp_path / "pets" / "train" / name).mkdir(parents=True)
        (tmp_path / "pets" / "train" / name / "a.png").write_bytes(
            tf.io.encode_png(np.full((4, 4, 3), 200 * value, np.uint8)).numpy())
    run_dir = tmp_path / "search"
    assert cli.main(["search", *SMALL_VGG, "--dataset", str(tmp_path / "pets"),
                     "--run-dir", str(run_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().endswith(
        "The search needs a validation or test split; " f"{tmp_path / 'pets'} has ['train'].")
    assert "statistics" not in captured.out and not run_dir.exists()


def test_search_command_writes_its_table_and_plot(tmp_path, capsys):
    run_dir = tmp_path / "search"
    code = cli.main(["search", *SMALL_VGG, "--trials", "2", "--fine-trials", "0", "--epochs",
                     "1", "--optimizer", "nesterov", "adam", "--run-dir", str(run_dir)])
    assert code == 0
    out = capsys.readouterr().out
    table = pd.read_csv(run_dir / "search.csv")
    assert len(table) == 2 and set(table["stage"]) == {"coarse"}
    assert table["learning_rate"].between(1e-4, 1e-1).all()
    assert set(table["optimizer"]) <= {"nesterov", "adam"}
    assert (run_dir / "search.png").read_bytes()[:4] == b"\x89PNG"
    assert "best: learning_rate" in out
    best = table.loc[table["val_top1_error"].idxmin(), "val_top1_error"]
    assert f"val_top1_error {100 * best:.2f} %" in out  # percentages where people read them
    # Another model's width (or dataset, normalisation) in the same run directory: refused,
    # where the first search's table was once printed and saved as this one's.
    table_before = (run_dir / "search.csv").read_bytes()
    statistics = (run_dir / "statistics.npz").stat().st_mtime_ns
    # The builder as earlier versions recorded it, where the command line was one module:
    # the same builder, not another setting.
    settings_file = run_dir / "tuner" / "zoo_search.json"
    settings = json.loads(settings_file.read_text())
    assert settings["model"] == "zoo.cli.runs.Setup.build"
    settings_file.write_text(json.dumps({**settings, "model": "zoo.cli.commands._Setup.build"}))
    other = [a if a != "width=0.0625" else "width=0.125" for a in SMALL_VGG]
    assert cli.main(["search", *other, "--trials", "2", "--fine-trials", "0", "--epochs",
                     "1", "--optimizer", "nesterov", "adam", "--run-dir", str(run_dir)]) == 2
    captured = capsys.readouterr()
    # Refused before the statistics pass (a full pass over the training set), which
    # rewrote the search's statistics.npz first
    assert "statistics" not in captured.out
    assert (run_dir / "statistics.npz").stat().st_mtime_ns == statistics
    err = captured.err.strip().splitlines()
    # The setting that changed, key by key: two long JSON values cut to the same ends
    # once hid it ("command: {...} there, {...} now").
    assert len(err) == 1 and ("holds a search with other settings (command.model_kwargs."
                              "width)") in err[0], err
    assert "command.model_kwargs.width: 0.0625 there, 0.125 now" in err[0], err
    assert (run_dir / "search.csv").read_bytes() == table_before


def test_zoo_ensemble_says_what_its_flags_take(tmp_path, capsys):
    """--last past the snapshots and --weights of another count were the library's words
    ("`last=5` asks ...", "`weights` must be 3 ..."); a folder named like a snapshot was
    "not found"; an ensemble as the architecture was a 400-character Keras dump."""
    from tests.helpers import tiny_model

    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    for k in (1, 2):
        tiny_model().save_weights(str(snaps / f"snapshot-{k}.weights.h5"))
    arch, other = str(tmp_path / "arch.keras"), str(tmp_path / "other.keras")
    zoo.save_model(tiny_model(), arch)
    zoo.save_model(tiny_model(), other)
    ensemble_file = str(tmp_path / "pair.keras")
    zoo.save_model(ensembles.Ensemble([zoo.load_model(arch), zoo.load_model(other)]),
                   ensemble_file)
    out = str(tmp_path / "out.keras")
    for argv, message in (
            ([arch, "--snapshots", str(snaps), "--last", "5"],
             f"--last 5 asks for more snapshots than {snaps} holds: 2 "
             "(snapshot-1.weights.h5, snapshot-2.weights.h5)."),
            ([arch, "--snapshots", str(snaps), "--weights", "1", "2", "3"],
             "--weights takes one number per member, 2 for the snapshots; received 3: 1 2 3."),
            ([arch, "--snapshots", str(snaps), "--last", "1", "--weights", "1", "2"],
             "--weights takes one number per member, 1 for the snapshots kept by --last; "
             "received 2: 1 2."),
            ([arch, other, "--weights", "0.5"],
             "--weights takes one number per member, 2 for the models given; received 1: "
             "0.5."),
            ([ensemble_file, "--snapshots", str(snaps)],
             "from_snapshots needs the run's architecture, one network; received an ensemble "
             "('ensemble', of 2 members).")):
        assert cli.main(["ensemble", *argv, "--output", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    (snaps / "snapshot-3.weights.h5").mkdir()
    assert cli.main(["ensemble", arch, "--snapshots", str(snaps), "--output", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and (f"Snapshot file {snaps / 'snapshot-3.weights.h5'} is a "
                              "directory: snapshots are .weights.h5 files.") in err[0], err
    assert not os.path.exists(out)


def test_snapshot_training_from_the_shell_then_ensemble_and_evaluate(tmp_path, capsys):
    """`zoo train --snapshots 3` (40 updates: the cycles do not divide them) writes three
    snapshots; the command it prints builds their ensemble, which `zoo evaluate` reads (in
    a folder with a space in its name: the command is quoted for the shell)."""
    import shlex

    run_dir = str(tmp_path / "my runs" / "run")
    code = cli.main(["train", "--model", "resnet18", "--image-size", "8", "--epochs", "2",
                     "--batch-size", "64", "--snapshots", "3", "--lr", "0.1",
                     "--weight-decay", "1e-4", "--model-arg", "width=0.25",
                     "--model-arg", "stem=cifar", "--run-dir", run_dir])
    assert code == 0
    out = capsys.readouterr().out
    snapshots = os.path.join(run_dir, "snapshots")
    assert sorted(os.listdir(snapshots)) == [f"snapshot-{k}.weights.h5" for k in (1, 2, 3)]
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["optimizer"]["config"]["learning_rate"]["class_name"] == "CyclicCosine"
    assert config["optimizer"]["config"]["l2"] == 1e-4
    suggested = shlex.split(out.split("Combine them with:\n")[1].splitlines()[0])
    assert suggested[:2] == ["zoo", "ensemble"]
    assert cli.main(suggested[1:]) == 0
    assert "ensemble of 3 members (snapshot_1, snapshot_2, snapshot_3), combined by mean:" in (
        capsys.readouterr().out)
    last = suggested.index("--last") + 1
    assert cli.main(suggested[1:last] + ["9"] + suggested[last + 1:]) == 2  # 3 are there
    assert capsys.readouterr().err.strip() == (
        f"zoo ensemble: error: --last 9 asks for more snapshots than {snapshots} holds: "
        "3 (snapshot-1.weights.h5, snapshot-2.weights.h5, snapshot-3.weights.h5).")
    assert zoo.class_names(ensembles.load(suggested[-1])) == [str(d) for d in range(10)]
    csv = str(tmp_path / "table.csv")
    assert cli.main(["evaluate", suggested[-1], "--output", csv]) == 0
    table = pd.read_csv(csv, index_col=0)
    assert list(table.index[:3]) == ["snapshot_1", "snapshot_2", "snapshot_3"]
    assert table.loc["ensemble", "top1_error"] < 0.9


@pytest.mark.parametrize("reverse", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_heterogeneous_members_keep_their_rows_through_the_shell(reverse, tmp_path, capsys):
    """A ResNet-18 and a small CNN, weighted 3:1, given in either order (the fast tier: one):
    each row and weight of `zoo evaluate` belongs to the model it is named after (its NLL
    and top-1 error are scikit-learn's of that model's own predictions)."""
    import keras
    from sklearn.metrics import accuracy_score, log_loss

    import data
    import zoo

    (small,) = _saved_members(tmp_path, count=1)
    keras.utils.set_random_seed(0)
    resnet = zoo.resnet18(input_shape=(8, 8, 3), classes=10, width=0.25, stem="cifar",
                          input_tensor=keras.layers.Rescaling(1 / 255)(keras.Input((8, 8, 3))))
    resnet_path = str(tmp_path / "resnet18.keras")
    resnet.save(resnet_path)
    test = data.load("digits", "test", image_size=8, batch_size=128)
    labels = np.concatenate([y for _, y in test])
    own = {name: keras.models.load_model(path).predict(test, verbose=0)
           for name, path in (("resnet18", resnet_path), ("member0", small))}
    paths, weights = [resnet_path, small], ["3", "1"]
    if reverse:
        paths, weights = paths[::-1], weights[::-1]
    ens, csv = str(tmp_path / "ens.keras"), str(tmp_path / "table.csv")
    capsys.readouterr()
    assert cli.main(["ensemble", *paths, "--weights", *weights, "--output", ens]) == 0
    assert "combined by mean, weights " in capsys.readouterr().out
    assert cli.main(["evaluate", ens, "--output", csv]) == 0
    table = pd.read_csv(csv, index_col=0)
    assert list(table.index[:2]) == (["member0", "resnet18"] if reverse else
                                     ["resnet18", "member0"])
    assert table.loc["resnet18", "weight"] == 0.75 and table.loc["member0", "weight"] == 0.25
    own["ensemble"] = 0.75 * own["resnet18"] + 0.25 * own["member0"]
    for name, probs in own.items():
        assert table.loc[name, "nll"] == pytest.approx(
            log_loss(labels, probs, labels=range(10)), rel=1e-4)
        assert table.loc[name, "top1_error"] == pytest.approx(
            1 - accuracy_score(labels, probs.argmax(axis=1)), abs=1e-9)


def test_train_optimizer_flags_reach_the_run(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    code = cli.main(["train", *SMALL_VGG, "--epochs", "1", "--optimizer", "rmsprop",
                     "--momentum", "0.5", "--weight-decay", "1e-5", "--lr", "0.001",
                     "--lr-patience", "3", "--ema", "--run-dir", run_dir])
    assert code == 0
    config = json.load(open(os.path.join(run_dir, "config.json")))
    optimizer = config["optimizer"]
    assert optimizer["class_name"] == "RMSprop" and optimizer["config"]["use_ema"] is True
    assert optimizer["config"]["momentum"] == 0.5
    assert optimizer["config"]["weight_decay"] == 1e-5
    assert config["lr_patience"] == 3
    assert "test top-1 error" in capsys.readouterr().out
    for flag, message in ((["--ema"], "--ema and --snapshots do not combine"),
                          (["--lr-patience", "2"], "--lr-patience 2 does not combine with "
                                                   "--snapshots")):
        assert cli.main(["train", "--model", "resnet18", "--image-size", "8", "--snapshots",
                         "2", *flag, "--run-dir", str(tmp_path / "r2")]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert message in line
    # More cycles than updates (1,257 digits in 20 batches of 64): before the statistics pass
    assert cli.main(["train", *SMALL_VGG, "--epochs", "2", "--snapshots", "41", "--run-dir", str(tmp_path / "r2")]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.endswith("--snapshots must be at most the run's updates, --epochs x batches "
                         "per epoch = 2 x 20 (1257 training examples in batches of 64) = 40; "
                         "received 41.")
    assert "statistics" not in captured.out
    assert not os.path.exists(tmp_path / "r2")  # refused before any work


def test_train_pipeline_random_crops_of_the_larger_scale_and_centre_crops_for_evaluation(
        tmp_path, capsys):
    """--augment crop+flip at 16x16: training images are 16x16 windows (or their mirrors)
    of the digits loaded at 18x18, different each epoch; evaluation takes the centre."""
    import data

    args = commands._parser().parse_args([
        "train", "--model", "resnet20", "--image-size", "16", "--augment", "crop+flip",
        "--normalize", "mean_image", "--batch-size", "32"])
    setup = runs.Setup(args, str(tmp_path))
    assert setup.data.scale == 18
    assert setup.data.resize == "crop"  # what zoo train records (zoo.train(resize=))
    large = data.load("digits", "train", image_size=18, batch_size=None, shuffle=False)
    large = np.stack([x.numpy() for x, _ in large.take(300)])
    windows = {(dy, dx, flip): large[:, dy:dy + 16, dx:dx + 16][:, :, ::-1 if flip else 1]
               for dy in range(3) for dx in range(3) for flip in (False, True)}

    def placement(image):
        found = [key for key, w in windows.items()
                 if np.any(np.all(np.abs(w - image).reshape(300, -1) < 1e-3, axis=1))]
        return found[0] if found else None

    train = setup.load_train().unbatch().batch(64)
    epochs = [next(iter(train))[0].numpy() for _ in range(2)]  # two epochs of one dataset
    for images in epochs:
        assert images.shape == (64, 16, 16, 3)
    places = [placement(image) for image in epochs[0] if placement(image) is not None]
    assert len(places) >= 8  # images from the first 300 found as windows of the 18x18
    assert len(set(places)) > 1 and any(flip for _, _, flip in places)
    assert not np.array_equal(epochs[0], epochs[1])
    test = next(iter(setup.load("test")))[0].numpy()
    larger = data.load("digits", "test", image_size=18, batch_size=32)  # the 18x18 images
    np.testing.assert_allclose(test, next(iter(larger))[0].numpy()[:, 1:17, 1:17], atol=1e-4)
    model = setup.build()
    assert model.get_layer("normalize").mean.shape == (16, 16, 3)  # the mean image
    # Untrained, on mean-subtracted pixels (+-128), its softmax saturates: every view would
    # score the same NLL. A classifier a hundredth the size keeps the views' scores apart.
    import keras

    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    head.kernel.assign(head.kernel * 0.01)
    # `zoo evaluate --center-crop` sees what training's evaluation saw; so does plain
    # `zoo evaluate` of a file that records it (zoo train's checkpoints do).
    import ensembles

    model.save(tmp_path / "m.keras")
    zoo.save_model(zoo.set_resize_mode(model, setup.data.resize), str(tmp_path / "r.keras"))
    expected = ensembles.evaluate(model, setup.load("test")).iloc[0]["nll"]
    # The window one pixel up and left of the centre scores apart: the equalities below
    # (rel=1e-5) tell a crop off by a pixel from the right one.
    corner = larger.map(lambda x, y: (x[:, :16, :16], y))
    assert abs(ensembles.evaluate(model, corner).iloc[0]["nll"] - expected) > 1e-3
    for argv in (["m.keras", "--center-crop"], ["r.keras"], ["r.keras", "--resize", "squash"]):
        csv = str(tmp_path / "t.csv")
        capsys.readouterr()
        assert cli.main(["evaluate", str(tmp_path / argv[0]), *argv[1:], "--output", csv]) == 0
        nll = pd.read_csv(csv, index_col=0).iloc[0]["nll"]
        if argv[-1] == "squash":  # asked for: the whole image, another view
            assert abs(nll - expected) > 1e-3
        else:
            assert nll == pytest.approx(expected, rel=1e-5)
        assert ("Images of the test split centre-cropped, as the model was trained "
                "(--resize crop)"
                in capsys.readouterr().out) == (argv == ["r.keras"])


def test_evaluate_picks_the_held_out_split_and_skips_bad_images_when_asked(tmp_path, capsys):
    """On a folder with train and validation only, `zoo evaluate` evaluates validation and
    says so; a bad file stops it in one line naming the file and the flag, and
    `--on-bad-image skip` leaves it out with a warning."""
    import tensorflow as tf

    from tests.helpers import tiny_model

    root = tmp_path / "photos"
    for split in ("train", "validation"):
        for value, name in ((40, "cat"), (200, "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                image = np.full((10, 12, 3), value + i, np.uint8)
                (root / split / name / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    (root / "validation" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    model = str(tmp_path / "m.keras")
    tiny_model(classes=2).save(model)
    capsys.readouterr()
    assert cli.main(["evaluate", model, "--dataset", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 bad image file(s)" in err[0] and "broken.jpg" in err[0], err
    assert err[0].endswith("(--on-bad-image skip).")
    with pytest.warns(UserWarning, match=r"Skipped 1 bad image file\(s\): .*broken\.jpg"):
        assert cli.main(["evaluate", model, "--dataset", str(root),
                         "--on-bad-image", "skip"]) == 0
    out = capsys.readouterr().out
    assert "Evaluating on the validation split (4 examples)" in out, out  # bad one left out
    # One model, two classes: one row, and no top-5 (always right with 5 classes or fewer).
    header, row = out.strip().splitlines()[-2:]
    assert header.split() == ["top1_error", "nll", "brier", "ece"] and row.startswith("tiny")
    assert row.split()[2] == "%"  # errors in percent, as the README writes them


@pytest.mark.parametrize("flags, message", [
    (["--split", "tset"], "Unknown split 'tset' of 'digits'; available: 'train' (1,257 "),
    (["--calibrate-on", "valdation"], "Unknown split 'valdation' of 'digits'"),
    (["--split", "validation", "--calibrate-on", "validation"],
     "--calibrate-on validation reads the split evaluated (validation of --split "
     "validation)"),
])
def test_evaluate_checks_its_splits_before_reading_the_models(flags, message, tmp_path,
                                                              capsys):
    """A mistyped --split or --calibrate-on is one line before the models are read (it came
    after each was loaded, seconds for a ResNet-152): here a file that is no model is never
    read. A file that is not there is named before any data is read."""
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip archive")
    assert cli.main(["evaluate", str(junk), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    missing = str(tmp_path / "absent.keras")
    assert cli.main(["evaluate", missing, *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"zoo evaluate: error: Cannot load {missing}: no such file."
    assert "Evaluating" not in captured.out  # (no data read)


def test_models_that_do_not_fit_the_data_are_one_line_before_scoring(tmp_path, capsys):
    """A digits model on a folder of other classes (once scored, weighted and calibrated
    without a word), models of other sizes or classes scored together, and a model of grey
    inputs: each one line, exit 2."""
    import keras
    import tensorflow as tf

    from tests.helpers import tiny_model

    folder = tmp_path / "animals"
    for split in ("test", "validation"):
        for i, name in enumerate(("cat", "dog", "fox")):
            os.makedirs(folder / split / name)
            image = np.full((8, 8, 3), 60 * i, np.uint8)
            (folder / split / name / "a.png").write_bytes(tf.io.encode_png(image).numpy())
    digits = zoo.save_model(zoo.set_class_names(tiny_model(classes=10), [str(d) for d in range(10)]),
                            str(tmp_path / "digits.keras"))
    twin = zoo.save_model(zoo.set_class_names(tiny_model(classes=10), [str(d) for d in range(10)]),
                          str(tmp_path / "twin.keras"))
    three = zoo.save_model(zoo.set_class_names(tiny_model(classes=3), ["ant", "bee", "cow"]),
                           str(tmp_path / "three.keras"))
    larger = zoo.save_model(tiny_model(size=16, classes=10), str(tmp_path / "larger.keras"))
    cropped, whole = (zoo.save_model(zoo.set_resize_mode(tiny_model(classes=10), resize),
                                     str(tmp_path / f"{resize}.keras"))
                      for resize in ("crop", "squash"))
    inputs = keras.Input((8, 8, 1))
    grey = zoo.save_model(keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(
        keras.layers.Flatten()(inputs))), str(tmp_path / "grey.keras"))

    def saved(name, shapes, units=10, activation="softmax"):
        inputs = [keras.Input(shape) for shape in shapes]
        pooled = [keras.layers.GlobalAveragePooling2D()(x) if len(x.shape) == 4 else x
                  for x in inputs]
        joined = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
        out = keras.layers.Dense(units, activation=activation)(joined)
        model = keras.Model(inputs if len(inputs) > 1 else inputs[0], out, name=name)
        return zoo.save_model(model, str(tmp_path / f"{name}.keras"))

    oblong, any_size = saved("oblong", [(8, 12, 3)]), saved("any_size", [(None, None, 3)])
    vector, two_inputs = saved("vector", [(10,)]), saved("two_inputs", [(8, 8, 3)] * 2)
    sigmoid = saved("sigmoid", [(8, 8, 3)], units=1, activation="sigmoid")
    cases = [
        (["evaluate", digits, "--dataset", str(folder)],
         f"tiny predicts 10 classes (0, 1, 2, 3, 4, ...); {folder} has 3 (cat, dog, fox)"),
        (["ensemble", digits, twin, "--output", str(tmp_path / "e.keras"), "--dataset",
          str(folder), "--fit-weights", "validation"], "predicts 10 classes"),
        (["evaluate", three, "--dataset", str(folder)],
         "predicts 3 classes (ant, bee, cow); " f"{folder} has 3 (cat, dog, fox)"),
        (["evaluate", digits, larger], "takes inputs of shape (16, 16, 3), but tiny takes "
                                       "(8, 8, 3)"),
        (["evaluate", grey], "zoo evaluate needs a model of square RGB inputs of a fixed "
                             "size (size, size, 3); functional takes (8, 8, 1)."),
        # Not square, or of no fixed size: a Keras shape error, a TypeError in crop_scale.
        (["evaluate", oblong], "oblong takes (8, 12, 3)"),
        (["evaluate", any_size, "--center-crop"], "any_size takes (None, None, 3)"),
        (["export", oblong, str(tmp_path / "served")], "Exporting needs a model of square "
                                                       "RGB inputs"),
        (["export", vector, str(tmp_path / "served")], "vector takes (10,)"),
        (["export", two_inputs, str(tmp_path / "served")], "Member 0 ('two_inputs') has 2 "
                                                           "inputs"),
        # A sigmoid's one unit, softmaxed: every image class "0" at 1.0.
        (["export", sigmoid, str(tmp_path / "served")], "Member 0 ('sigmoid') outputs one "
                                                        "score per example"),
        (["ensemble", sigmoid, digits, "--output", str(tmp_path / "e.keras")],
         "outputs one score per example"),
        # Models trained on crops and on whole images, scored together on one view.
        (["evaluate", digits, cropped, whole], "The models were trained on different views "
                                               "(tiny resize crop, tiny resize squash), and "
                                               "models scored together see the same images: "
                                               "give --resize crop or --resize squash."),
        (["ensemble", cropped, whole, "--output", str(tmp_path / "e.keras")],
         "The models were trained on different views (tiny resize crop, tiny resize squash), "
         "and the models of one ensemble share its one input: give --resize crop or "
         "--resize squash."),
        (["evaluate", digits, "--center-crop", "--resize", "squash"],
         "--center-crop is --resize crop; received --resize squash with it"),
        (["evaluate", digits, "--tta", "10crop", "--resize", "squash"],
         "--tta 10crop takes crops of images loaded at the larger scale; received --resize "
         "squash with it"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "e.keras").exists()
    # Told the view, they are scored together; one model's record is followed, and said.
    assert cli.main(["evaluate", cropped, whole, "--resize", "squash"]) == 0
    assert cli.main(["evaluate", digits, cropped]) == 0
    assert ("Images of the test split centre-cropped, as tiny records (the others none) "
            "(--resize crop)"
            in capsys.readouterr().out)
    # So are they in one ensemble, which records the view it was told (and its members).
    for flags, view in ((["--resize", "squash"], "squash"), (["--center-crop"], "crop")):
        assert cli.main(["ensemble", cropped, whole, digits, "--output",
                         str(tmp_path / "e.keras"), *flags]) == 0
        other = {"squash": "crop", "crop": "squash"}[view]
        seen = {"crop": "crops", "squash": "whole images"}
        notes = [line for line in capsys.readouterr().out.splitlines() if "Note" in line]
        assert notes == [f"Note: tiny was trained on {seen[other]} (resize {other}); in this "
                         f"ensemble it is given {seen[view]} (--resize {view})."], notes
        ensemble = ensembles.load(str(tmp_path / "e.keras"))
        assert zoo.resize_mode(ensemble) == view
        assert [zoo.resize_mode(m) for m in ensembles.members_of(ensemble)] == [view] * 3
    assert zoo.resize_mode(zoo.load_model(cropped)) == "crop"  # the member's file unchanged
    # The Python API: models of other classes scored together are one line too.
    with pytest.raises(ValueError, match=r"Member 1 \('tiny'\) predicts 3 classes, but member "
                                         r"0 \('tiny'\) predicts 10"):
        ensembles.evaluate([zoo.load_model(digits), zoo.load_model(three)],
                           tf.data.Dataset.from_tensors((np.zeros((2, 8, 8, 3)), [0, 1])))


def test_ensemble_output_and_flags_that_would_do_nothing_are_one_line(tmp_path, capsys):
    """The ensemble's file never replaces a member (a run's own checkpoint) or a user's
    non-Keras file; one file given twice is refused; --last without --snapshots and
    --fit-weights with a rule it does not weight are refused, where they were silently
    ignored; so are the held-out data's flags without --fit-weights or --calibrate-on, which
    read them."""
    from tests.helpers import tiny_model

    member = zoo.save_model(tiny_model(), str(tmp_path / "member.keras"))
    other = zoo.save_model(tiny_model(), str(tmp_path / "other.keras"))
    notes = tmp_path / "notes.keras"
    notes.write_text("the user's notes")
    cases = [
        (["--output", member], f"--output {member} is one of the members"),
        (["--output", str(notes)], f"--output {notes} exists and is not a .keras file"),
        (["--output", str(tmp_path / "e.keras"), "--last", "2"],
         "--last 2 picks the last snapshots: give --snapshots DIR"),
        (["--output", str(tmp_path / "e.keras"), "--combine", "vote", "--fit-weights",
          "validation"], "--fit-weights fits the weights of the mean rule; received "
                         "--combine vote"),
        (["--output", str(tmp_path / "e.keras"), "--data-dir", "d"],
         "--data-dir describes the held-out data of --fit-weights and --calibrate-on, "
         "and neither was given"),
        (["--output", str(tmp_path / "e.keras"), "--data-dir", "d", "--fit-weights",
          "validation"], "--dataset digits is the embedded digits: leave out --data-dir"),
        (["--output", str(tmp_path / "e.keras"), "--dataset", "cats", "--batch-size", "8"],
         "--dataset, --batch-size describe the held-out data"),
        (["--output", str(tmp_path / "e.keras"), "--fit-method", "greedy"],
         "--fit-method greedy is how --fit-weights fits the weights: give --fit-weights"),
    ]
    member_bytes = open(member, "rb").read()
    for flags, message in cases:
        assert cli.main(["ensemble", member, other, *flags]) == 2, flags
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (flags, err)
    # One file twice (by two names too) was two copies of one model: the same file is one
    # line (it was an ensemble of a model with itself), in zoo evaluate too.
    os.symlink(member, tmp_path / "link.keras")
    twice = [([member, other, member], f"{member} is given twice: the members of an ensemble "
                                       "are different models, each given once. To count one "
                                       "more, give it a larger --weights value."),
             ([member, str(tmp_path / "link.keras")],
              f"{tmp_path / 'link.keras'} is given twice ({member} is the same file)")]
    for members, message in twice:
        assert cli.main(["ensemble", *members, "--output", str(tmp_path / "e.keras")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (members, err)
    assert cli.main(["evaluate", member, other, member]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"zoo evaluate: error: {member} is given twice: the models compared (and "
                   "combined) are "
                   "different models, each given once."]
    assert notes.read_text() == "the user's notes" and open(member, "rb").read() == member_bytes
    assert not (tmp_path / "e.keras").exists()
    assert cli.main(["ensemble", member, other, "--output", str(tmp_path / "e.keras")]) == 0
    assert cli.main(["ensemble", member, "--output", str(tmp_path / "e.keras")]) == 0  # again


def test_zoo_predict_of_a_plain_savedmodel_and_paths_as_users_give_them(tmp_path, capsys):
    """A SavedModel Keras' model.export wrote was called an export 'made before zoo export
    served raw images'; zoo export to "" named a flag --output it does not have; a path
    given as bytes was read one byte at a time (received 105 (int))."""
    import tensorflow as tf

    from tests.helpers import tiny_model

    model = tiny_model()
    model.export(str(tmp_path / "plain"), verbose=False)
    photo = tmp_path / "p.png"
    photo.write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    assert cli.main(["predict", str(tmp_path / "plain"), str(photo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("has no serve_bytes signature: it is a SavedModel that zoo "
                              "export did not write (no zoo_export.json)") in err[0], err
    saved = str(tmp_path / "m.keras")
    zoo.save_model(model, saved)
    with pytest.raises(SystemExit) as exit_code:
        cli.main(["export", saved, ""])
    assert exit_code.value.code == 2
    assert "zoo export: error: OUT names no file; received ''" in capsys.readouterr().err
    table = zoo.predict(model, os.fsencode(str(photo)))
    assert len(table) == 1 and table["image"][0] == str(photo)


def test_a_damaged_export_folder_is_one_line_in_zoo_predict(tmp_path, capsys):
    """An export folder whose saved_model.pb is empty (a copy cut short) once ended in
    TensorFlow's ValueError traceback."""
    import tensorflow as tf

    served = tmp_path / "served"
    (served / "assets").mkdir(parents=True)
    (served / "saved_model.pb").write_bytes(b"")
    (served / "assets" / "class_names.txt").write_text("a\nb\n")
    photo = tmp_path / "p.png"
    photo.write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    assert cli.main(["predict", str(served), str(photo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"Cannot load the export {served}: it is damaged or incomplete" in (
        err[0]), err
    # Garbage bytes, and a real export without its variables/: TensorFlow's OSErrors that
    # name no file were "an internal error" with a traceback.
    (served / "saved_model.pb").write_bytes(b"\x0b\xad" * 50)
    from tests.helpers import tiny_model

    real = tmp_path / "real"
    ensembles.export(tiny_model(8, 2), str(real))
    shutil.rmtree(real / "variables")
    for folder in (served, real):
        assert cli.main(["predict", str(folder), str(photo)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and (f"Cannot load the export {folder}: it is damaged or "
                                  "incomplete") in err[0], err
    # Its metadata damaged: a JSON list (an AttributeError), a class_names.txt of one line
    # for two classes (a table naming one class, or an IndexError).
    ensembles.export(tiny_model(8, 2), str(real), overwrite=True)
    description = real / "assets" / "zoo_model.json"
    good = description.read_text()
    description.write_text('["crop"]')
    assert cli.main(["predict", str(real), str(photo)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"zoo predict: error: {description} is damaged (a JSON list, where the export writes "
        "an object); export the model again.")
    description.write_text(good)
    names = real / "assets" / "class_names.txt"
    names.write_text("0\n")
    assert cli.main(["predict", str(real), str(photo)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"zoo predict: error: {names} is damaged: 1 class names for a model of 2 classes. "
        "Export the model again.")
    description.write_text(json.dumps({k: v for k, v in json.loads(good).items()
                                       if k != "classes"}))  # (older exports: no count)
    assert cli.main(["predict", str(real), str(photo)]) == 2
    assert "is damaged: 1 class names for a model of 2 classes" in capsys.readouterr().err


def test_damaged_export_metadata_and_an_empty_onnx_file_are_one_line(tmp_path, capsys):
    """A zoo_model.json cut short was json's traceback; an empty .onnx file ONNX Runtime's
    InvalidArgument ("No graph was found in the protobuf")."""
    import tensorflow as tf

    photo = tmp_path / "p.png"
    photo.write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    served = tmp_path / "served"
    (served / "assets").mkdir(parents=True)
    (served / "saved_model.pb").write_bytes(b"")
    (served / "assets" / "zoo_model.json").write_text('{"resize": "cr')
    empty = tmp_path / "m.onnx"
    empty.write_bytes(b"")
    for source, message in ((served, f"{served / 'assets' / 'zoo_model.json'} is damaged "
                                     "(JSONDecodeError"),
                            (empty, f"{empty} is not an ONNX model ONNX Runtime can load "
                                    "(InvalidArgument)")):
        if source == empty:
            pytest.importorskip("onnxruntime")
        assert cli.main(["predict", str(source), str(photo)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_a_keras_file_keras_cannot_rebuild_is_one_line_naming_it(tmp_path, capsys):
    """A .keras archive without weights, or with another model's, reached the user as
    Keras' ValueError traceback, naming no file."""
    import zipfile

    from tests.helpers import tiny_model

    model_file = zoo.save_model(tiny_model(), str(tmp_path / "m.keras"))
    other = zoo.save_model(tiny_model(classes=3), str(tmp_path / "other.keras"))
    no_weights, swapped = str(tmp_path / "no_weights.keras"), str(tmp_path / "swapped.keras")
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(no_weights, "w") as dst:
        for name in src.namelist():
            if not name.startswith("model.weights"):
                dst.writestr(name, src.read(name))
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(other) as theirs, \
            zipfile.ZipFile(swapped, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, (theirs if name.startswith("model.weights") else src).read(name))
    # A layer's own loading failing (a bug, not the file): Keras wraps it in the same
    # "could not be loaded", and it keeps its traceback, not a line blaming the file.
    import keras

    def broken(self, store):
        raise AttributeError("a bug in a layer's loading")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.layers.Conv2D, "load_own_variables", broken)
        with pytest.raises(ValueError, match="a bug in a layer's loading") as error:
            zoo.load_model(model_file)
        assert not isinstance(error.value, UserError)
    for path, message in ((no_weights, "Expected a model.weights.h5"),
                          (swapped, "could not be loaded")):
        with pytest.raises(UserError, match=rf"Cannot load {re.escape(path)}: .*{message}"):
            zoo.load_model(path)
        assert cli.main(["info", path]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"Cannot load {path}" in err[0], err


def test_zoo_predict_shows_a_file_name_that_is_not_utf8(tmp_path, capsys):
    """A Latin-1 name (b"caf\xe9.png") in a folder: its lone surrogate failed the table
    after every image was predicted (pandas 3's UnicodeEncodeError, an internal error)."""
    import tensorflow as tf

    from tests.helpers import tiny_model

    model_file = zoo.save_model(zoo.set_resize_mode(tiny_model(), "squash"),
                                str(tmp_path / "m.keras"))
    folder = tmp_path / "photos"
    folder.mkdir()
    png = tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as f:
        f.write(png)
    table = zoo.predict(model_file, [str(folder)])
    assert table["image"].tolist() == [str(folder / "caf\\xe9.png")]
    csv = tmp_path / "p.csv"
    assert cli.main(["predict", model_file, str(folder), "--output", str(csv)]) == 0
    assert "caf\\xe9.png" in capsys.readouterr().out
    assert pd.read_csv(csv)["image"].tolist() == table["image"].tolist()
    tsv = tmp_path / "p.tsv"  # (it held commas)
    assert cli.main(["predict", model_file, str(folder), "--output", str(tsv)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tsv, sep="\t"), pd.read_csv(csv))


def test_a_grey_model_and_a_missing_package_are_one_line_not_internal_errors(
        tmp_path, capsys, monkeypatch):
    """zoo predict decodes RGB: a model of one channel gave Keras' multi-line error (an
    "internal error" from the shell). A .pth file without PyTorch, a named file not in the
    cache: ImportError and a FileNotFoundError that names no file, both "internal errors"."""
    import importlib.util

    import tensorflow as tf

    grey = zoo.save_model(zoo.set_resize_mode(zoo.resnet18(input_shape=(32, 32, 1), classes=3,
                                                           width=0.25), "squash"),
                          str(tmp_path / "grey.keras"))
    (tmp_path / "p.png").write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    assert cli.main(["predict", grey, str(tmp_path / "p.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("zoo.predict needs a model of square RGB inputs of a fixed size "
                         "(size, size, 3); resnet18 takes (32, 32, 1).")
    if importlib.util.find_spec("torch") is None:
        pth = tmp_path / "r18.pth"
        pth.write_bytes(b"not read")
        assert cli.main(["train", "--model", "resnet18", "--image-size", "32",
                         "--model-arg", f"weights={pth}", "--run-dir",
                         str(tmp_path / "run")]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"Reading {pth} needs PyTorch, which is not installed here" in line
    from zoo import pretrained

    monkeypatch.setenv("ZOO_WEIGHTS", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as missing:
        pretrained.weights_file(pretrained.get_weights("resnet50", "imagenet"))
    assert commands._one_line(missing.value) == str(missing.value)  # (a user's, one line)


def test_zoo_predict_reads_regular_files_only_from_a_folder(tmp_path):
    """A named pipe called fifo.png in a folder once blocked `zoo predict` forever (opening
    it waits for a writer); a link to a regular image is read."""
    from zoo.prediction import image_paths

    folder = tmp_path / "photos"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "a.png").write_bytes(b"\x89PNG")
    os.mkfifo(folder / "cats" / "fifo.png")
    os.symlink(folder / "cats" / "a.png", folder / "b.png")
    # A broken link (a git-annex or DVC photo not fetched) and the pipe were left out
    # without a word (exit 0, a partial table); named now, as data.load names them, and
    # never opened. Given by name, the broken link stopped the whole run.
    os.symlink(tmp_path / "gone.jpg", folder / "cats" / "c.jpg")
    with pytest.warns(UserWarning) as said:
        assert image_paths(str(folder)) == [str(folder / "b.png"),
                                            str(folder / "cats" / "a.png")]
        assert image_paths([str(folder / "cats" / "c.jpg"), str(folder / "b.png")]) == [
            str(folder / "b.png")]
    assert sorted(str(w.message) for w in said) == [
        f"Skipped {folder / 'cats' / 'c.jpg'}: a broken link (to {tmp_path / 'gone.jpg'}, "
        "which is not there: a git-annex or DVC file not fetched?).",
        f"Skipped {folder / 'cats' / 'c.jpg'}: a broken link (to {tmp_path / 'gone.jpg'}, "
        "which is not there: a git-annex or DVC file not fetched?).",
        f"Skipped {folder / 'cats' / 'fifo.png'}: not a regular file (a named pipe or a "
        "device: never opened)."]
    (tmp_path / "unfetched").mkdir()  # only links to photos not fetched: say so
    os.symlink(tmp_path / "gone.jpg", tmp_path / "unfetched" / "d.jpg")
    with pytest.raises(ValueError, match=r"No images in .*unfetched .*; 1 are no files: "
                                         r".*d.jpg: a broken link"):
        image_paths(str(tmp_path / "unfetched"))


def test_demo_quick_keeps_the_values_the_user_names(monkeypatch):
    """`zoo demo --quick --epochs 3 --cycles 3` once ran 1 epoch and 2 cycles silently."""
    from zoo.cli import demo

    runs = []
    monkeypatch.setattr(demo, "run", lambda **kwargs: runs.append(kwargs))
    assert cli.main(["demo", "--quick", "--epochs", "3", "--cycles", "3"]) == 0
    assert cli.main(["demo", "--quick"]) == 0
    given, quick = runs
    assert (given["epochs"], given["cycles"], given["snapshot_epochs"]) == (3, 3, 2)
    assert (quick["epochs"], quick["cycles"], quick["snapshot_epochs"]) == (1, 2, 2)
    assert given["train_split"] == quick["train_split"] == common.QUICK_TRAIN_SPLIT
    # Its own folder: a full demo after it in runs/demo stopped at its first member ("holds
    # a run with other settings"), having replaced the quick run's statistics.
    assert quick["output_dir"] == "runs/demo_quick"
    assert cli.main(["demo"]) == 0 and runs[-1]["output_dir"] == "runs/demo"
    assert cli.main(["demo", "--quick", "--output-dir", "mine"]) == 0
    assert runs[-1]["output_dir"] == "mine"


def test_demo_reads_a_tfds_dataset_from_data_dir(tmp_path, monkeypatch):
    """`zoo demo --dataset NAME --data-dir DIR`: the demo had no --data-dir, so a TFDS
    dataset prepared anywhere but TFDS' default folder could not be demonstrated on. Here
    a real TFDS builder prepared offline in DIR; the demo's data are its classes and its
    images at the AlexNet's input size."""
    from tests.data.test_datasets import TinyShapes
    from zoo.cli import demo

    TinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    runs = []
    monkeypatch.setattr(demo, "run", lambda **kwargs: runs.append(kwargs))
    assert cli.main(["demo", "--dataset", "tiny_shapes", "--data-dir", str(tmp_path)]) == 0
    assert runs[0]["data_dir"] == str(tmp_path) and runs[0]["dataset"] == "tiny_shapes"
    loaded = demo.load_data("tiny_shapes", data_dir=str(tmp_path))
    assert list(loaded.info.class_names) == ["dark", "light"]
    images, labels = next(iter(loaded.load("test", batch_size=6)))
    assert images.shape == (6, demo.ALEXNET_SIZE, demo.ALEXNET_SIZE, 3)
    assert sorted(labels.numpy().tolist()) == [0, 0, 0, 1, 1, 1]


def test_evaluate_takes_validation_where_the_test_split_has_no_labels(tmp_path, capsys):
    """TFDS writes -1 for examples without a label (imagenet2012's test split, from its
    manual tar): zoo evaluate chose the test split and failed after predicting all of it
    ("Labels must lie in [0, 2)"); it now says so and evaluates the validation split."""
    from tests.data.test_datasets import TinyShapes
    from tests.helpers import tiny_model

    class TinyUnlabelled(TinyShapes):
        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(12, 0),
                    "validation": self._generate_examples(6, 1),
                    "test": self._unlabelled(4)}

        def _unlabelled(self, count):
            for i in range(count):
                yield i, {"image": np.full((16, 16, 1), 90, np.uint8), "label": -1}

    TinyUnlabelled(data_dir=str(tmp_path)).download_and_prepare()
    model = zoo.save_model(zoo.set_class_names(tiny_model(16, 2), ["dark", "light"]),
                           str(tmp_path / "m.keras"))
    capsys.readouterr()
    assert cli.main(["evaluate", model, "--dataset", "tiny_unlabelled", "--data-dir",
                     str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("The test split of tiny_unlabelled has no labels (-1, as TFDS marks them): "
            "evaluating the validation split instead") in out
    assert "Evaluating on the validation split (6 examples)" in out
    # zoo train scored the test split at its end, and failed there after training.
    assert cli.main(["train", *SMALL_VGG, "--dataset", "tiny_unlabelled",
                     "--data-dir", str(tmp_path), "--epochs", "1",
                     "--run-dir", str(tmp_path / "run")]) == 0
    assert ("No test score: the test split of tiny_unlabelled has no labels (-1, as TFDS "
            "marks them).") in capsys.readouterr().out
    # zoo distill scored the test split too.
    assert cli.main(["distill", model, "--model", "resnet18", "--dataset", "tiny_unlabelled",
                     "--data-dir", str(tmp_path), "--epochs", "1", "--model-arg",
                     "width=0.25", "--model-arg", "stem='cifar'",
                     "--run-dir", str(tmp_path / "distilled")]) == 0
    out = capsys.readouterr().out
    assert ("The test split of tiny_unlabelled has no labels (-1, as TFDS marks them): "
            "scoring the validation split instead") in out
    assert "validation student: top-1 error" in out


@pytest.mark.slow  # a JAX process of two CPU devices (25 s)
def test_distill_trains_under_jax_on_a_machine_of_two_devices(tmp_path):
    """zoo distill builds its student and loads its teacher before training: with several
    devices, zoo.train's "auto" set up DataParallel, and JAX's step failed on variables on
    one device ("incompatible devices"; tf.distribute's refusal on several GPUs). It
    distils on one device."""
    from tests.helpers import tiny_model

    teacher = zoo.save_model(tiny_model(8, 10), str(tmp_path / "teacher.keras"))
    run = run_python(
        "import sys; from zoo import cli; sys.exit(cli.main(sys.argv[1:]))", check=False,
        env={"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        args=["distill", teacher, "--model", "resnet20", "--model-arg", "width=0.25",
              "--epochs", "1", "--run-dir", str(tmp_path / "distilled")])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test student: top-1 error" in run.stdout, run.stdout[-2000:]


def test_a_table_never_replaces_an_input_or_a_model(tmp_path, capsys):
    """`zoo evaluate m.keras --output m.keras` evaluated, then replaced the model with a CSV;
    `zoo predict ... --output photo.png` the photo. Now one line before any work, the files
    as they were; an existing table is replaced as before."""
    import tensorflow as tf

    from tests.helpers import tiny_model

    model = zoo.save_model(tiny_model(classes=10), str(tmp_path / "m.keras"))
    other = zoo.save_model(tiny_model(classes=10), str(tmp_path / "other.keras"))
    photo = tmp_path / "photo.png"
    photo.write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    snapshot = str(tmp_path / "snapshot-1.weights.h5")  # an HDF5 file: no zip archive
    zoo.load_model(model).save_weights(snapshot)
    before = {path: open(path, "rb").read() for path in (model, other, str(photo), snapshot)}
    cases = [
        (["evaluate", model, "--output", model], f"--output {model} is one of the inputs"),
        (["predict", model, str(photo), "--output", str(photo)],
         f"--output {photo} is one of the inputs"),
        (["predict", model, str(tmp_path), "--output", str(photo)],  # inside a folder given
         f"--output {photo} exists and is not a table (.csv, .tsv, .txt)"),
        (["evaluate", model, "--output", other], f"--output {other} exists and is not a table"),
        (["evaluate", model, "--output", snapshot], f"--output {snapshot} exists and is not a "
                                                     "table (.csv, .tsv, .txt)"),
    ]
    # The export read: a table as its assets/class_names.txt (or the names beside an ONNX
    # file) left an export that no longer loaded; one beside them, a folder export
    # --overwrite refused. (Refused before the export is read: these are stand-ins.)
    served, onnx = tmp_path / "served", tmp_path / "m.onnx"
    (served / "assets").mkdir(parents=True)
    names = [served / "assets" / "class_names.txt", tmp_path / "m.onnx.classes.txt"]
    for path in (*names, onnx):
        path.write_text("cat\n")
        before[str(path)] = path.read_bytes()
    cases += [
        (["predict", str(served), str(photo), "--output", str(names[0])],
         f"--output {names[0]} is inside {served}, the export read"),
        (["predict", str(served), str(photo), "--output", str(served / "p.csv")],
         f"--output {served / 'p.csv'} is inside {served}"),
        (["predict", str(onnx), str(photo), "--output", str(names[1])],
         f"--output {names[1]} is the class names of {onnx}, the export read"),
    ]
    # Any export's files and any run's (not only the export read): zoo evaluate wrote its
    # table as an export's class names or an ONNX file's, zoo ensemble its ensemble as
    # another run's best.keras, which zoo train's end then loaded.
    other_export, run = tmp_path / "other_export", tmp_path / "run"
    (other_export / "assets").mkdir(parents=True)
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(dict.fromkeys(
        ["model", "optimizer", "keras", "started"], "x")))
    for path in (other_export / "saved_model.pb", other_export / "assets" / "class_names.txt",
                 run / "history.csv", run / "checkpoints" / "best.keras"):
        path.write_text("cat\n")
        before[str(path)] = path.read_bytes()
    cases += [
        (["evaluate", model, "--output", str(other_export / "assets" / "class_names.txt")],
         f"is inside {other_export}, an export (it holds saved_model.pb)"),
        (["evaluate", model, "--output", str(names[1])],
         f"--output {names[1]} is the class names of the export {onnx}: it would no longer "
         "load"),
        (["predict", model, str(photo), "--output", str(run / "history.csv")],
         f"--output {run / 'history.csv'} is one of the files of the run in {run} "
         "(history.csv)"),
        (["ensemble", model, other, "--output", str(run / "checkpoints" / "best.keras")],
         f"is one of the files of the run in {run} (checkpoints)"),
        # Through a link to the run's folder, or below one of its folders.
        (["ensemble", model, other, "--output", str(tmp_path / "ck" / "best.keras")],
         f"is one of the files of the run in {run} (checkpoints)"),
        (["evaluate", model, "--output", str(tmp_path / "ck" / ".." / "history.csv")],
         f"is one of the files of the run in {run} (history.csv)"),
        (["ensemble", model, other, "--output", str(run / "checkpoints" / "sub" / "e.keras")],
         f"is one of the files of the run in {run} (checkpoints)"),
    ]
    (tmp_path / "ck").symlink_to(run / "checkpoints")
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert before == {path: open(path, "rb").read() for path in before}
    assert cli.main(["evaluate", model, "--output", str(run / "scores.csv")]) == 0  # beside
    # A folder of the user's holding a saved_model.pb: its sub-folders are theirs.
    (other_export / "results").mkdir()
    assert cli.main(["evaluate", model, "--output", str(other_export / "results" / "t.csv")]) == 0
    table = tmp_path / "t.csv"
    table.write_text("an earlier table\n")
    assert cli.main(["predict", model, str(photo), "--output", str(table)]) == 0
    assert pd.read_csv(table)["image"].tolist() == [str(photo)]


def test_flags_that_nothing_would_read_are_one_line_before_the_data(tmp_path, capsys):
    """--calibrate-on with --tta was refused only after the test split was loaded (an image
    folder scanned); the JAX cluster's flags were ignored under TensorFlow, where TF_CONFIG
    decides (the dataset named here does not exist: reading it would be another error)."""
    from tests.helpers import tiny_model

    model = zoo.save_model(tiny_model(classes=10), str(tmp_path / "m.keras"))
    missing = str(tmp_path / "no_such_folder")
    cases = [
        (["evaluate", model, "--dataset", missing, "--calibrate-on", "validation", "--tta",
          "flip"], "--calibrate-on does not combine with --tta; received --tta flip"),
        (["train", "--model", "alexnet", "--dataset", missing, "--strategy", "multi_worker",
          "--coordinator", "localhost:1234", "--process-id", "0"],
         "--coordinator, --process-id join a JAX cluster (KERAS_BACKEND=jax); under "
         "TensorFlow, --strategy multi_worker reads the cluster from the TF_CONFIG variable"),
        (["train", "--model", "alexnet", "--dataset", missing, "--cluster-timeout", "5"],
         "--cluster-timeout is how long --strategy multi_worker waits for the other "
         "processes: give --strategy multi_worker with them"),
    ]
    # A timeout socket.settimeout cannot take (inf, nan) or none at all: it was an internal
    # error, or "waited -5 s" at once.
    cases += [(["train", "--model", "alexnet", "--dataset", missing, "--strategy",
                "multi_worker", "--cluster-timeout", value],
               "--cluster-timeout is the seconds to wait for the other processes: a finite "
               f"number > 0; received {value}.") for value in ("inf", "nan", "0", "-5")]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_the_demo_serves_as_many_test_images_as_there_are_up_to_five(tmp_path):
    """A test split of two images made the demo's served lines an IndexError, after all
    its training."""
    import tensorflow as tf

    from tests.helpers import tiny_model
    from zoo.cli import demo

    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    test = tf.data.Dataset.from_tensor_slices((images, np.array([1, 3]))).batch(8)
    lines = demo.serve(ensembles.Ensemble([tiny_model()]), test, str(tmp_path / "served"))
    assert [line.split(",")[0] for line in lines] == ["image 0: label 1", "image 1: label 3"]


def test_a_folder_to_predict_is_read_through_links_once_and_without_hidden_folders(tmp_path):
    """zoo.predict's folder walk skipped class folders that are links (data.load follows
    them) and read Jupyter's .ipynb_checkpoints, and macOS' hidden ._a.png files (each a
    'Skipped' line and exit 1; data.load passes over them); a link back up is no loop."""
    import tensorflow as tf

    from zoo.prediction import image_paths

    png = tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy()
    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere" / "cats"
    for folder in (photos / "dogs", elsewhere, photos / ".ipynb_checkpoints"):
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(png)
    os.symlink(elsewhere, photos / "cats")
    os.symlink(photos, photos / "dogs" / "up")
    (photos / "dogs" / "._a.png").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        ")
    (photos / "__MACOSX" / "dogs").mkdir(parents=True)
    (photos / "__MACOSX" / "dogs" / "._a.png").write_bytes(b"\0\5\26\7")
    assert image_paths([str(photos)]) == [str(photos / "cats" / "a.png"),
                                          str(photos / "dogs" / "a.png")]


def test_zoo_predict_names_the_images_of_a_folder_it_does_not_read(tmp_path, capsys):
    """A folder's TIFF and WebP files were left out without a word (data.load names them)."""
    import tensorflow as tf

    from tests.helpers import tiny_model

    model = zoo.save_model(tiny_model(classes=10), str(tmp_path / "m.keras"))
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    (folder / "scan.tiff").write_bytes(b"II*\x00")
    assert cli.main(["predict", model, str(folder)]) == 1  # as for a bad image: some left out
    captured = capsys.readouterr()
    assert (f"zoo predict: Skipped 1 image file(s) of formats TensorFlow does not decode "
            f"(only JPEG, PNG, GIF and BMP are read): {folder / 'scan.tiff'}" in captured.err)
    assert f"{folder / 'a.png'}: " in captured.out
    # The model records no view: the crop zoo predict gives it is said (zoo evaluate would
    # have scored it on whole images), once, as a note; not where the view is given.
    notes = [line for line in captured.err.splitlines() if "records no view" in line]
    assert notes == [f"Note: {model} records no view; its images are centre-cropped (--resize "
                     "crop), where zoo evaluate scores such a model on whole images: give "
                     "--resize squash for a model trained on them."]
    assert cli.main(["predict", model, str(folder / "a.png"), "--resize", "squash"]) == 0
    assert "records no view" not in capsys.readouterr().err
    with pytest.warns(NoViewWarning, match="tiny records no view"):
        zoo.predict(zoo.load_model(model), [str(folder / "a.png")])
    recorded = zoo.set_resize_mode(zoo.load_model(model), "squash")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.predict(recorded, [str(folder / "a.png")])


def test_a_model_file_that_cannot_be_opened_says_why(tmp_path, monkeypatch):
    """zipfile.is_zipfile reads an OSError as "no zip": a file this user may not read was
    called "not a .keras file (truncated or another format)"."""
    from tests.helpers import tiny_model
    from zoo import saving

    path = zoo.save_model(tiny_model(), str(tmp_path / "m.keras"))

    def refused(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", file)

    monkeypatch.setattr(saving, "open", refused, raising=False)
    with pytest.raises(PermissionError, match=re.escape(f"Permission denied: '{path}'")):
        zoo.load_model(path)


def test_an_export_file_target_is_checked_before_the_model_is_read(tmp_path, capsys):
    """An ONNX or LiteRT target was checked only after the model was loaded and converted,
    and its class names file beside it replaced a user's file of that name without a word.
    The model named here does not exist: reading it first would be another error."""
    missing = str(tmp_path / "no_model.keras")
    notes = tmp_path / "m.onnx.classes.txt"
    notes.write_text("the user's notes\n")
    (tmp_path / "folder.tflite").mkdir()
    cases = [
        (["export", missing, str(tmp_path / "served"), "--format", "onnx"],
         f"An export of format='onnx' is an ONNX file, named *.onnx; received "
         f"'{tmp_path / 'served'}'"),
        (["export", missing, str(tmp_path / "m.onnx"), "--format", "onnx"],
         f"{notes} already exists; pass overwrite=True (--overwrite) to replace it."),
        (["export", missing, str(tmp_path / "folder.tflite"), "--format", "litert"],
         f"Cannot export to {tmp_path / 'folder.tflite'}: a directory is there."),
        # No --format: a SavedModel folder named out.onnx was written without a word.
        (["export", missing, str(tmp_path / "out.onnx")],
         f"{tmp_path / 'out.onnx'} names a .onnx file, and the format is a SavedModel "
         "folder: give format='onnx' (--format onnx), or a folder name."),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert notes.read_text() == "the user's notes\n"


def test_the_run_is_locked_while_its_statistics_are_computed(tmp_path, monkeypatch, capsys):
    """zoo train took the run directory's lock and let it go at once: a second run started
    on the same new directory during the statistics pass wrote its statistics.npz over the
    first's, which a resume of the first then read without a word. The pass now runs
    under the lock (here a second run tries to take it during the pass)."""
    import data
    import safeio

    run_dir = str(tmp_path / "run")
    pipeline, tried = data.pipeline, []

    def second_run_during_the_pass(*args, **kwargs):
        import threading

        def second_run():  # (from another thread: the command's own shares its lock)
            try:
                with safeio.directory_lock(run_dir):
                    tried.append("took it")
            except UserError as err:
                tried.append(str(err).startswith(f"The run directory {run_dir} is in use by "
                                                 "another run"))

        thread = threading.Thread(target=second_run)
        thread.start()
        thread.join()
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(data, "pipeline", second_run_during_the_pass)
    assert cli.main(["train", *SMALL_VGG, "--epochs", "1", "--run-dir", run_dir]) == 0
    assert tried == [True] and os.path.exists(os.path.join(run_dir, "statistics.npz"))


def test_a_run_directory_inside_the_image_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """`zoo train --dataset .` from the folder made ./runs/alexnet_. there, a split of the
    dataset whose run folder was a class on the next command."""
    folder = tmp_path / "pets"
    (folder / "train" / "cat").mkdir(parents=True)
    monkeypatch.chdir(folder)
    for flags in (["--dataset", "."], ["--dataset", str(folder), "--run-dir", "run"]):
        assert cli.main(["train", "--model", "alexnet", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is inside the image folder" in err[0], err
    assert sorted(os.listdir(folder)) == ["train"]
    monkeypatch.chdir(tmp_path)  # beside it: runs/ named after the folder, as before
    args = commands._parser().parse_args(["train", "--model", "alexnet", "--dataset", "pets/"])
    assert runs.default_run_dir(args) == os.path.join("runs", "alexnet_pets")


def test_a_diverged_run_scores_no_weights_that_are_not_finite(tmp_path, capsys, monkeypatch):
    """zoo train printed "test top-1 error 100.00 %, top-5 error 100.00 % (the last epoch's
    weights)" for NaN weights, listed checkpoints/ that no epoch wrote, and showed the
    divergence as Python's two-line warning (its second line: "result = zoo.train(")."""
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="Training diverged") as caught:
        assert cli.main(["train", "--model", "vgg11", "--model-arg", "width=0.0625",
                         "--image-size", "32", "--lr", "1000", "--epochs", "1",
                         "--run-dir", str(run)]) == 1
    out = capsys.readouterr().out
    assert "test top-1 error" not in out
    assert ("No test score for the last epoch's weights: they are not finite (the run "
            "diverged).") in out
    assert f"Run directory: {run} (history.csv, logs/, plots)" in out
    assert not (run / "checkpoints").exists()
    # Shown in one line while a command runs (the project's warnings; NumPy's and Keras'
    # keep Python's form, which says whose they are), Python's again after it.
    warning = next(w for w in caught if "Training diverged" in str(w.message))
    formats = []
    monkeypatch.setattr(commands, "_cmd_list", lambda args: formats.append((
        warnings.formatwarning(warning.message, UserWarning, warning.filename, 1),
        warnings.formatwarning("overflow", RuntimeWarning, np.__file__, 1))) or 0)
    assert cli.main(["list"]) == 0
    ours, numpy_s = formats[0]
    assert ours == f"zoo list: warning: {warning.message}\n"
    assert numpy_s.startswith(f"{np.__file__}:1: RuntimeWarning: overflow")
    assert not warnings.formatwarning("x", UserWarning, warning.filename, 1).startswith("zoo")


def test_a_dataset_of_one_class_is_one_line_naming_it(tmp_path, capsys):
    """zoo train on a folder of one class said "classes=1 with classifier_activation=
    'softmax' predicts 1.0", arguments the user never typed."""
    import tensorflow as tf

    folder = tmp_path / "pets"
    (folder / "train" / "cat").mkdir(parents=True)
    (folder / "train" / "cat" / "a.png").write_bytes(
        tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    assert cli.main(["train", "--model", "resnet20", "--dataset", str(folder), "--run-dir",
                     str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo train: error: --dataset {folder} has 1 class (cat): a classifier learns two or "
        "more. An image folder has one sub-folder per class in each split."]
    assert not (tmp_path / "run").exists()
    # Two classes: trained and scored, without a top-5 error (always 0), as zoo evaluate.
    for split, label in (("train", "dog"), ("test", "cat"), ("test", "dog")):
        (folder / split / label).mkdir(parents=True, exist_ok=True)
        (folder / split / label / "b.png").write_bytes(
            tf.io.encode_png(np.full((8, 8, 3), 200, np.uint8)).numpy())
    assert cli.main(["train", "--model", "resnet20", "--model-arg", "width=0.25", "--dataset",
                     str(folder), "--epochs", "1", "--run-dir", str(tmp_path / "run")]) == 0
    scores = [line for line in capsys.readouterr().out.splitlines() if "test top-1" in line]
    assert len(scores) == 1 and re.fullmatch(
        r"test top-1 error [\d.]+ % \(the last epoch's weights\)", scores[0]), scores


def test_the_demo_takes_a_folder_whose_validation_split_is_val(tmp_path):
    """ImageNet's layout, train/ and val/: the demo refused it ("needs a train split and a
    validation or test split") where zoo train now holds val/ out."""
    import tensorflow as tf

    from zoo.cli import demo

    for split in ("train", "val"):
        for value, name in enumerate(("cat", "dog")):
            (tmp_path / split / name).mkdir(parents=True)
            (tmp_path / split / name / "a.png").write_bytes(
                tf.io.encode_png(np.full((4, 4, 3), 200 * value, np.uint8)).numpy())
    assert demo.load_data(str(tmp_path)).held_out == ["val"]
    (tmp_path / "val").rename(tmp_path / "dev")
    with pytest.raises(UserError, match=r"The demo needs a train split and a validation \(or "
                                        r"val\) or test split; .* has \['dev', 'train'\]"):
        demo.load_data(str(tmp_path))


@pytest.mark.parametrize("tf_config, message", [
    ("", "TF_CONFIG, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
         "\"task\": {\"type\": \"worker\", \"index\": 0}} (see the README's 'Several "
         "machines'); it is not set."),
    ("{'cluster': 1}", "TF_CONFIG is not JSON (Expecting property name enclosed in double "
                       "quotes: line 1 column 2 (char 1)); received \"{'cluster': 1}\""),
    ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG needs a 'cluster' of tasks and "
                                                 "this process's 'task'; received"),
    ('{"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "ps"}}',
     "TF_CONFIG's task type must be one of the cluster's ['worker'] (MultiWorkerMirrored"
     "Strategy trains on chief and workers only); received 'ps'."),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}',
     "task type must be one of the cluster's ['worker']"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG's task index must be 0 to 1, one of the cluster's 2 worker address(es); "
     "received 2."),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG's cluster must list the worker addresses ('host:port'); received worker: "
     "'a:1'."),
])
def test_tf_config_mistakes_are_one_line_before_tensorflow_reads_them(tf_config, message,
                                                                      monkeypatch, capsys):
    """TensorFlow's ValueError for a bad TF_CONFIG was shown as an internal error with its
    traceback, and a config without a cluster trained alone without a word."""
    monkeypatch.setenv("TF_CONFIG", tf_config)
    assert cli.main(["train", "--model", "alexnet", "--strategy", "multi_worker"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_only_the_chief_of_a_tensorflow_cluster_writes_the_run_directory(tmp_path,
                                                                       monkeypatch):
    """Under TensorFlow every worker counted as process 0: each locked the run directory
    (one stopped: "in use by another run") and wrote its statistics.npz; the others now
    write RUN_DIR/workerN, as zoo.train does."""
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    for cluster, task, writes in ((workers, ("worker", 0), True),
                                  (workers, ("worker", 1), False),
                                  ({**workers, "chief": ["127.0.0.1:3"]}, ("worker", 0), False),
                                  ({**workers, "chief": ["127.0.0.1:3"]}, ("chief", 0), True)):
        monkeypatch.setenv("TF_CONFIG", json.dumps(
            {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
        assert zoo.distribute.writes_run("multi_worker") is writes, (cluster, task)
        assert zoo.distribute.task_name("multi_worker") == f"{task[0]}{task[1]}"
        assert zoo.distribute.own_run_dir("run", "multi_worker") == (
            "run" if writes else os.path.join("run", f"{task[0]}{task[1]}"))
    assert zoo.distribute.writes_run("mirrored") and zoo.distribute.task_name("auto") is None
    monkeypatch.setenv("TF_CONFIG", json.dumps(  # an index as a string, as TensorFlow takes it
        {"cluster": workers, "task": {"type": "worker", "index": "1"}}))
    assert zoo.distribute.task_name("multi_worker") == "worker1"
    run_dir = str(tmp_path / "run")
    args = commands._parser().parse_args(["train", "--model", "alexnet", "--image-size", "67",
                                          "--run-dir", run_dir])
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**workers, "chief": ["c:3"]},
                                                "task": {"type": "worker", "index": 0}}))
    runs.Setup(args, run_dir, "multi_worker")  # worker 0 of a cluster with a chief
    assert not os.path.exists(run_dir), os.listdir(run_dir)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": workers,
                                                "task": {"type": "worker", "index": 0}}))
    runs.Setup(args, run_dir, "multi_worker")
    assert sorted(os.listdir(run_dir)) == [".lock", "statistics.npz"]


def test_zoo_train_holds_its_run_directory_from_the_statistics_to_the_end(tmp_path,
                                                                         monkeypatch, capsys):
    """The lock was taken for the statistics pass, dropped, and taken again by zoo.train:
    a second command on the directory in between wrote its statistics over the first's.
    Now it is held to the command's end, zoo.train's own lock passing through (the same
    thread), and let go after; a lock taken from another thread is still refused."""
    import threading

    from safeio import directory_lock

    run_dir = str(tmp_path / "run")
    seen = {}

    def train(*args, **kwargs):
        with directory_lock(run_dir):  # zoo.train's own, in the command's thread
            seen["nested"] = True

        def other():
            try:
                with directory_lock(run_dir):
                    seen["other"] = "took it"
            except UserError as err:
                seen["other"] = str(err)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        raise UserError("stopped by the test")

    monkeypatch.setattr(zoo, "train", train)
    argv = ["train", "--model", "resnet18", "--image-size", "8", "--model-arg", "width=0.25",
            "--model-arg", "stem='cifar'", "--epochs", "1", "--run-dir", run_dir]
    assert cli.main(argv) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert seen["nested"] and seen["other"].startswith(f"The run directory {run_dir} is in "
                                                       "use by another run")
    import safeio

    assert safeio._SHARED == {}  # let go at the command's end, its sharing too

    def after():
        with directory_lock(run_dir):
            seen["after"] = True

    thread = threading.Thread(target=after)
    thread.start()
    thread.join()
    assert seen["after"]


def test_search_widths_the_builder_refuses_are_one_line_before_the_statistics(tmp_path,
                                                                               capsys):
    """A --width the builder refuses (inf; half an fc unit for AlexNet) was its error
    after the statistics pass, a full pass over the training set, whose statistics.npz it
    left, and named the library's `width`, not the flag."""
    for model, size, good, width in (("vgg11", "32", "0.0625", "inf"),
                                     ("alexnet", "67", "8", "0.5")):
        run_dir = tmp_path / model
        assert cli.main(["search", "--model", model, "--image-size", size, "--width", good,
                         width, "--run-dir", str(run_dir)]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"zoo search: error: --width {width}: "), err
        assert "statistics" not in captured.out and not (run_dir / "statistics.npz").exists()
