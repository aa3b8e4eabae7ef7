"""The two tiers: `make test` (fast) and `make test-all` (adds the tests marked slow)."""

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False,
        help="also run the slow tier (tests marked slow): the science tests on real data, "
        "the kill tests at every named point, the demo smoke run, the notebook, the "
        "cross-process backend checks, and the other cases of a few parametrized tests "
        "whose first case stays in the fast tier; `make test-all` passes it")


def pytest_collection_modifyitems(config, items):
    """Without --run-slow, the tests marked ``slow`` are deselected (``make test`` is the
    fast tier; ``make test-all`` runs everything), as keras-hub leaves out its ``large``
    tests unless asked."""
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
