"""The two tiers: `make test` (fast) and `make test-all` (adds the tests marked slow)."""

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False,
        help="also run the slow tier (tests marked slow): the science tests on real data, "
        "the kill tests at every named point, the demo smoke run, the notebook, the "
        "cross-process backend checks, and the other cases of a few parametrized tests "
        "whose first case stays in the fast tier; `make test-all` passes it")


# The modules of Keras layers and the ensemble, whose docstring examples run in the JAX pass
# too (marked all_backends): four of them called TensorFlow's .numpy(), which JAX's arrays
# lack, and only the TensorFlow pass ran them.
BACKEND_AGNOSTIC_EXAMPLES = ("zoo/layers.py", "data/layers.py", "ensembles/ensemble.py",
                             "ensembles/calibration.py", "ensembles/export.py",
                             "ensembles/metrics.py", "ensembles/mc_dropout.py")


def pytest_collection_modifyitems(config, items):
    """Without --run-slow, the tests marked ``slow`` are deselected (``make test`` is the
    fast tier; ``make test-all`` runs everything), as keras-hub leaves out its ``large``
    tests unless asked. The docstring examples of :data:`BACKEND_AGNOSTIC_EXAMPLES` are
    marked ``all_backends``."""
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.path.relative_to(
                config.rootpath).as_posix() in BACKEND_AGNOSTIC_EXAMPLES:
            item.add_marker(pytest.mark.all_backends)
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(autouse=True)
def _registry_restored():
    """A test or docstring example that registers a model (``register_model``'s example
    registers ``tiny``) leaves the registry as it found it: a later test in the same
    worker lists the built-in models only."""
    from zoo import registry

    before = set(registry._MODELS)
    yield
    for name in set(registry._MODELS) - before - set(registry.CATALOG):
        del registry._MODELS[name]  # built-ins stay: their modules register them once
