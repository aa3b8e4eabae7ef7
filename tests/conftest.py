import gc
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras (and TensorFlow, 7 s of CPU) are imported where tests need them, not here: pytest-xdist's
# controller process loads this file too, and runs no test.


# The slowest tests of both passes (from `--durations`: they start processes, train, export
# or compile whole networks), run first. pytest-xdist hands tests out in collection order, so
# with these at the front every worker starts on a long one and the workers end together;
# at the back, one of them left a worker busy for 55 s after the others had finished (the
# TensorFlow pass took 314 s). Update the list when `--durations` shows a new slow test.
SLOWEST_FIRST = (
    "tests/zoo/training/test_processes.py::",
    "tests/zoo/training/test_recipe.py::test_googlenet_with_aux_heads",
    "tests/zoo/training/test_recipe.py::test_a_stopped_run_resumes",
    "tests/ensembles/test_ensemble.py::test_export_one_saved_model",
    "tests/ensembles/test_ensemble.py::test_train_snapshots_saves",
    "tests/ensembles/test_references.py::test_heterogeneous_members",
    "tests/ensembles/test_references.py::test_served_entropy",
    "tests/ensembles/test_references.py::test_uncertainty_of_constant_members",
    "tests/test_backends.py::",
    "tests/test_packaging.py::",
    "tests/test_deploy.py::test_the_export_serves",
    "tests/test_deploy.py::test_zoo_predict",
    "tests/zoo/cli/test_commands.py::test_demo_quick_runs_under_jax",
    "tests/zoo/cli/test_commands.py::test_search_command",
    "tests/zoo/cli/test_commands.py::test_snapshot_training",
    "tests/zoo/cli/test_commands.py::test_train_",
    "tests/zoo/cli/test_commands.py::test_tensorflow_start_up",
    "tests/zoo/cli/test_commands.py::test_heterogeneous_members",
    "tests/zoo/test_alexnet.py::test_saved_model_export",
    "tests/zoo/test_pretrained.py::test_fine_tuning",
    "tests/zoo/test_pretrained.py::test_a_zoo_resnet_written",
    "tests/zoo/test_models.py::test_model[",
    "tests/zoo/training/test_diagnostics.py::test_diagnose_command",
    "tests/zoo/training/test_diagnostics.py::test_a_tiny_search",
    "tests/zoo/training/test_diagnostics.py::test_search_widths",
    "tests/ensembles/test_distillation.py::test_zoo_distill_from_the_shell",
    "tests/test_safe_writes.py::test_an_unreadable_backup",
    "tests/test_safe_writes.py::test_a_damaged_config",
    "tests/test_safe_writes.py::test_a_kill_around_the_swap",
    "zoo/models/resnet.py::",
)
# make test-all's slow tier, ahead of all of those, longest first by their seconds now. In a
# fresh clone's make test-all here on 2026-12-07 (the two passes side by side) they took
# 1,055 (the cyclic snapshot test: 327 s alone since its NoCycle control moved to a
# benchmark), 300, 233, 213, 203, 202, 160, 150, 286 (the MC dropout study: one run now, of
# two), 366 (the GPU benchmark's smoke run: its test 115 s alone since it compiles) and 125,
# then in collection order, as SLOWEST_FIRST's are: a long test begun late leaves one
# worker running it alone.
SLOW_TIER_FIRST = (
    "tests/ensembles/test_digits.py::test_cyclic_snapshots",
    "tests/test_notebook.py::",
    "tests/ensembles/test_digits.py::test_variant_ensembles",
    "tests/zoo/training/test_cluster.py::test_two_jax_processes",
    "tests/test_benchmarks.py::test_beyond_averaging",
    "tests/zoo/cli/test_commands.py::test_demo_smoke_run",
    "tests/zoo/training/test_processes.py::test_a_run_killed_at_any_named_point",
    "tests/test_benchmarks.py::test_mc_dropout_study",
    "tests/test_benchmarks.py::test_gpu_benchmark_smoke",
    "tests/test_backends.py::test_one_weights_file",
)


def _order(item):
    """The position of the first prefix of SLOW_TIER_FIRST + SLOWEST_FIRST that ``item``'s
    node id starts with (the latter's in one group, in collection order); after them all."""
    for index, prefix in enumerate(SLOW_TIER_FIRST):
        if item.nodeid.startswith(prefix):
            return index
    return len(SLOW_TIER_FIRST) + (not item.nodeid.startswith(SLOWEST_FIRST))


def pytest_collection_modifyitems(items):
    """Moves the tests named in SLOW_TIER_FIRST (in its order), then those named in
    SLOWEST_FIRST to the front, keeping the order otherwise (the sort is stable)."""
    items.sort(key=_order)


def pytest_collection_finish(session):
    """After collection (which imported Keras, its backend and every test module), those
    objects live as long as the process: frozen, Python's full garbage collections (which
    the models the tests build set off) stop walking them again. Measured on the model
    tests: 8.3 s of full collections became 4.3 s."""
    gc.collect()
    gc.freeze()
    if os.environ.get("ZOO_TEST_GRAPPLER") == "off":  # make test (the fast tier): Makefile
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def pytest_runtest_setup(item):
    """Under ``--dist loadgroup`` (make test), pytest-xdist tells its scheduler a test's
    ``xdist_group`` by a suffix on its node id (``...::test@group``), which pytest 9.2 no
    longer lets it add (pytest-xdist#1386): the groups were then ignored without a word, and
    each worker started the processes its tests share (tests/fresh_process.py: 20 s of CPU
    each). A grouped test that lost its group fails here, before its fixtures."""
    if (getattr(item.config.option, "loadgroup", False)  # (set in xdist's workers)
            and item.get_closest_marker("xdist_group") and "@" not in item.nodeid):
        pytest.fail(f"pytest-xdist's --dist loadgroup lost this test's xdist_group: pytest "
                    f"{pytest.__version__} drops the groups (pytest-xdist#1386); install "
                    "setup.py's test extra (make test does), which pins pytest", pytrace=False)


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield
    # Without the garbage collection that clear_session() runs by default: it took a second
    # after every test here (a sixth of the TensorFlow pass); Python collects on its own.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="session")
def cold_python():
    """The worker's one process without the project (tests.helpers.ColdPython). Tests that
    use it are marked ``xdist_group("cold_python")`` so that one worker runs them all."""
    from tests.helpers import ColdPython

    process = ColdPython()
    yield process
    process.close()


@pytest.fixture(scope="session")
def fresh_process(tmp_path_factory):
    """The answers of the worker's one fresh process for packaging and two-device training
    (tests/fresh_process.py). Tests that use it are marked ``xdist_group("fresh_process")``
    so that one worker starts it once."""
    from tests import fresh_process as fresh

    return fresh.run(tmp_path_factory.mktemp("fresh_process"))
