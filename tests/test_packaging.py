"""How the installed packages meet a user's notebook: a `data/` folder beside it, and saved
models loaded in a fresh process."""

import os

import numpy as np
import pytest


@pytest.mark.xdist_group("fresh_process")
def test_a_fresh_process_builds_without_the_training_stack_and_loads_beside_a_data_folder(
        fresh_process):
    """The worker's fresh process (tests/fresh_process.py, shared with the two-device
    training test) checks, in this order:

    - ``import zoo, ensembles`` registers every layer, optimizer and schedule but imports no
      training, data or search code: models build on any Keras backend without it;
    - a working directory with a plain ``data/`` folder (a common layout) still imports the
      package;
    - ``zoo.pretrained.torchvision.state_dict`` and ``zoo.pretrained.caffe`` answer by the
      README's dotted names after ``import zoo`` alone;
    - ``zoo.load_model`` and ``ensembles.load`` load files holding LRN, MeanSubtraction,
      PaperSGD and an ensemble, with nothing set up by the caller.
    """
    out = fresh_process
    assert out["registered"] == dict.fromkeys(out["registered"], True)
    assert len(out["registered"]) == 4
    assert out["registered_on_import"] == [True, True, True]  # (import ensembles did)
    assert out["heavy"] == []
    assert out["data_load"]
    assert out["converters"] == [True, True, True]  # zoo.pretrained.torchvision.state_dict
    np.testing.assert_allclose(out["model"], out["expected"]["model"], rtol=1e-5)
    np.testing.assert_allclose(out["ensemble"], out["expected"]["ensemble"], rtol=1e-5)
    assert out["optimizer"] == "PaperSGD"
    notes = os.path.join(out["directory"], "data", "raw", "notes.txt")
    with open(notes) as f:
        assert f.read() == "the user's files"
