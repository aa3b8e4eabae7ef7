import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # Without the garbage collection that clear_session() runs by default: it took a second
    # after every test here (a sixth of the TensorFlow pass); Python collects on its own.
    keras.backend.clear_session(free_memory=False)
