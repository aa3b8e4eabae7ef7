"""examples/quickstart.ipynb runs from top to bottom (so it can never rot)."""

import os

import pytest

import nbformat
from nbclient import NotebookClient

from tests.helpers import REPO


def _text(cell):
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _files(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    """Every cell runs on a fresh machine without internet: the kernel's Keras, TFDS and
    cache folders are new ones, and nothing lands in them (no weights, no dataset)."""
    notebook = nbformat.read(os.path.join(REPO, "examples", "quickstart.ipynb"), as_version=4)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    caches = {name: tmp_path / "caches" / name
              for name in ("KERAS_HOME", "TFDS_DATA_DIR", "TORCH_HOME")}
    for name, folder in caches.items():
        folder.mkdir(parents=True)
        monkeypatch.setenv(name, str(folder))
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()
    downloaded = {name: [f for f in _files(folder) if f != "keras.json"]
                  for name, folder in caches.items()}
    assert downloaded == {name: [] for name in caches}, downloaded
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "alexnet: 62,378,344 parameters" in _text(code[0])
    assert "conv2_tower" not in _text(code[1]) and "norm1" in _text(code[1])  # the summary
    assert "top1_accuracy" in _text(code[2])  # the training history
    assert "ensemble" in _text(code[3]) and "mean member" in _text(code[3])  # the table
    # The snapshot ensemble beats the snapshots' best NLL, and their best error up to one
    # test image of 360 (keeping the first cycle's snapshot, from random weights, made it
    # worse than its last snapshot on both: 9.2 % against 5.3 %).
    said = _text(code[3]).split("ensemble: top-1 error ")[1].split("\n")[0]
    ours, best = said.split("; the snapshots' best: ")
    error, nll = (float(v.strip(" %")) for v in ours.split(", NLL "))
    best_error, best_nll = (float(v.strip(" %")) for v in best.split(", "))
    assert nll < best_nll and error <= best_error + 100 / 360, said
    assert any("image/png" in o.get("data", {}) for o in code[4]["outputs"])  # the plot
    assert "2 trainable tensors; validation accuracy" in _text(code[5])  # fine-tuned head
    # VGG-11-BN's features at 32x32 from a torchvision-layout file (its classifier left
    # over), the new head alone trainable; a ResNet-20 snapshot ensemble of three snapshots.
    assert "9,231,488 parameters; 2 trainable tensors (the head)" in _text(code[6])
    assert "snapshot_3" in _text(code[7]) and "ensemble" in _text(code[7])
    assert _text(code[8]).count("label ") == 5  # five served predictions
    assert os.path.isdir(os.path.join(work, "runs", "quickstart_savedmodel"))
    # Deployed: a process without the project serves the PNG by class name, and zoo.predict
    # names the same class first.
    served = _text(code[9]).split("served: digit ")[1].split(" ")[0]
    assert f"zoo.predict: digit {served} first" in _text(code[9])
    # Fitted weights over both snapshot ensembles (6 members), a temperature, a student.
    beyond = _text(code[10])
    assert "6 members, weights [" in beyond and "temperature " in beyond
    for row in ("+ temperature scaling", "one ResNet-18 distilled from it"):
        assert row in beyond
