"""Writers never delete what the project did not write, and never leave an export absent:
faults are injected at named points (the process kills itself there), not hoped for by
timing."""

import errno
import json
import os
import re
import shutil
import signal
import socket
import sys
import textwrap

import numpy as np
import pytest

import ensembles
from safeio.checks import UserError
from tests.helpers import run_python, tiny_model
from zoo import cli


def _ensemble(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return ensembles.Ensemble([tiny_model()])


def test_export_refuses_a_directory_of_other_files_and_a_file(tmp_path):
    home = tmp_path / "models"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match=r"Refusing to export to .*models: .*not an export"):
        ensembles.export(_ensemble(), str(home))
    with pytest.raises(ValueError, match=r"Refusing"):
        ensembles.export(_ensemble(), str(home), overwrite=True)
    assert os.listdir(home) == ["thesis.tex"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"Cannot export to .*file: a file is there"):
        ensembles.export(_ensemble(), str(tmp_path / "file"))
    assert not [n for n in os.listdir(tmp_path) if n.startswith((".tmp", ".old"))]


def test_export_replaces_only_its_own_previous_export_with_overwrite(tmp_path):
    path = str(tmp_path / "served")
    (tmp_path / "served").mkdir()  # an empty directory is fine
    ensembles.export(_ensemble(0), path)
    assert {"saved_model.pb", "zoo_export.json"} <= set(os.listdir(path))
    with pytest.raises(ValueError, match="already holds an export; pass overwrite=True"):
        ensembles.export(_ensemble(1), path)
    first = (tmp_path / "served" / "saved_model.pb").read_bytes()
    ensembles.export(_ensemble(1), path, overwrite=True)
    assert (tmp_path / "served" / "saved_model.pb").read_bytes() != first
    assert sorted(os.listdir(tmp_path)) == ["served"]  # no .tmp- or .old- left


def _tree(root):
    """Everything below ``root``, links not followed: {relative path: bytes, a link's
    target, or None for a directory}."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, root)
            found[key] = (f"-> {os.readlink(path)}" if os.path.islink(path) else
                          None if os.path.isdir(path) else open(path, "rb").read())
    return found


def _one_error_line(capsys, command="export"):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"zoo {command}: error: "), err
    return err[0]


def test_overwrite_refuses_an_export_holding_files_it_did_not_write(tmp_path, capsys):
    """A user's notes, a folder of theirs, TensorFlow Serving's warm-up requests and a file
    put inside one of the export's own folders: --overwrite is refused in one line naming
    the first three (it deleted them all), and everything stays as it was; moved out, they
    no longer stop the overwrite."""
    model = tmp_path / "m.keras"
    tiny_model().save(model)
    served = tmp_path / "served"
    ensembles.export(_ensemble(0), str(served))
    (served / "NOTES.md").write_text("notes")
    (served / "extra").mkdir()
    (served / "extra" / "config.yaml").write_text("x: 1")
    (served / "assets.extra").mkdir()
    (served / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"warm-up")
    (served / "variables" / "mine.txt").write_text("in a folder of the export's")
    before = _tree(served)
    expected = (r"Refusing to replace the export in .*served: it holds files the export did "
                r"not write \(NOTES\.md, assets\.extra/, extra/ and 1 more\), which "
                r"replacing it would delete\. Nothing was changed")
    for overwrite in (True, False):  # without --overwrite too: it would not help
        with pytest.raises(UserError, match=expected):
            ensembles.export(_ensemble(1), str(served), overwrite=overwrite)
    assert cli.main(["export", str(model), str(served), "--overwrite"]) == 2
    assert re.search(expected, _one_error_line(capsys))
    assert _tree(served) == before
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "served"]  # no .tmp- or .old- left

    (tmp_path / "kept").mkdir()
    for name in ("NOTES.md", "extra", "assets.extra", "variables/mine.txt"):
        shutil.move(str(served / name), str(tmp_path / "kept"))
    ensembles.export(_ensemble(1), str(served), overwrite=True)
    assert (served / "saved_model.pb").read_bytes() != before["saved_model.pb"]
    assert sorted(os.listdir(tmp_path)) == ["kept", "m.keras", "served"]


def test_an_export_of_an_earlier_version_is_replaced_only_when_it_holds_its_own_files(
        tmp_path):
    """An export whose marker lists no files (written before it did) may be replaced when it
    holds what those exports wrote, and nothing else; the new marker lists its files."""
    import json

    served = tmp_path / "served"
    ensembles.export(_ensemble(0), str(served))
    marker = json.loads((served / "zoo_export.json").read_text())
    assert {"saved_model.pb", "variables/", "assets/class_names.txt"} <= set(marker["files"])
    earlier = {"written_by": "keras-zoo-ensembles", "time": "2026-11-30 12:00:00"}
    (served / "zoo_export.json").write_text(json.dumps(earlier))
    (served / "assets" / "README.txt").write_text("the user's")
    with pytest.raises(UserError, match=r"did not write \(assets/README\.txt\)"):
        ensembles.export(_ensemble(1), str(served), overwrite=True)
    assert (served / "assets" / "README.txt").read_text() == "the user's"
    (served / "assets" / "README.txt").unlink()
    ensembles.export(_ensemble(1), str(served), overwrite=True)
    assert "files" in json.loads((served / "zoo_export.json").read_text())


@pytest.mark.parametrize("target", ["an export", "an empty folder", "nothing"])
def test_an_export_to_a_symbolic_link_is_refused_and_the_link_and_its_target_stay(
        target, tmp_path, capsys):
    """``current -> v3``, a deployment's layout: an export to ``current`` neither replaces
    the link with a folder (it did, leaving v3 stale) nor changes v3 in place through it;
    one line says so, and both stay as they were. The same for an ONNX or LiteRT file."""
    model = tmp_path / "m.keras"
    tiny_model().save(model)
    if target == "an export":
        ensembles.export(_ensemble(0), str(tmp_path / "v3"))
    elif target == "an empty folder":
        (tmp_path / "v3").mkdir()
    (tmp_path / "current").symlink_to("v3")
    (tmp_path / "current.tflite").symlink_to("v3.tflite")
    before = _tree(tmp_path)
    expected = (r"Refusing to export to .*current(\.tflite)?: it is a symbolic link \(to "
                r"v3(\.tflite)?\), which an export neither replaces nor writes through; "
                r"nothing was changed")
    for overwrite in (True, False):
        with pytest.raises(UserError, match=expected):
            ensembles.export(_ensemble(1), str(tmp_path / "current"), overwrite=overwrite)
        with pytest.raises(UserError, match=expected):
            ensembles.export(_ensemble(1), str(tmp_path / "current.tflite"),
                             overwrite=overwrite, format="litert")
    assert cli.main(["export", str(model), str(tmp_path / "current"), "--overwrite"]) == 2
    assert re.search(expected, _one_error_line(capsys))
    assert _tree(tmp_path) == before


def test_overwrite_replaces_a_previous_onnx_or_litert_export_and_no_users_file(tmp_path,
                                                                              capsys):
    """--overwrite replaced any file at an .onnx or .tflite path, and any .classes.txt
    beside it: a user's notes, their own class list, another tool's LiteRT model. A previous
    export (ONNX with this project's metadata, a LiteRT flatbuffer with its class names
    beside it) is still replaced."""
    onnx = pytest.importorskip("onnx")
    from ensembles.export import check_export_target

    model = tmp_path / "m.keras"
    tiny_model().save(model)
    (tmp_path / "notes.onnx").write_text("my notes")
    (tmp_path / "notes.tflite").write_text("my notes")
    (tmp_path / "alone.onnx.classes.txt").write_text("my classes")
    before = _tree(tmp_path)
    for target, message in (
            ("notes.onnx", r"Refusing to replace .*notes\.onnx: it is not a previous onnx "
                           r"export of this project"),
            ("notes.tflite", r"notes\.tflite: it is not a previous litert export"),
            ("alone.onnx", r"alone\.onnx\.classes\.txt: it is not beside a previous onnx "
                           r"export of this project \(.*alone\.onnx is absent\), and "
                           r"nothing else")):
        format = "litert" if target.endswith(".tflite") else "onnx"
        assert cli.main(["export", str(model), str(tmp_path / target), "--format", format,
                         "--overwrite"]) == 2
        assert re.search(message, _one_error_line(capsys)), target
    assert _tree(tmp_path) == before
    # A previous export of ours (its metadata names the classes and members): replaceable.
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    ours = onnx.helper.make_model(graph)
    for key in ("class_names", "members"):
        entry = ours.metadata_props.add()
        entry.key, entry.value = key, "[]"
    onnx.save(ours, str(tmp_path / "served.onnx"))
    (tmp_path / "served.onnx.classes.txt").write_text("0\n1\n")
    check_export_target(str(tmp_path / "served.onnx"), "onnx", overwrite=True)
    # A LiteRT flatbuffer records nothing: ours has its class names beside it, another
    # tool's model (TFL3 too) none, and it was replaced.
    (tmp_path / "theirs.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(16))
    with pytest.raises(UserError, match=r"theirs\.tflite: it is not a previous litert"):
        check_export_target(str(tmp_path / "theirs.tflite"), "litert", overwrite=True)
    (tmp_path / "served.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(16))
    (tmp_path / "served.tflite.classes.txt").write_text("0\n1\n")
    check_export_target(str(tmp_path / "served.tflite"), "litert", overwrite=True)


KILLED_FILE_EXPORT = textwrap.dedent(
    """
    import os, sys
    from zoo import cli

    rename = os.replace

    def replace(source, destination, *args, **kwargs):  # kill -9 once the model has landed
        rename(source, destination, *args, **kwargs)
        if os.fspath(destination) == sys.argv[2]:
            os.kill(os.getpid(), 9)

    os.replace = replace
    cli.main(["export", sys.argv[1], sys.argv[2], "--format", "litert", "--overwrite"])
    """)


@pytest.mark.slow  # LiteRT conversions in processes of their own
def test_a_file_export_killed_between_its_two_renames_is_finished_by_the_next(tmp_path,
                                                                             capsys):
    """The model lands first, then its class names file: killed between the two, a first
    export was refused at every rerun as not this project's (a LiteRT file records no
    names), and over a previous export the new model served the old one's class names.
    The next export (or check of the path) puts the names file, written whole before the
    model landed, in its place."""
    import zoo
    from ensembles.export import check_export_target

    paths = {}
    for names in ("abcd", "wxyz"):
        paths[names] = str(tmp_path / f"{names}.keras")
        zoo.save_model(zoo.set_class_names(tiny_model(), list(names)), paths[names])
    served = str(tmp_path / "served.tflite")
    assert cli.main(["export", paths["abcd"], served, "--format", "litert"]) == 0
    killed = run_python(KILLED_FILE_EXPORT, check=False, args=[paths["wxyz"], served])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert open(served + ".classes.txt").read() == "a\nb\nc\nd\n"  # (the old export's)
    check_export_target(served, "litert", overwrite=True)
    assert open(served + ".classes.txt").read() == "w\nx\ny\nz\n"
    assert sorted(os.listdir(tmp_path)) == ["abcd.keras", "served.tflite",
                                            "served.tflite.classes.txt", "wxyz.keras"]
    # A first export killed so: the next one replaces it.
    first = str(tmp_path / "first.tflite")
    killed = run_python(KILLED_FILE_EXPORT, check=False, args=[paths["abcd"], first])
    assert killed.returncode == -signal.SIGKILL and not os.path.exists(first + ".classes.txt")
    assert cli.main(["export", paths["wxyz"], first, "--format", "litert", "--overwrite"]) == 0
    assert open(first + ".classes.txt").read() == "w\nx\ny\nz\n"
    capsys.readouterr()


def _patch_write_out(monkeypatch, write_out):
    """Replace the SavedModel writer of Keras' export archive (the class
    ``keras.export.ExportArchive()`` makes for this backend); ``write_out(real, self,
    filepath, **kwargs)`` gets the real one. (Patching ``tf.saved_model.save`` does not
    hold: TensorFlow sets it again the first time an export runs.)"""
    import keras

    archive = type(keras.export.ExportArchive())
    real = archive.write_out
    monkeypatch.setattr(archive, "write_out",
                        lambda self, filepath, **kwargs: write_out(real, self, filepath,
                                                                   **kwargs))


def _read_only_export(monkeypatch, reason):
    """Make the SavedModel writer fail as TensorFlow does on a read-only file system: its
    error names the temporary directory, then the OS's reason (root may write anywhere,
    so it is simulated)."""
    import tensorflow as tf

    error = (tf.errors.PermissionDeniedError if reason in ("Read-only file system",
                                                           "Permission denied")
             else tf.errors.ResourceExhaustedError)

    def write_out(real, self, filepath, **kwargs):
        raise error(None, None, f"{filepath}; {reason}")

    _patch_write_out(monkeypatch, write_out)


@pytest.mark.parametrize("reason, error, code", [
    ("Read-only file system", OSError, 30), ("Permission denied", PermissionError, 13),
    ("No space left on device", OSError, 28)])
def test_tensorflows_file_system_errors_in_an_export_are_one_line_naming_the_destination(
        reason, error, code, tmp_path, capsys, monkeypatch):
    """TensorFlow's errors are not OSErrors: a read-only mount was shown as a bug, naming a
    ``.tmp-`` directory. Now it is the OSError Python's own ``open`` raises (PermissionError
    for EACCES), naming the user's path, and one line; a previous export stays."""
    from zoo.cli import commands

    model = tmp_path / "m.keras"
    tiny_model().save(model)
    served = tmp_path / "served"
    ensembles.export(_ensemble(0), str(served))
    before = _tree(served)
    _read_only_export(monkeypatch, reason)
    for path, overwrite in ((tmp_path / "new", False), (served, True)):
        with pytest.raises(error) as raised:
            ensembles.export(_ensemble(1), str(path), overwrite=overwrite)
        assert raised.value.errno == code and raised.value.filename == str(path)
        line = (f"{reason} (the previous {path.name}, if any, is left as it was): {path}"
                + (" (" if code == 28 else ""))  # then the free space
        assert commands._one_line(raised.value).startswith(line)
        assert cli.main(["export", str(model), str(path)] + ["--overwrite"] * overwrite) == 2
        err = _one_error_line(capsys)
        assert err.startswith(f"zoo export: error: {line}") and ".tmp-" not in err, err
    assert _tree(served) == before
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "served"]  # no .tmp- left


def test_a_genuine_tensorflow_fault_in_an_export_names_the_destination(tmp_path,
                                                                      monkeypatch):
    """TensorFlow's own error, unformatted by the test: a file where the export's temporary
    directory should be makes its writer fail; the OSError names the user's path."""
    def blocked(real, self, filepath, **kwargs):
        with open(filepath, "w") as f:
            f.write("in the way")
        return real(self, filepath, **kwargs)

    _patch_write_out(monkeypatch, blocked)
    path = tmp_path / "served"
    with pytest.raises(OSError) as raised:
        ensembles.export(_ensemble(0), str(path))
    assert raised.value.filename == str(path), raised.value
    assert type(raised.value.__cause__).__module__.startswith("tensorflow")
    assert raised.value.strerror.startswith(f"{path} is not a directory (the previous served")
    assert os.listdir(tmp_path) == []


def test_atomic_writes_name_the_destination_not_their_temporary_file(tmp_path):
    """A fault of the OS while a file or an export is written names the user's path (a
    read-only mount named ``.tmp-9995-70e3b39b34-t.csv``), once, for the outermost write;
    an error about another file is raised as it is."""

    import pandas as pd

    import safeio
    from zoo.cli import commands

    # A real fault of the OS: a name past the 255 bytes a file name may have (the scratch
    # copy's is cut to fit, and the rename to it fails).
    long_table = tmp_path / ("t" * 256 + ".csv")
    with pytest.raises(OSError) as raised:
        safeio.write_csv(pd.DataFrame({"a": [1]}), str(long_table))
    assert raised.value.errno == errno.ENAMETOOLONG
    assert raised.value.filename == str(long_table) and raised.value.filename2 is None
    assert os.listdir(tmp_path) == []

    table = tmp_path / "t.csv"

    table.write_text("the previous table")
    with pytest.raises(OSError) as raised:
        with safeio.atomic_path(table) as tmp:
            raise OSError(errno.EROFS, "Read-only file system", tmp)  # as open(tmp) does
    assert commands._one_line(raised.value) == (
        f"Read-only file system (the previous t.csv, if any, is left as it was): {table}")
    with pytest.raises(FileNotFoundError) as raised:
        with safeio.atomic_path(table):
            open(tmp_path / "absent" / "input.txt")
    assert raised.value.filename == str(tmp_path / "absent" / "input.txt")
    assert table.read_text() == "the previous table"

    served = tmp_path / "served"
    with pytest.raises(OSError) as raised:  # a full disk inside a file of the export
        with safeio.atomic_directory(served, required=()) as tmp:
            os.mkdir(tmp)
            with safeio.atomic_path(os.path.join(tmp, "assets.txt")):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.filename == str(served)
    assert raised.value.strerror == ("No space left on device (the previous served, if any, "
                                     "is left as it was)")
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]


def test_zoo_export_to_the_working_directory_or_a_user_folder_is_one_line_and_deletes_nothing(
        tmp_path, capsys, monkeypatch):
    model = tmp_path / "work" / "m.keras"
    model.parent.mkdir()
    tiny_model().save(model)
    (tmp_path / "work" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "work")
    for target in (".", str(tmp_path / "work"), "notes.txt"):
        assert cli.main(["export", "m.keras", target]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("zoo export: error:"), err
    assert sorted(os.listdir(tmp_path / "work")) == ["m.keras", "notes.txt"]
    assert cli.main(["ensemble", "m.keras", "--output", str(tmp_path)]) == 2  # not a file
    assert "must end in .keras" in capsys.readouterr().err
    (tmp_path / "dir.keras").mkdir()
    assert cli.main(["ensemble", "m.keras", "--output", str(tmp_path / "dir.keras")]) == 2
    assert "a directory is there" in capsys.readouterr().err


def test_an_export_into_an_empty_working_directory_or_onto_a_mount_point_is_refused(
        tmp_path, capsys, monkeypatch):
    """From an empty folder, `zoo export ../m.keras .` replaced the working directory (the
    shell was left in a deleted one); an empty mount point (a container's volume) failed
    with 'Device or resource busy' after the whole export was written beside it. A
    directory of other files names what is missing of an export, not a fixed list."""
    model = tmp_path / "m.keras"
    tiny_model().save(model)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    assert cli.main(["export", str(model), "."]) == 2
    assert "it is the working directory, which the export would replace" in \
        _one_error_line(capsys)
    (tmp_path / "empty" / "inside").mkdir()
    monkeypatch.chdir(tmp_path / "empty" / "inside")
    assert cli.main(["export", str(model), ".."]) == 2
    assert "it holds the working directory, which the export would replace" in \
        _one_error_line(capsys)
    volume = str(tmp_path / "volume")
    os.mkdir(volume)
    monkeypatch.setattr(os.path, "ismount", lambda path: os.fspath(path) == volume)
    assert cli.main(["export", str(model), volume]) == 2
    assert (f"Cannot export to {volume}: it is a mount point, which the finished export "
            f"cannot be moved onto. Export into a folder inside it") in _one_error_line(capsys)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "saved_model.pb").write_bytes(b"someone's")
    with pytest.raises(UserError, match=r"not an export of this project \(zoo_export.json "
                                        r"missing\)"):
        ensembles.export(_ensemble(), str(plain), overwrite=True)


# A process killed at a named point: the slow tier (9 s each), as test_processes.py's kill
# test; the fast tier resumes in one process (test_recipe.py's
# test_a_stopped_run_resumes_to_the_uninterrupted_run).
@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_around_the_swap_always_leaves_a_whole_export(when, tmp_path):
    """SIGKILL just before or just after the atomic exchange of the new export with the
    previous one: the path holds the previous or the new export, never nothing."""
    path = str(tmp_path / "served")
    ensembles.export(_ensemble(0), path)
    first = (tmp_path / "served" / "saved_model.pb").read_bytes()
    code = textwrap.dedent(f"""
        import os, signal
        import ensembles
        import safeio
        from tests.helpers import tiny_model
        exchange = safeio._exchange
        def killing(a, b):
            if {when!r} == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            done = exchange(a, b)
            os.kill(os.getpid(), signal.SIGKILL)
        safeio._exchange = killing
        ensembles.export(ensembles.Ensemble([tiny_model(classes=3)]), {path!r}, overwrite=True)
    """)
    result = run_python(code, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert {"saved_model.pb", "zoo_export.json"} <= set(os.listdir(path))
    now = (tmp_path / "served" / "saved_model.pb").read_bytes()
    assert (now == first) == (when == "before")
    # The next export works and removes what the killed write left beside it, and only that.
    (tmp_path / ".tmp-12-notes").write_text("not ours: another name")
    ensembles.export(_ensemble(2), path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == [".tmp-12-notes", "served"]


def _corrupt_files(tmp_path):
    import zipfile

    good = tmp_path / "good.keras"
    tiny_model().save(good)
    data = good.read_bytes()
    (tmp_path / "random.keras").write_bytes(os.urandom(1000))
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "truncated.keras").write_bytes(data[:len(data) // 2])
    with zipfile.ZipFile(good) as src, \
            zipfile.ZipFile(tmp_path / "noconfig.keras", "w") as no_config, \
            zipfile.ZipFile(tmp_path / "badweights.keras", "w") as bad_weights, \
            zipfile.ZipFile(tmp_path / "unknownclass.keras", "w") as unknown_class:
        for name in src.namelist():
            content = src.read(name)
            if name != "config.json":
                no_config.writestr(name, content)
            unknown_class.writestr(name, content.replace(b'"GlobalAveragePooling2D"',
                                                         b'"GlobalMedianPooling2D"'))
            bad_weights.writestr(name, content[:len(content) // 2]
                                 if name.endswith(".h5") else content)
    # The archive's end record intact (is_zipfile passes), its directory damaged.
    central = data.index(b"PK\x01\x02")
    (tmp_path / "badcentral.keras").write_bytes(data[:central] + b"XXXX" + data[central + 4:])
    with zipfile.ZipFile(good) as src, \
            zipfile.ZipFile(tmp_path / "badconfig.keras", "w") as bad_config:
        for name in src.namelist():
            bad_config.writestr(name, b"{not json" if name == "config.json" else src.read(name))
    # A known layer whose config holds an argument it does not take (another version's):
    # "names a class this process does not know", Keras' reason dropped.
    with zipfile.ZipFile(good) as src, \
            zipfile.ZipFile(tmp_path / "badargument.keras", "w") as bad_argument:
        for name in src.namelist():
            content = src.read(name)
            if name == "config.json":
                config = json.loads(content)
                pooling = next(layer for layer in config["config"]["layers"]
                               if layer["class_name"] == "GlobalAveragePooling2D")
                pooling["config"]["bogus_arg"] = 1
                content = json.dumps(config).encode()
            bad_argument.writestr(name, content)


@pytest.mark.parametrize("name, message", [
    ("random", r"not a \.keras file \(1,000 bytes that are not a zip archive"),
    ("empty", r"not a \.keras file \(empty\)"),
    ("truncated", r"not a \.keras file .*truncated"),
    ("noconfig", r"the archive has no config\.json"),
    ("badweights", r"its weights cannot be read"),
    ("unknownclass", r"names a class this process does not know"),
    ("badargument", r"Keras could not rebuild a layer from its config \(.*bogus_arg.*\): "
                    r"written by another version of the code that defines it\?"),
    ("badcentral", r"a damaged zip archive \(Bad magic number for central directory\)"),
    ("badconfig", r"its config\.json is not JSON \(Expecting property name"),
])
@pytest.mark.parametrize("command", ["evaluate", "ensemble", "export", "zoo.load_model",
                                     "ensembles.load"])
def test_corrupt_keras_files_are_one_line_naming_the_file(name, message, command, tmp_path,
                                                         capsys):
    _corrupt_files(tmp_path)
    path = str(tmp_path / f"{name}.keras")
    if "." in command:  # the library's loaders: the same one-line ValueError
        import zoo

        with pytest.raises(UserError, match=message) as caught:
            (zoo.load_model if command == "zoo.load_model" else ensembles.load)(path)
        assert str(caught.value).startswith(f"Cannot load {path}: ")
        assert "\n" not in str(caught.value)
        return
    argv = {"evaluate": ["evaluate", path],
            "ensemble": ["ensemble", path, "--output", str(tmp_path / "e.keras")],
            "export": ["export", path, str(tmp_path / "served")]}[command]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{name}.keras" in err[0], err
    assert re.search(message, err[0]), err[0]


def test_a_run_directory_holds_one_run_and_a_killed_holder_does_not_block(tmp_path, capsys):
    """Another process holds the run directory's lock (it says so on stdout, then waits):
    zoo.train and `zoo train` refuse at once with its PID; once it is killed -9, they run."""
    import subprocess
    import sys

    import zoo
    from tests.helpers import REPO, tiny_data

    run_dir = str(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from safeio import directory_lock\n"
         f"with directory_lock({run_dir!r}):\n    print('locked', flush=True)\n"
         "    sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf"in use by another run \(process {holder.pid} "
                                             rf"on {re.escape(socket.gethostname())}\)"):
            zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=run_dir, verbose=0)
        assert cli.main(["train", "--model", "resnet18", "--run-dir", run_dir]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"process {holder.pid}" in err[0], err
        assert os.listdir(run_dir) == [".lock"]  # nothing written beside the lock
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    result = zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=run_dir, verbose=0)
    assert len(result.history) == 1


def test_non_finite_pixels_and_predictions_are_named():
    import tensorflow as tf

    import data

    images = np.random.default_rng(0).uniform(0, 255, (7, 6, 6, 3)).astype("float32")
    images[5, 2, 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"Image 5 of the dataset .* has 1 NaN or infinite"):
        data.compute_statistics(tf.data.Dataset.from_tensor_slices(images).batch(3))
    model = tiny_model(size=6)
    images[2, 0, 0, 0] = np.inf
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(7, "int32"))).batch(4)
    with pytest.raises(ValueError, match=r"2 of 7 inputs hold NaN or infinite pixels "
                                         r"\(inputs \[2, 5\]\)"):
        ensembles.evaluate(model, dataset)
    # Finite pixels, a diverged member: the member and the inputs are named.
    clean = np.nan_to_num(images, nan=0.0, posinf=255.0)
    dataset = tf.data.Dataset.from_tensor_slices((clean, np.zeros(7, "int32"))).batch(4)
    broken = tiny_model(size=6)
    broken.get_layer("predictions").bias.assign([np.nan, 0.0, 0.0, 0.0])
    broken.name = "diverged"
    with pytest.raises(ValueError, match=r"7 of 7 inputs get NaN or infinite probabilities "
                                         r"from diverged \(inputs \[0, 1, 2, 3, 4, 5, 6\]\)"):
        ensembles.evaluate([model, broken], dataset)


def _epochs_started():
    """``(started, callback)``: the callback appends each epoch it sees begin (1-based)."""
    import keras

    started = []
    return started, keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(epoch + 1))


def _train(run_dir, epochs, **kwargs):
    import zoo
    from tests.helpers import tiny_data

    return zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=epochs, seed=0,
                     run_dir=str(run_dir), verbose=0, **kwargs)


def test_ctrl_c_inside_the_backup_write_leaves_a_run_that_resumes(tmp_path, monkeypatch):
    """KeyboardInterrupt half-way through the third epoch's backup write: the half-written
    file is a temporary one, so the rerun resumes from the second epoch's backup (it trains
    epochs 3 to 5, not 1 to 5) and ends with the weights of an uninterrupted run."""
    from zoo.training import callbacks

    real = callbacks.SafeBackupAndRestore._write_weights  # (a copy of last.keras's, here)
    calls = []

    def interrupted(self, path):
        calls.append(path)
        if len(calls) == 3:
            with open(path, "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # a truncated HDF5 file
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(callbacks.SafeBackupAndRestore, "_write_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", epochs=5)
    monkeypatch.setattr(callbacks.SafeBackupAndRestore, "_write_weights", real)
    started, record = _epochs_started()
    result = _train(tmp_path / "run", epochs=5, callbacks=[record])
    assert started == [3, 4, 5]
    assert result.history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert not [n for n in os.listdir(tmp_path / "run" / "backup") if n.startswith(".tmp")]
    uninterrupted = _train(tmp_path / "reference", epochs=5)
    for ours, theirs in zip(result.model.get_weights(), uninterrupted.model.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_a_kill_between_the_first_backups_weights_and_metadata_starts_the_run_again(
        tmp_path, monkeypatch):
    """Killed after the first epoch's backup weights and before their metadata (no earlier
    backup to fall back to): the rerun starts from the first epoch with one warning, as a
    run killed before any backup does; it is not refused as a damaged backup."""
    from zoo.training import callbacks

    real = callbacks.write_json

    def killed(path, *args, **kwargs):
        if str(path).endswith("training_metadata.json"):
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(callbacks, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", epochs=3)
    monkeypatch.setattr(callbacks, "write_json", real)
    assert sorted(os.listdir(tmp_path / "run" / "backup")) == ["latest.weights.h5"]
    started, record = _epochs_started()
    with pytest.warns(UserWarning, match=r"first backup in .* was cut short \(no metadata\); "
                                         r"the run starts from its first epoch"):
        result = _train(tmp_path / "run", epochs=3, callbacks=[record])
    assert started == [1, 2, 3]
    assert result.history["epoch"].tolist() == [1, 2, 3]


def test_two_kills_in_a_row_inside_backups_leave_a_pair_to_resume_from(tmp_path,
                                                                         monkeypatch):
    """Killed between the third epoch's backup weights and metadata, the rerun resumes from
    the second epoch's pair; killed again while its own backup's weights are written, the
    next rerun still finds that pair. (The rerun's backup copied the mismatched pair over
    the readable one first, and the run was refused: "no earlier backup is readable".)"""
    from zoo.training import callbacks

    real_json, real_save = callbacks.write_json, callbacks.SafeBackupAndRestore._write_weights
    backups = []

    def killed_json(path, *args, **kwargs):
        if str(path).endswith("training_metadata.json"):
            backups.append(path)
            if len(backups) == 3:
                raise KeyboardInterrupt
        return real_json(path, *args, **kwargs)

    monkeypatch.setattr(callbacks, "write_json", killed_json)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", epochs=5)

    def killed_save(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks, "write_json", real_json)
    monkeypatch.setattr(callbacks.SafeBackupAndRestore, "_write_weights", killed_save)
    with pytest.warns(UserWarning, match=r"resumed from the previous backup"):
        with pytest.raises(KeyboardInterrupt):
            _train(tmp_path / "run", epochs=5)
    monkeypatch.setattr(callbacks.SafeBackupAndRestore, "_write_weights", real_save)
    started, record = _epochs_started()
    with pytest.warns(UserWarning, match=r"resumed from the previous backup"):
        result = _train(tmp_path / "run", epochs=5, callbacks=[record])
    assert started == [3, 4, 5]
    assert result.history["epoch"].tolist() == [1, 2, 3, 4, 5]


def test_a_run_stopped_before_an_epochs_backup_is_not_ended_at_the_backups_epoch(
        tmp_path, monkeypatch):
    """Stopped at the end of the third epoch after its history row and checkpoints, before
    its backup (two epochs): a rerun with epochs=2 trained nothing and left history.csv and
    last.keras at the third epoch, the model returned at the second. Refused in one line,
    writing nothing; epochs=3 trains the third again."""
    from zoo.training import callbacks

    real = callbacks.SafeBackupAndRestore.on_epoch_end

    def killed(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch, logs)

    monkeypatch.setattr(callbacks.SafeBackupAndRestore, "on_epoch_end", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", epochs=5)
    monkeypatch.setattr(callbacks.SafeBackupAndRestore, "on_epoch_end", real)
    kept = ["history.csv", "checkpoints/last.keras", "backup/training_metadata.json"]
    before = {name: (tmp_path / "run" / name).read_bytes() for name in kept}
    with pytest.raises(UserError, match=r"stopped in epoch 3 \(killed before that epoch's "
                                        r"backup, or diverged\): its backup holds 2 epochs, "
                                        r"its history.csv and checkpoints 3\. epochs=2 would "
                                        r"train none .* give epochs=3 or more"):
        _train(tmp_path / "run", epochs=2)
    assert {name: (tmp_path / "run" / name).read_bytes() for name in kept} == before
    assert _train(tmp_path / "run", epochs=3).history["epoch"].tolist() == [1, 2, 3]


def test_a_resume_with_the_history_moved_aside_keeps_best_keras_and_the_plateau(tmp_path):
    """The corrupt-history message advises moving history.csv aside: the checkpoint's best
    value and the plateau's patience were rebuilt from its rows alone, so the next epoch
    replaced best.keras whatever its score, and the learning rate fell an epoch late. Each
    backup now records them. (At 3.0 the validation loss is best in epoch 2, and the drop
    comes after epoch 3.)"""
    settings = dict(learning_rate=3.0, lr_patience=1)
    reference = _train(tmp_path / "reference", epochs=4, **settings)
    assert reference.history["val_loss"].idxmin() == 1  # epoch 2: what the test is about
    run = tmp_path / "run"
    _train(run, epochs=2, **settings)
    best = (run / "checkpoints" / "best.keras").read_bytes()
    (run / "history.csv").rename(tmp_path / "history.csv.aside")
    resumed = _train(run, epochs=4, **settings)
    assert resumed.history["epoch"].tolist() == [3, 4]  # a record restarted at epoch 3
    assert (run / "checkpoints" / "best.keras").read_bytes() == best
    expected = reference.history.iloc[2:].reset_index(drop=True)
    np.testing.assert_allclose(resumed.history["learning_rate"], expected["learning_rate"])
    np.testing.assert_allclose(resumed.history["val_loss"], expected["val_loss"], rtol=1e-5)


def test_metadata_removed_after_later_backups_is_refused_not_restarted(run_dir):
    """Both metadata files gone from a run of three epochs (the previous copy is there: no
    kill leaves that): refused, as damage, not taken for a first backup cut short."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        (run_dir / "backup" / name).unlink()
    history = (run_dir / "history.csv").read_bytes()
    with pytest.raises(ValueError, match=r"training_metadata\.json is unreadable "
                                         r"\(FileNotFoundError\), and no earlier backup"):
        _train(run_dir, epochs=4)
    assert (run_dir / "history.csv").read_bytes() == history


@pytest.fixture(scope="module")
def _three_epochs(tmp_path_factory):
    """One tiny run of three epochs (checkpoints, backup, history, config), trained once per
    test worker for the tests below that damage or resume a run."""
    run_dir = tmp_path_factory.mktemp("three_epochs")
    _train(run_dir, epochs=3)
    return run_dir


@pytest.fixture
def run_dir(_three_epochs, tmp_path):
    """A copy of the three-epoch run (default learning rate, 0.01), for this test alone."""
    copy = tmp_path / "run"
    shutil.copytree(_three_epochs, copy, symlinks=True)
    return copy


@pytest.mark.parametrize("damage", ["truncated weights", "garbage metadata"])
def test_an_unreadable_backup_falls_back_with_one_warning(damage, run_dir):
    backup = run_dir / "backup"
    weights = backup / "latest.weights.h5"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 2])
    else:
        (backup / "training_metadata.json").write_text("{\"epo")
    with pytest.warns(UserWarning, match=r"resumed from the previous backup"):
        result = _train(run_dir, epochs=4)
    assert result.history["epoch"].tolist() == [1, 2, 3, 4]


def test_with_no_readable_backup_the_run_is_refused_and_kept(run_dir):
    """Both copies of the backup damaged (a kill never leaves that): the resume is refused
    in one line naming the backup, and the run's history and checkpoints stay byte for byte
    (a silent fresh start replaced them). Moved aside as advised, the run starts again."""
    backup = run_dir / "backup"
    weights = backup / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 2])
    (backup / "latest.weights.h5.bkp").write_bytes(b"")
    kept = ["history.csv", "checkpoints/best.keras", "checkpoints/last.keras"]
    before = {name: (run_dir / name).read_bytes() for name in kept}
    with pytest.raises(ValueError, match=rf"backup {re.escape(str(weights))} does not match .*"
                                         r"no earlier backup is readable; the run's history "
                                         r"and checkpoints are left as they were"
                                         rf".* move {re.escape(str(run_dir))} aside") as err:
        _train(run_dir, epochs=4)
    assert "\n" not in str(err.value)
    assert {name: (run_dir / name).read_bytes() for name in kept} == before
    os.rename(backup, run_dir / "backup.damaged")  # the backup alone: the run is kept
    with pytest.raises(ValueError, match=r"holds a run that trained .* no backup/"):
        _train(run_dir, epochs=2)
    assert {name: (run_dir / name).read_bytes() for name in kept} == before
    os.rename(run_dir, str(run_dir) + ".damaged")  # as advised: the run starts again
    assert _train(run_dir, epochs=2).history["epoch"].tolist() == [1, 2]


def test_resuming_with_other_settings_is_refused_in_one_line(run_dir, capsys):
    with pytest.raises(ValueError, match=r"holds a run with other settings \(optimizer\."
                                         r"learning_rate 0\.01 -> 0\.1\)"):  # not float32's
        _train(run_dir, epochs=4, learning_rate=0.1)
    result = _train(run_dir, epochs=4)  # more epochs: a resume
    assert result.history["epoch"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("linked", ["history.csv", "checkpoints/last.keras",
                                    "backup/training_metadata.json.bkp"])
def test_a_run_file_that_is_a_link_is_refused_before_training(linked, run_dir, tmp_path):
    """config.json and history.csv, links to the user's files, became files (the links
    gone), and a linked last.keras was refused after the epoch's training, at every rerun.
    Now one line, before any work: the link, its target and the run are left as they were.
    (A linked folder, a backup/ on another disk, stays allowed; so does a link of the
    user's that no run writes.)"""
    target = tmp_path / "elsewhere" / "kept"
    target.parent.mkdir()
    shutil.copyfile(run_dir / linked, target)
    (run_dir / linked).unlink()
    (run_dir / linked).symlink_to(target)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=rf"{re.escape(str(run_dir / linked))} is a symbolic "
                                         rf"link \(to {re.escape(str(target))}\): a run "
                                         r"replaces its files"):
        _train(run_dir, epochs=4)
    assert (run_dir / linked).is_symlink() and os.readlink(run_dir / linked) == str(target)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # The backup folder moved to another disk and linked: the run resumes through it; a
    # link of the user's beside the checkpoints, which no run writes, is no concern.
    if linked == "history.csv":
        (run_dir / "checkpoints" / "deployed.keras").symlink_to(run_dir / "checkpoints" /
                                                                 "best.keras")
        (run_dir / linked).unlink()
        shutil.copyfile(target, run_dir / linked)
        shutil.move(run_dir / "backup", tmp_path / "disk")
        (run_dir / "backup").symlink_to(tmp_path / "disk")
        assert _train(run_dir, epochs=4).history["epoch"].tolist() == [1, 2, 3, 4]


def test_a_run_recorded_before_its_resize_mode_resumes_and_records_it(run_dir):
    """config.json records the resize mode (zoo.train(resize=)): a resume with another is
    refused as other settings are, and a run whose config was written before the entry
    existed resumes with one, which its checkpoints then record."""
    import json

    import zoo

    config = json.loads((run_dir / "config.json").read_text())
    assert config["resize"] is None
    with pytest.raises(ValueError, match=r"holds a run with other settings \(resize None -> "
                                         r"'squash'\)"):
        _train(run_dir, epochs=4, resize="squash")
    del config["resize"]
    (run_dir / "config.json").write_text(json.dumps(config))
    result = _train(run_dir, epochs=4, resize="squash")
    assert result.history["epoch"].tolist() == [1, 2, 3, 4]
    last = zoo.load_model(str(run_dir / "checkpoints" / "last.keras"))
    assert zoo.resize_mode(last) == "squash"


@pytest.mark.parametrize("content", ["epoch,loss\n1,0.5\n2", "epoch,loss\n1,0.5,7\n",
                                     "epoch,loss\n1,0.5\n3,0.4\n", "\x00\x01garbage"])
def test_a_corrupt_history_is_an_error_naming_the_file(content, run_dir):
    """Before any epoch trains (under TensorFlow it was found at the first epoch's end,
    after an epoch's work: hours of ImageNet), and before anything is written (config.json
    took the new settings and lost its start time, and TensorBoard a new empty log)."""
    import keras

    class Batches(keras.callbacks.Callback):
        trained = 0

        def on_train_batch_end(self, batch, logs=None):
            Batches.trained += 1

    (run_dir / "history.csv").write_text(content)
    before = _tree(run_dir)
    with pytest.raises(ValueError, match=r"history .*history\.csv is corrupt"):
        _train(run_dir, epochs=4, callbacks=[Batches()])
    assert Batches.trained == 0
    assert _tree(run_dir) == before


def test_moving_a_corrupt_history_aside_as_advised_leads_to_a_run_that_resumes(run_dir):
    """The advice in the corrupt-history error works: moved aside, the run resumes from its
    backup and starts a new record at that epoch, which later resumptions accept."""
    (run_dir / "history.csv").write_text("\x00\x01garbage")
    with pytest.raises(ValueError, match=r"Move it aside, and the resumed run starts a new"):
        _train(run_dir, epochs=4)
    os.rename(run_dir / "history.csv", run_dir / "history.csv.corrupt")
    assert _train(run_dir, epochs=4).history["epoch"].tolist() == [4]
    assert _train(run_dir, epochs=5).history["epoch"].tolist() == [4, 5]
    assert _train(run_dir, epochs=5).history["epoch"].tolist() == [4, 5]  # nothing to do


@pytest.mark.parametrize("damage", ["emptied", "removed", "a list"])
def test_a_damaged_config_beside_a_backup_is_an_error_naming_it(damage, run_dir):
    """With config.json emptied or removed, a resume could not see a changed flag, and
    would train with the backup's learning rate whatever was asked: refused, naming the
    file, before anything is written."""
    config = run_dir / "config.json"
    if damage == "removed":
        config.unlink()
    else:
        config.write_text("" if damage == "emptied" else "[1, 2]")
    before = sorted(os.listdir(run_dir))
    with pytest.raises(ValueError, match=rf"{re.escape(str(config))} is (missing|unreadable).*"
                                         r"holds a backup"):
        _train(run_dir, epochs=4, learning_rate=0.2)
    assert sorted(os.listdir(run_dir)) == before


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "directory", "fifo"])
def test_a_lock_that_is_not_a_regular_file_is_refused_and_nothing_is_followed(
        kind, tmp_path, capsys):
    """`ln -sf ~/notes.txt RUN/.lock` once emptied notes.txt: the lock is never opened
    through a link, and anything but a regular file there is one line, exit 2."""
    from safeio import directory_lock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("years of notes")
    lock = run_dir / ".lock"
    if kind == "symlink":
        lock.symlink_to(notes)
    elif kind == "dangling symlink":
        lock.symlink_to(tmp_path / "absent")
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(ValueError, match=r"lock .*\.lock is a (symbolic link|directory|named "
                                         r"pipe), not a file this project wrote"):
        with directory_lock(str(run_dir)):
            pass
    assert cli.main(["train", "--model", "resnet18", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ".lock" in err[0], err
    assert notes.read_text() == "years of notes"
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("kind", ["hard link", "user's file"])
def test_a_lock_file_this_project_did_not_write_is_left_as_it_is(kind, tmp_path, capsys):
    """A hard link to notes.txt as RUN/.lock (O_NOFOLLOW sees none), or a .lock of the
    user's own, was emptied; a lock a killed run left ("PID on host") and an empty one are
    taken, and the run's own lock is written and emptied as before."""
    from safeio import directory_lock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("years of notes")
    lock = run_dir / ".lock"
    if kind == "hard link":
        os.link(notes, lock)
    else:
        lock.write_text("years of notes")
    with pytest.raises(ValueError, match=r"lock .*\.lock is a (hard link to a file of 2 "
                                         r"names|file of 14 bytes), not a lock this project"):
        with directory_lock(str(run_dir)):
            pass
    assert cli.main(["train", "--model", "resnet18", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"lock {lock} is a " in err[0], err
    assert notes.read_text() == lock.read_text() == "years of notes"
    lock.unlink()
    for left in ("", "12345 on another-host", "12345"):  # (a PID alone: earlier versions)
        lock.write_text(left)
        with directory_lock(str(run_dir)):
            assert lock.read_text() == f"{os.getpid()} on {socket.gethostname()}"
        assert lock.read_text() == ""


def test_stale_clean_up_deletes_only_what_a_killed_writer_of_ours_left(tmp_path):
    """In a checkpoints folder linked to a user's folder, a user's file that looks like an
    old temporary name (dead PID and all) survives; what a killed writer of ours left (its
    name carries our mark) is removed, and a link is removed, never followed."""
    import subprocess
    import sys

    import safeio

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    user = tmp_path / "user"
    user.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").symlink_to(user)
    mine = user / f".tmp-{pid}-last.keras"
    mine.write_text("the user's")
    # One shaped as ours, ten hex digits and all, but without our mark for that PID.
    lookalike = user / f".tmp-{pid}-0123456789-last.keras"
    lookalike.write_text("the user's too")
    ours = safeio._scratch(str(user), "tmp", "last.keras", pid=pid)
    open(ours, "w").close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    linked = safeio._scratch(str(user), "old", "last.keras", pid=pid)
    os.symlink(elsewhere, linked)
    with safeio.atomic_path(tmp_path / "run" / "checkpoints" / "last.keras") as tmp:
        with open(tmp, "w") as f:
            f.write("new checkpoint")
    assert sorted(os.listdir(user)) == [f".tmp-{pid}-0123456789-last.keras",
                                        f".tmp-{pid}-last.keras", "last.keras"]
    assert mine.read_text() == "the user's" and (elsewhere / "keep").read_text() == "x"
    assert lookalike.read_text() == "the user's too"


def test_a_full_disk_is_one_line_naming_the_file_and_the_previous_files_stay(tmp_path,
                                                                           monkeypatch):
    """The file system reports 1,000 bytes free when the second epoch ends: the checkpoint
    is refused before Keras writes it (h5py crashed the process on a full disk), with one
    line naming it, the space needed and free, and the first epoch's files unchanged; a
    write that fails midway names its file too."""
    import shutil

    import safeio
    import zoo
    from tests.helpers import tiny_data
    from zoo.cli import commands

    run = tmp_path / "run"
    zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(run), seed=0, verbose=0)
    kept = [run / "checkpoints" / "last.keras", run / "checkpoints" / "best.keras",
            run / "backup" / "latest.weights.h5", run / "backup" / "training_metadata.json"]
    before = [safeio.file_hash(path) for path in kept]
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    with pytest.raises(OSError) as raised:
        zoo.train(tiny_model, tiny_data(), epochs=2, run_dir=str(run), seed=0, verbose=0)
    assert raised.value.errno == errno.ENOSPC
    last = str(run / "checkpoints" / "last.keras")
    line = commands._one_line(raised.value)
    assert re.fullmatch(r"No space left on device: about [\d.]+ (kB|MB) are needed to write "
                        r"it, and the previous last\.keras, if any, is left as it was: "
                        + re.escape(last) + r" \(1\.0 kB free there\)", line), line
    assert [safeio.file_hash(path) for path in kept] == before
    assert zoo.load_model(last).count_params() == tiny_model().count_params()

    import ensembles  # an export refused the same way, and nothing is left behind
    with pytest.raises(OSError, match=r"about [\d.]+ (kB|MB) are needed to write it, and the "
                       r"previous export, if any"):
        ensembles.export(ensembles.Ensemble([tiny_model()]), str(tmp_path / "export"))
    assert not os.path.exists(tmp_path / "export")

    target = tmp_path / "notes.json"
    target.write_text("the previous notes")
    with pytest.raises(OSError) as raised:
        with safeio.atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise OSError(errno.ENOSPC, "No space left on device")  # as f.write raises it
    assert raised.value.filename == str(target)
    assert commands._one_line(raised.value).startswith(
        "No space left on device (the previous notes.json, if any, is left as it was): ")
    assert target.read_text() == "the previous notes"
    assert sorted(os.listdir(tmp_path)) == ["notes.json", "run"]  # no scratch file left


@pytest.mark.parametrize("argv", [
    ["ensemble", "{missing}", "{missing}", "--output", "{blocked}/e.keras"],
    ["predict", "{missing}", "x.png", "--output", "{blocked}/p.csv"],
    ["evaluate", "{missing}", "--output", "{blocked}/ev.csv"],
    ["train", "--model", "resnet18", "--run-dir", "{blocked}/run"],
])
def test_an_output_below_a_file_is_named_as_not_a_directory_before_any_work(
        argv, tmp_path, capsys):
    """A file where a folder of the output should be: one line naming that file as "Not a
    directory" (os.makedirs would say "File exists"), before the models are read (they are
    missing here: reading them first would report that instead)."""
    blocked = tmp_path / "afile"
    blocked.write_text("the user's")
    argv = [a.format(missing=tmp_path / "missing.keras", blocked=blocked) for a in argv]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo {argv[0]}: error: Not a directory (a file is in the way): {blocked}"]
    assert blocked.read_text() == "the user's" and os.listdir(tmp_path) == ["afile"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="no /proc here")
def test_a_folder_no_file_can_be_made_in_is_refused_before_the_work_as_root(tmp_path):
    """As root, access(2) says yes to every folder: `zoo evaluate --output /proc/t.csv` did
    all its work before the write failed. For root a file made there tells (the probe, an
    empty file of ours, is removed at once); any user gets the same line."""
    import safeio

    with pytest.raises(OSError) as error:
        safeio.check_writable_file("/proc/zoo_table.csv")
    assert error.value.filename == "/proc/zoo_table.csv"
    assert "(cannot create files in /proc)" in error.value.strerror
    safeio.check_writable_file(str(tmp_path / "new" / "t.csv"))
    assert os.listdir(tmp_path) == []


def test_a_folder_this_process_cannot_write_is_refused_by_the_kernel():
    """check_writable_file asks the kernel (access(2) with the effective ids): run as a user
    without write permission on a 0o555 folder (nobody, when the tests run as root, whom
    permissions do not stop), a file there or below a missing folder there is refused
    naming it, and a file in a writable folder is not. As nobody, root's file in a sticky
    folder (as in /tmp) is refused too: the kernel would refuse the rename over it."""
    import subprocess
    import tempfile

    base = tempfile.mkdtemp(dir="/tmp")  # not pytest's 0o700 tmp_path: nobody must enter it
    try:
        os.chmod(base, 0o755)
        for name, mode in (("locked", 0o555), ("open", 0o777), ("sticky", 0o1777)):
            os.mkdir(os.path.join(base, name))
            os.chmod(os.path.join(base, name), mode)
        theirs = f"{base}/sticky/theirs.csv"  # another user's, in a sticky folder like /tmp
        with open(theirs, "w") as f:
            f.write("another user's")
        if os.geteuid() != 0:  # root's is another user's file to nobody; else: skip the case
            os.remove(theirs)
        script = (
            "import os, sys\n"
            "import safeio\n"  # imported first: nobody may not read the interpreter's files
            "if os.geteuid() == 0:\n"
            "    os.setegid(65534); os.seteuid(65534)\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n"
            "        safeio.check_writable_file(path)\n"
            "        print('ok', path)\n"
            "    except PermissionError as err:\n"
            "        print(err.errno, err.strerror, err.filename, sep=' | ')\n"
            "if len(sys.argv) > 4:  # what the kernel says of the rename over it\n"
            "    probe = os.path.join(os.path.dirname(sys.argv[4]), 'probe.csv')\n"
            "    open(probe, 'w').close()\n"
            "    try:\n"
            "        os.replace(probe, sys.argv[4])\n"
            "        print('replaced')\n"
            "    except PermissionError as err:\n"
            "        print('kernel', err.errno)\n"
            "        os.remove(probe)\n")
        targets = [f"{base}/locked/t.csv", f"{base}/locked/new/t.csv", f"{base}/open/t.csv"]
        if os.path.exists(theirs):
            targets.append(theirs)
        done = subprocess.run([sys.executable, "-c", script, *targets], capture_output=True,
                              text=True, check=True, timeout=60,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert done.stdout.splitlines() == [
            f"{errno.EACCES} | Permission denied (cannot create files in {base}/locked) | "
            f"{targets[0]}",
            f"{errno.EACCES} | Permission denied (cannot create files in {base}/locked) | "
            f"{targets[1]}",
            f"ok {targets[2]}"] + [
            f"{errno.EPERM} | Operation not permitted ({base}/sticky is sticky, and the file "
            f"there belongs to another user) | {theirs}", f"kernel {errno.EPERM}"] * (
                len(targets) == 4)
        assert sorted(os.listdir(base)) == ["locked", "open", "sticky"]  # nothing made
        assert not os.listdir(f"{base}/locked") and not os.listdir(f"{base}/open")
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("argv", [
    ["ensemble", "{missing}", "{missing}", "--output", "{locked}/e.keras"],
    ["predict", "{missing}", "x.png", "--output", "{locked}/p.csv"],
    ["evaluate", "{missing}", "--output", "{locked}/new/ev.csv"],
])
def test_an_output_in_a_folder_that_cannot_be_written_is_refused_before_any_work(
        argv, tmp_path, capsys, monkeypatch):
    """The folder refuses this process (simulated: the test may run as root, whom the
    kernel does not refuse; the test above holds the kernel's answer): one line naming the
    output, exit 2, before the models are read (they are missing: reading them first would
    report that), so that an evaluation's table is not lost at its end."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: (
        os.fspath(path) != str(locked) and real(path, mode, **kwargs)))
    argv = [a.format(missing=tmp_path / "missing.keras", locked=locked) for a in argv]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo {argv[0]}: error: Permission denied (cannot create files in {locked}): "
        f"{argv[argv.index('--output') + 1]}"]
    assert not os.listdir(locked)


def test_an_output_named_as_a_directory_is_refused_before_any_work(tmp_path, capsys):
    """`--output results/` (a folder that does not exist yet) cannot become a file: one
    line before the models are read, where the write failed after the evaluation."""
    output = f"{tmp_path / 'results'}/"
    assert cli.main(["evaluate", str(tmp_path / "missing.keras"), "--output", output]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo evaluate: error: Cannot write the file {output}: the name ends in /, as a "
        "directory's does. Name a file."]
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv, name", [
    (["ensemble", "{missing}", "{missing}", "--output", "{link}"], "table.keras"),
    (["predict", "{missing}", "x.png", "--output", "{link}"], "table.csv"),
    (["evaluate", "{missing}", "--output", "{link}"], "table.csv"),
])
def test_an_output_that_is_a_symbolic_link_is_refused_before_any_work(argv, name, tmp_path,
                                                                       capsys):
    """`--output table.csv`, a link to the user's file elsewhere: one line, exit 2, the
    link and its target unchanged (the link was replaced by a file)."""
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    (elsewhere / name).write_text("the user's")
    link = tmp_path / name
    link.symlink_to(elsewhere / name)
    argv = [a.format(missing=tmp_path / "missing.keras", link=link) for a in argv]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo {argv[0]}: error: Refusing to write {link}: it is a symbolic link (to "
        f"{elsewhere / name}), which this command neither replaces nor writes through; "
        "nothing was changed. Name the file it links to, or another file."]
    assert os.readlink(link) == str(elsewhere / name)
    assert (elsewhere / name).read_text() == "the user's"


def test_zoo_save_model_to_a_symbolic_link_is_refused_and_both_stay(tmp_path):
    """zoo.save_model(m, "best.keras"), best.keras a link to a snapshot: the Python API
    replaced the link with a file and left its target stale, where the CLI refuses."""
    import zoo
    from tests.helpers import tiny_model

    target = tmp_path / "snapshot-3.keras"
    target.write_bytes(b"the user's")
    link = tmp_path / "best.keras"
    link.symlink_to(target)
    with pytest.raises(UserError, match=rf"Refusing to write {re.escape(str(link))}: it is a "
                                        "symbolic link"):
        zoo.save_model(tiny_model(), str(link))
    assert os.readlink(link) == str(target) and target.read_bytes() == b"the user's"
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "snapshot-3.keras"]


def test_atomic_writes_name_the_file_in_the_way_and_keep_it(tmp_path):
    from safeio import check_file_target, make_directory, write_text

    blocked = tmp_path / "notes.txt"
    blocked.write_text("the user's")
    for call in (lambda: write_text(str(blocked / "deeper" / "x.txt"), "new"),
                 lambda: make_directory(str(blocked / "run")),
                 lambda: check_file_target(str(blocked / "x.csv"))):
        with pytest.raises(NotADirectoryError) as raised:
            call()
        assert raised.value.filename == str(blocked)
    with pytest.raises(UserError, match=f"Cannot write the file {tmp_path}: a directory"):
        check_file_target(str(tmp_path))
    check_file_target(str(tmp_path / "new" / "table.csv"))  # a folder that can be made
    assert blocked.read_text() == "the user's" and os.listdir(tmp_path) == ["notes.txt"]
    dangling = tmp_path / "gone"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError, match=r"a link to nothing is in the way"):
        make_directory(str(dangling / "run"))
    assert not os.path.lexists(tmp_path / "nowhere")  # the link is not followed


def test_what_is_renamed_into_place_is_on_the_disk_first(tmp_path, monkeypatch):
    """A rename survives a power cut only with what it renames flushed (XFS and btrfs may
    show an empty file otherwise), and only once its folder is: every file and folder of
    the temporary copy is fsynced before the rename, the folder after it."""
    import safeio

    events = []
    fsync, replace, rename = os.fsync, os.replace, os.rename

    def recorded_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", a)), replace(a, b)))
    monkeypatch.setattr(os, "rename", lambda a, b: (events.append(("rename", a)), rename(a, b)))
    with safeio.atomic_path(tmp_path / "table.csv") as tmp:
        open(tmp, "w").write("a,b\n")
    assert events == [("fsync", tmp), ("rename", tmp), ("fsync", str(tmp_path))]
    events.clear()
    with safeio.atomic_directory(tmp_path / "served", required=()) as tmp:
        os.makedirs(os.path.join(tmp, "assets"))
        open(os.path.join(tmp, "assets", "names.txt"), "w").write("cat\n")
    last = events.index(("rename", tmp))  # (the marker file was written atomically before)
    flushed = {path for kind, path in events[:last] if kind == "fsync"}
    assert {tmp, os.path.join(tmp, "assets"), os.path.join(tmp, "assets", "names.txt"),
            os.path.join(tmp, safeio.MARKER)} <= flushed
    assert events[last:] == [("rename", tmp), ("fsync", str(tmp_path))]


def test_a_previous_export_moved_aside_by_a_killed_replacement_is_put_back(tmp_path):
    """Where two paths cannot be exchanged in one step, an export is replaced by two renames.
    Killed between them, the previous export was left only in its .old- copy, which the next
    export deleted: if that one failed too, no export was left. Now it is put back first."""
    import subprocess
    import sys

    import safeio

    served = tmp_path / "served"
    with safeio.atomic_directory(served, required=()) as tmp:
        os.makedirs(tmp)
        open(os.path.join(tmp, "model.txt"), "w").write("the previous export")
        open(os.path.join(tmp, "saved_model.pb"), "wb").close()
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True).stdout)
    os.rename(served, safeio._scratch(str(tmp_path), "old", "served", pid=pid))  # then killed
    from ensembles.export import check_export_target

    with pytest.raises(ValueError, match="already holds an export; pass overwrite=True"):
        check_export_target(served, "saved_model")  # put back before zoo export's check
    with pytest.raises(RuntimeError, match="the next export fails"):
        with safeio.atomic_directory(served, overwrite=True, required=()):
            raise RuntimeError("the next export fails")
    assert (served / "model.txt").read_text() == "the previous export"
    assert sorted(os.listdir(tmp_path)) == ["served"]


def _folders_refuse_fsync(monkeypatch):
    """``os.fsync`` answers EINVAL for a folder, as network file systems do."""
    fsync = os.fsync

    def refused_for_folders(fd):
        if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.EINVAL, "Invalid argument")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", refused_for_folders)


def test_a_folder_that_cannot_be_flushed_after_the_rename_does_not_fail_the_write(
        tmp_path, monkeypatch):
    """Network file systems answer EINVAL to fsync of a folder, and a folder without read
    permission cannot be opened: the file is in place by then, so the write succeeds. A
    file that cannot be flushed before its rename still fails it, its path named."""
    import errno

    import safeio

    _folders_refuse_fsync(monkeypatch)
    safeio.write_text(tmp_path / "notes.txt", "kept\n")
    assert (tmp_path / "notes.txt").read_text() == "kept\n"

    def refused(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", refused)
    with pytest.raises(OSError, match=r"Input/output error.*notes.txt"):
        safeio.write_text(tmp_path / "notes.txt", "lost\n")
    assert (tmp_path / "notes.txt").read_text() == "kept\n"


def test_a_folder_export_where_folders_cannot_be_flushed_and_unnamed_faults(tmp_path,
                                                                          monkeypatch):
    """The temporary export's own folders were flushed before its rename, and EINVAL (a
    network file system's answer for a folder) failed every export there; h5py's
    PermissionError names no file (only its text names the scratch file) and showed as an
    internal error, not the destination's fault."""
    import safeio

    _folders_refuse_fsync(monkeypatch)
    with safeio.atomic_path(tmp_path / "served") as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        with open(os.path.join(tmp, "variables", "data"), "w") as f:
            f.write("weights")
    assert (tmp_path / "served" / "variables" / "data").read_text() == "weights"
    target = tmp_path / "snap.weights.h5"
    with pytest.raises(PermissionError) as raised:
        with safeio.atomic_path(target) as tmp:
            raise PermissionError(errno.EACCES, f"Unable to synchronously create file "
                                  f"(unable to open file: name = '{tmp}', errno = 13)")
    assert raised.value.filename == str(target) and ".tmp-" not in str(raised.value)


def test_another_hosts_temporary_file_is_never_taken_for_a_dead_writers(tmp_path,
                                                                        monkeypatch):
    """On a shared file system another host's live write carries a PID that is not
    alive here: it was removed as a killed writer's. The mark names the host."""
    import safeio

    dead = 2 ** 22 + 7  # past Linux's pid_max: never alive here
    monkeypatch.setattr(safeio.socket, "gethostname", lambda: "other-host")
    theirs = safeio._scratch(str(tmp_path), "tmp", "notes.txt", pid=dead)
    open(theirs, "w").close()
    # Another host's previous export moved aside, never put back (a container restarted
    # under a new host name): the only copy, put back whoever moved it.
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "saved_model.pb").write_text("the previous export")
    os.rename(tmp_path / "served", safeio._scratch(str(tmp_path), "old", "served", pid=dead))
    monkeypatch.undo()
    safeio.write_text(tmp_path / "notes.txt", "mine\n")
    assert os.path.exists(theirs)
    ours = safeio._scratch(str(tmp_path), "tmp", "notes.txt", pid=dead)
    open(ours, "w").close()  # this host's dead writer's: removed
    legacy = os.path.join(tmp_path, f".tmp-{dead}-{safeio._token(dead, 'notes.txt', host=False)}"
                                    "-notes.txt")
    open(legacy, "w").close()  # one written before the host was in the mark: removed too
    safeio.write_text(tmp_path / "notes.txt", "again\n")
    assert os.path.exists(theirs) and not os.path.exists(ours) and not os.path.exists(legacy)
    safeio.clean_stale(str(tmp_path), "served")
    assert (tmp_path / "served" / "saved_model.pb").read_text() == "the previous export"
    # This process's own scratch name, left by a dead process of the same PID and host (a
    # container restarted): removed before the write, never written into.
    leftover = safeio._scratch(str(tmp_path), "tmp", "export")
    os.makedirs(os.path.join(leftover, "variables"))
    with safeio.atomic_path(tmp_path / "export") as tmp:
        assert not os.path.exists(tmp)
        os.makedirs(tmp)
    assert os.listdir(tmp_path / "export") == []


def test_a_file_system_without_locks_names_the_lock_file(tmp_path, monkeypatch):
    import fcntl

    import safeio

    def no_locks(f, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match=r"Cannot lock the run directory: No locks available") \
            as raised:
        with safeio.directory_lock(tmp_path / "run"):
            pass
    assert raised.value.filename == str(tmp_path / "run" / ".lock")


def test_names_that_are_not_utf8_or_near_the_length_limit_are_written(tmp_path):
    """A name Linux holds as bytes that are not UTF-8 (`os.listdir`'s and `sys.argv`'s
    surrogates) crashed every atomic write; one of 240 bytes, which the OS takes, was
    refused as too long (the scratch copy's mark made it 264). A dead writer's scratch copy
    of either is still cleaned, and a user's file of a like name is not."""
    import safeio

    latin1 = os.path.join(tmp_path, os.fsdecode(b"caf\xe9.csv"))
    safeio.write_text(latin1, "a,b\n")
    assert open(latin1).read() == "a,b\n"
    long = os.path.join(tmp_path, "x" * 229 + ".weights.h5")  # 240 bytes
    safeio.write_text(long, "one")
    safeio.write_text(long, "two")
    assert open(long).read() == "two"
    assert sorted(os.listdir(tmp_path)) == sorted(map(os.path.basename, (latin1, long)))
    dead = 2 ** 22 + 7  # past Linux's pid_max: never alive here
    scratch = safeio._scratch(str(tmp_path), "tmp", os.path.basename(long), pid=dead)
    assert len(os.path.basename(scratch)) == 255 and scratch.endswith(".weights.h5")
    open(scratch, "w").close()
    user = os.path.join(tmp_path, f".tmp-{dead}-0123456789-" + os.path.basename(long)[-200:])
    open(user, "w").close()
    safeio.write_text(long, "three")
    assert not os.path.exists(scratch) and os.path.exists(user)


def test_special_files_long_names_and_two_threads_at_one_path(tmp_path):
    """A named pipe (or a device: /dev/null, run as root) at the target was replaced by a
    regular file; a name over 255 bytes failed only at the final rename, the work done;
    two threads writing one path shared a temporary name, and one published the other's
    half-written file as its own, reporting success."""
    import threading
    import time

    import safeio

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for check in (safeio.check_writable_file, lambda p: safeio.write_text(p, "x")):
        with pytest.raises(UserError, match=r"Cannot write the file .*fifo: it is a named "
                                            r"pipe, which a file written here would replace"):
            check(str(fifo))
    assert os.path.exists(fifo) and not os.path.isfile(fifo)
    long = str(tmp_path / ("x" * 256))
    with pytest.raises(UserError, match=r"its name is 256 bytes long, and file systems take "
                                        r"at most 255"):
        safeio.check_writable_file(long)
    shared, done, a_inside = str(tmp_path / "shared.txt"), [], threading.Event()

    def write(letter, delay):
        with safeio.atomic_path(shared) as tmp:
            with open(tmp, "w") as f:
                f.write(letter * 1000)
                f.flush()
                a_inside.set()
                time.sleep(delay)  # (B's chance to interfere; the order holds without it)
                f.write(letter * 1000)
        done.append(open(shared).read())

    threads = [threading.Thread(target=write, args=("A", 0.3)),
               threading.Thread(target=write, args=("B", 0.0))]
    threads[0].start()
    a_inside.wait()  # B starts once A writes (a sleep of 0.1 s was too short under load)
    threads[1].start()
    for thread in threads:
        thread.join()
    assert done == ["A" * 2000, "B" * 2000]  # each whole, one after the other


def test_an_export_never_holds_a_dead_writers_leftovers_nor_lacks_what_it_needs(tmp_path):
    """A scratch folder a dead process of this PID and host left (a restarted container)
    was merged into the new export, and listed as its own; a writer that wrote nothing an
    export needs replaced a good export, which then refused itself."""
    import safeio

    served = str(tmp_path / "served")
    leftover = safeio._scratch(str(tmp_path), "tmp", "served")
    os.makedirs(leftover)
    open(os.path.join(leftover, "stale.bin"), "w").close()

    def export(files):
        with safeio.atomic_directory(served, overwrite=True) as tmp:
            os.makedirs(tmp)
            for name in files:
                open(os.path.join(tmp, name), "w").close()

    export(["saved_model.pb"])
    assert sorted(os.listdir(served)) == ["saved_model.pb", "zoo_export.json"]
    with pytest.raises(RuntimeError, match=r"The export to .*served wrote no saved_model.pb; "
                                           r"the previous one, if any, is left as it was"):
        export([])
    assert sorted(os.listdir(served)) == ["saved_model.pb", "zoo_export.json"]
    export(["saved_model.pb", "more.txt"])  # (and the export is still ours to replace)


def test_a_replaced_file_keeps_its_permissions_and_a_link_left_at_the_scratch_path_goes(
        tmp_path):
    """A private file (600) came back 644 from a write over it; a link the writer left at
    the scratch path when it failed stayed there."""
    import stat

    import safeio

    private = tmp_path / "secrets.json"
    private.write_text("{}")
    private.chmod(0o600)
    safeio.write_json(private, {"token": 1})
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert json.loads(private.read_text()) == {"token": 1}
    with pytest.raises(RuntimeError, match="writer failed"):
        with safeio.atomic_path(tmp_path / "notes.txt") as tmp:
            os.symlink(tmp_path / "nowhere", tmp)
            raise RuntimeError("writer failed")
    assert sorted(os.listdir(tmp_path)) == ["secrets.json"]


def test_natural_order_takes_unicode_digits_and_sizes_read_as_people_write_them(tmp_path,
                                                                                monkeypatch):
    """A name with a superscript ('x1²3.jpg': a digit to str.isdigit, not to int) raised
    ValueError from the sort of zoo predict's folder listing and of the snapshots; a
    free-space refusal of 1.23 GB read 'about 1.23e+03 MB'."""
    import safeio

    names = ["x10.jpg", "x1²3.jpg", "x2.jpg", "a1²", "x٣.jpg"]  # (٣: Arabic-Indic three)
    assert sorted(names, key=safeio.natural_key) == [
        "a1²", "x1²3.jpg", "x2.jpg", "x٣.jpg", "x10.jpg"]
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=0))
    for needed, said in ((1.23e9, "1.2 GB"), (4.5e6, "4.5 MB"), (2048, "2.0 kB"),
                         (12, "12 bytes")):
        with pytest.raises(OSError, match=rf"about {re.escape(said)} are needed to write it"):
            safeio.check_free_space(tmp_path / "f.h5", needed)
