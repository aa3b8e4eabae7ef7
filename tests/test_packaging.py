"""How the installed packages meet a user's notebook: a `data/` folder beside it, and saved
models loaded in a fresh process."""

import json
import textwrap

import keras
import numpy as np

import data
import ensembles
import zoo
from tests.helpers import run_python


def test_a_fresh_process_builds_without_the_training_stack_and_loads_beside_a_data_folder(
        tmp_path):
    """One fresh process (a TensorFlow start-up costs 6 s here) checks, in this order:

    - ``import zoo, ensembles`` registers every layer, optimizer and schedule but imports no
      training, data or search code: models build on any Keras backend without it;
    - a working directory with a plain ``data/`` folder (a common layout) still imports the
      package;
    - ``zoo.load_model`` and ``ensembles.load`` load files holding LRN, MeanSubtraction,
      PaperSGD and an ensemble, with nothing set up by the caller.
    """
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "notes.txt").write_text("the user's files")
    inputs = data.MeanSubtraction([120.0, 115.0, 100.0])(keras.Input((67, 67, 3)))
    model = zoo.alexnet(input_tensor=inputs, classes=3, width=8)
    model.compile(zoo.PaperSGD(0.01), "sparse_categorical_crossentropy")
    model.save(tmp_path / "model.keras")
    ensemble = ensembles.Ensemble([zoo.alexnet(input_shape=(67, 67, 3), classes=3, width=8)
                                   for _ in range(2)], combine="geometric")
    ensemble.save(tmp_path / "ensemble.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 67, 67, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import zoo, ensembles
        zoo.alexnet(input_shape=(67, 67, 3), classes=3, width=8, towers=2)
        ensembles.Ensemble([zoo.googlenet(input_shape=(32, 32, 3), classes=3, width=0.125),
                            zoo.resnet18(input_shape=(32, 32, 3), classes=3, width=0.25)])
        import keras
        for name in ("zoo>PaperSGD", "ensembles>CyclicCosine", "ensembles>CombineMembers",
                     "zoo>LocalResponseNormalization"):
            assert keras.saving.get_registered_object(name) is not None, name
        heavy = [m for m in ("zoo.training", "zoo.training.search", "ensembles.snapshots",
                             "ensembles.evaluation", "data", "keras_tuner",
                             "tensorflow_datasets") if m in sys.modules]
        assert not heavy, heavy

        import data
        assert callable(data.load), data.__path__
        import zoo
        model = zoo.load_model("model.keras")
        ensemble = ensembles.load("ensemble.keras")
        x = np.load("x.npy")
        print(json.dumps({"model": model.predict(x, verbose=0).tolist(),
                          "ensemble": ensemble.predict(x, verbose=0).tolist(),
                          "optimizer": type(model.optimizer).__name__}))
    """)
    out = json.loads(run_python(code, cwd=str(tmp_path)).stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["model"], model.predict(x, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(out["ensemble"], ensemble.predict(x, verbose=0), rtol=1e-5)
    assert out["optimizer"] == "PaperSGD"
    assert (tmp_path / "data" / "raw" / "notes.txt").read_text() == "the user's files"
