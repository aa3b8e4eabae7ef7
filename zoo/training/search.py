"""Random hyper-parameter search on a log scale, coarse then fine, with keras-tuner.

The lecture notes' recipe: sample the learning rate and the weight decay at random on a log
scale (random beats grid search when few hyper-parameters matter), train briefly, then
search again in the region of the best trials. :func:`search` runs two
``keras_tuner.RandomSearch`` stages over the paper recipe (``zoo.PaperSGD``); dropout and
width are optional dimensions. Each stage keeps its trials in ``run_dir`` (keras-tuner
reloads them when the search is run again), results come back as a DataFrame, and
:func:`plot_search` draws the learning-rate / weight-decay scatter.
"""

import contextlib
import dataclasses
import gc
import math
import functools
import inspect
import json
import os
import tempfile
import threading
import warnings

import keras
import numpy as np
import pandas as pd

from safeio import (check_free_space, directory_lock, new_axes, save_figure, write_json,
                    write_text)
from safeio.checks import UserError, check_non_negative_int, check_positive_int, is_number
from zoo import registry
from zoo.optimizers import OPTIMIZER_CHOICES, build_optimizer, make_optimizer
from zoo.saving import bytes_to_save
from zoo.training import recipe as training
from zoo.training import run_config

OBJECTIVE = "val_top1_accuracy"
SETTINGS_FILE = "zoo_search.json"  # in run_dir: what the trials there were searched with


def _log_range(name, bounds):
    low, high = _range(name, bounds)
    if low <= 0:
        raise UserError(f"`{name}` is searched on a log scale: both bounds must be > 0; "
                        f"received {bounds!r}.")
    return low, high


def _range(name, bounds):
    if isinstance(bounds, np.ndarray) and bounds.ndim == 1:  # (NumPy's numbers are numbers,
        bounds = tuple(bounds)  # and a bool is none: True was taken for 1.0)
    if (not isinstance(bounds, (tuple, list)) or len(bounds) != 2
            or not all(is_number(b) and math.isfinite(b) for b in bounds)
            or bounds[0] >= bounds[1]):  # (NaN compared False, and got past: its config kept)
        raise UserError(f"`{name}` must be a (low, high) pair of finite numbers with low < "
                        f"high; received "
                        f"{bounds!r}.")
    return float(bounds[0]), float(bounds[1])


def search_space(learning_rate, weight_decay, dropout, width, optimizer=None):
    """The space :func:`search` samples, ``{name: (low, high) or [choices]}``, checked: a
    one-line :class:`UserError` for a bad range or choice, before any trial."""
    space = {"learning_rate": _log_range("learning_rate", learning_rate),
             "weight_decay": _log_range("weight_decay", weight_decay)}
    if optimizer is not None:
        choices = [optimizer] if isinstance(optimizer, str) else list(optimizer)
        unknown = [c for c in choices if c not in OPTIMIZER_CHOICES]
        if not choices or unknown:
            raise UserError(f"`optimizer` must be a non-empty list of "
                            f"{OPTIMIZER_CHOICES}; received {optimizer!r}.")
        space["optimizer"] = choices
    if dropout is not None:
        low, high = _range("dropout", dropout)
        if not 0 <= low < high < 1:
            raise UserError(f"`dropout` bounds must lie in [0, 1); received {dropout!r}.")
        space["dropout"] = (low, high)
    if width is not None:
        if (not isinstance(width, (list, tuple)) or not width
                or not all(is_number(w) and w > 0 for w in width)):
            raise UserError(f"`width` must be a non-empty list of positive numbers (fc units "
                            f"for AlexNet, a channel multiplier otherwise); received {width!r}.")
        # keras-tuner's Choice takes one type: [0.5, 1] are multipliers, all floats.
        kind = int if all(float(w).is_integer() and not isinstance(w, float)
                          for w in width) else float
        space["width"] = [kind(w) for w in width]
    return space


class _UserMistake(Exception):
    """A trial's :class:`UserError`, or an OS fault (a full disk), carried through
    keras-tuner (which records any other exception as a failed trial, never run again, and
    goes on) to stop the search with it. The trial stays unfinished in keras-tuner's
    records, and a resumed search runs it again."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


@functools.cache
def _stop():
    """:class:`_UserMistake` as keras-tuner's FatalError, which it lets through a trial."""
    import keras_tuner as kt

    class Stop(_UserMistake, kt.errors.FatalError):
        pass

    return Stop


def _hypermodel(build, space, seed):
    import keras_tuner as kt

    Stop = _stop()

    class ZooHyperModel(kt.HyperModel):
        def build(self, hp):
            try:
                return self._make(hp)
            except (UserError, OSError) as err:
                raise Stop(err) from err

        def _make(self, hp):
            kwargs = {}
            if "dropout" in space:
                kwargs["dropout"] = hp.Float("dropout", *space["dropout"])
            if "width" in space:
                kwargs["width"] = hp.Choice("width", space["width"])
            learning_rate = hp.Float("learning_rate", *space["learning_rate"], sampling="log")
            weight_decay = hp.Float("weight_decay", *space["weight_decay"], sampling="log")
            name = hp.Choice("optimizer", space["optimizer"]) if "optimizer" in space else "sgd"
            keras.utils.set_random_seed(seed)  # every trial starts from the same weights
            model = build(**kwargs)
            return training.compile_model(
                model, make_optimizer(name, learning_rate, 0.9, weight_decay))

        def fit(self, hp, model, train_data, validation_data=None, **kwargs):
            kwargs.setdefault("shuffle", False)  # datasets come shuffled (data.load)
            if getattr(train_data, "_zoo_epoch", None) is not None:
                import data

                data.set_epoch(train_data, 0)  # every trial sees epochs 0, 1, ... of it
            try:
                # keras-tuner saves the trial's best weights with no look at the room for
                # them: on a full disk, h5py's traceback at each trial, then a segmentation
                # fault, and the failed trials were never run again.
                for callback in kwargs.get("callbacks") or ():
                    if isinstance(getattr(callback, "filepath", None), str):
                        check_free_space(callback.filepath, bytes_to_save(model))
                build_optimizer(model)  # else TensorFlow traces the first step twice
                return model.fit(train_data, validation_data=validation_data, **kwargs)
            except OSError as err:
                raise Stop(err) from err

    return ZooHyperModel()


def _failures(tuner):
    """The last line of each failed trial's message (keras-tuner keeps the traceback)."""
    return [((trial.message or "").strip().splitlines() or ["(no message)"])[-1]
            for trial in tuner.oracle.trials.values() if trial.status == "FAILED"]


def _builder_name(model):
    """What the settings file records of ``model``: a registry name, a function's module
    and name, a partial's function and arguments; None where nothing names it (a lambda)."""
    if isinstance(model, str):
        return model
    if isinstance(model, functools.partial):
        inner = _builder_name(model.func)
        return inner and (f"partial({inner}, " + ", ".join(
            [repr(a) for a in model.args]
            + [f"{k}={v!r}" for k, v in sorted(model.keywords.items())]) + ")")
    name = getattr(model, "__qualname__", None)
    if not name or "<lambda>" in name:
        return None
    return f"{getattr(model, '__module__', '?')}.{name}"


def _narrowed(space, best):
    """The fine stage's space: the span of the best trials, widened by half a decade on a
    log scale (a tenth of the range for dropout), clipped to the coarse space."""
    fine = {}
    for name, bounds in space.items():
        values = best[name].to_numpy()
        if name in ("width", "optimizer"):
            fine[name] = sorted(set(values.tolist()), key=space[name].index)
        elif name == "dropout":
            pad = 0.1 * (bounds[1] - bounds[0])
            fine[name] = (max(bounds[0], values.min() - pad), min(bounds[1], values.max() + pad))
        else:
            low, high = np.log10(values.min()) - 0.5, np.log10(values.max()) + 0.5
            fine[name] = (max(bounds[0], 10 ** low), min(bounds[1], 10 ** high))
    return fine


def _trials_table(tuner, stage):
    rows = []
    # In the trials' order, whatever order the oracle reloads them in on a resume (the same
    # search.csv, and the same pick among equal scores, every run).
    trials = sorted(tuner.oracle.trials.values(), key=lambda trial: (
        int(trial.trial_id) if str(trial.trial_id).isdigit() else float("inf"),
        str(trial.trial_id)))
    for trial in trials:
        if trial.score is None:
            continue
        metrics = trial.metrics
        val_loss = (metrics.get_best_value("val_loss") if metrics.exists("val_loss")
                    else np.nan)
        rows.append({"stage": stage, "trial": trial.trial_id, **trial.hyperparameters.values,
                     "val_top1_error": 1.0 - trial.score, "val_loss": val_loss})
    return pd.DataFrame(rows)


@dataclasses.dataclass
class SearchResult:
    """What :func:`search` returns: every trial (a row each) and the best values."""

    table: pd.DataFrame
    best: dict
    run_dir: str


def search(model, train_data, val_data, *, model_kwargs=None, trials=8, fine_trials=None,
           epochs=2, learning_rate=(1e-4, 1e-1), weight_decay=(1e-6, 1e-2), dropout=None,
           width=None, optimizer=None, top=3, seed=0, run_dir=None, settings=None,
           verbose=0):
    """Random search, coarse then fine, of the paper recipe's hyper-parameters.

    Args:
        model: a registry name (built with ``model_kwargs``) or a function taking the
            searched builder arguments (``dropout``, ``width``) as keywords.
        train_data, val_data: datasets of ``(image, label)`` batches.
        trials, fine_trials: trials of the coarse and the fine stage (``fine_trials=0``:
            coarse only; default: as many as the coarse stage).
        epochs: epochs per trial (short: the notes' "a few epochs" for the coarse stage).
        learning_rate, weight_decay: ``(low, high)``, sampled log-uniformly.
        dropout: optional ``(low, high)``, sampled uniformly. width: optional list of
            choices (fc units for AlexNet, a channel multiplier otherwise).
        optimizer: optional list of ``zoo.make_optimizer`` names to choose among (e.g.
            ``["sgd", "nesterov", "adam"]``); default the paper's SGD only.
        top: the fine stage searches the span of the ``top`` best coarse trials.
        seed: seeds the tuner's sampling and each trial's initial weights (the same for
            every trial, whose data passes start at epoch 0 of ``data.load``'s; through
            ``keras.utils.set_random_seed``, so Python's, NumPy's and the backend's global
            seeds are this one's when the search returns). run_dir: where keras-tuner
            keeps the trials (``coarse/`` and ``fine/``); a rerun reloads finished trials. Its
            ``zoo_search.json`` records the search's settings, and ``settings`` (JSON
            values: what ``model`` does not tell by its name, such as the data); a rerun
            with others is refused.
        verbose: 0 silent; 1 keras-tuner's report and progress bars; 2 one line per epoch.

    Returns a :class:`SearchResult`; its ``table`` has a row per trial with ``stage``, the
    hyper-parameters, ``val_top1_error`` and ``val_loss``.

    Example:

    >>> result = search("resnet18", train, val, trials=6, epochs=2,
    ...                 model_kwargs=dict(input_shape=(16, 16, 3), classes=10,
    ...                                   stem="cifar", width=0.25))   # doctest: +SKIP
    >>> result.best["learning_rate"]                                  # doctest: +SKIP
    """
    space, build, recorded = _planned(
        model, model_kwargs, trials, fine_trials, epochs, learning_rate, weight_decay,
        dropout, width, optimizer, top, seed, settings)
    fine_trials = recorded["fine_trials"]
    if val_data is None:
        raise UserError("zoo.search ranks its trials on validation data: pass val_data "
                        "(e.g. data.load(name, 'validation')).")
    check_builds(build, space)
    run_dir = run_dir or tempfile.mkdtemp(prefix="zoo_search_")
    # One search at a time (keras-tuner would mix them), its files written atomically.
    with directory_lock(run_dir), _atomic_tuner_files(run_dir):
        _check_same_search(run_dir, recorded)
        tables = []
        for stage, count in (("coarse", trials), ("fine", fine_trials)):
            if count < 1:
                break
            if stage == "fine":
                space = _narrowed(space, _ranked(pd.concat(tables)).head(top))
            if verbose:
                print(f"{stage} search: {count} trials of {epochs} epoch(s) over "
                      + ", ".join(f"{k} {_describe(v)}" for k, v in space.items()), flush=True)
            tables.append(_stage_table(
                stage, count, _hypermodel(build, space, seed), _tuner_seed(seed, stage),
                run_dir, train_data, val_data, epochs, verbose))
        table = pd.concat(tables, ignore_index=True)
        best = _ranked(table).iloc[0].to_dict()
        return SearchResult(table, best, run_dir)


BUILDER_ARGUMENTS = ("width", "dropout")  # what a trial gives the builder (_hypermodel)


def check_builds(build, space):
    """Build the model once per searched width (once where none is searched): arguments
    the builder refuses are its one line now, not in a first trial after the settings
    were kept (the corrected search was then refused as another search)."""
    for width in space.get("width") or [None]:
        model = build() if width is None else build(width=width)
        del model
        gc.collect()  # (its weights, before the next's)


def searched_and_fixed(space, fixed):
    """The builder arguments of ``space`` (:func:`search_space`'s) that the builder's fixed
    arguments ``fixed`` hold too: the searched value would replace the fixed one."""
    return [name for name in BUILDER_ARGUMENTS if name in space and name in fixed]


def _ranked(table):
    """The trials best first: by validation error, ties by validation loss (then in their
    order), so that the best of equal errors is the same trial in every run."""
    return table.sort_values(["val_top1_error", "val_loss"], kind="stable")


def check_rerun(run_dir, model, **keywords):
    """Refuse, in one line and writing nothing, what :func:`search` would refuse of its
    arguments (``keywords``: its own) and a rerun in ``run_dir`` with other settings than
    the search there: for a program to check before its own long work (``zoo search``'s
    statistics pass).

    Example:

    >>> check_rerun("runs/search", "resnet18", trials=4, epochs=1)  # doctest: +SKIP
    """
    given = inspect.signature(search).bind(model, None, None, **keywords)
    given.apply_defaults()
    a = given.arguments
    _, _, recorded = _planned(
        model, a["model_kwargs"], a["trials"], a["fine_trials"], a["epochs"],
        a["learning_rate"], a["weight_decay"], a["dropout"], a["width"], a["optimizer"],
        a["top"], a["seed"], a["settings"])
    _check_same_search(run_dir, recorded, write=False)


def _tuner_seed(seed, stage):
    """keras-tuner's seed for a stage, from NumPy's ``SeedSequence`` of the seed and the
    stage: keras-tuner moves its state on by one per value drawn, so nearby states drew
    the same values (seed 1 began at seed 0's second trial, and the fine stage re-paired
    the coarse stage's draws). Never 0, which keras-tuner takes for none (``seed or
    random.randint(1, 10000)``: the default seed=0 drew other trials at every run)."""
    state = np.random.SeedSequence([seed, stage == "fine"]).generate_state(1, np.uint64)[0]
    return int(state % (2**62)) + 1


def _planned(model, model_kwargs, trials, fine_trials, epochs, learning_rate, weight_decay,
             dropout, width, optimizer, top, seed, settings):
    """The search's checked space, its builder, and the settings its run directory
    records."""
    space = search_space(learning_rate, weight_decay, dropout, width, optimizer)
    for name, value in (("trials", trials), ("epochs", epochs), ("top", top)):
        check_positive_int(value, name)
    check_non_negative_int(seed, "seed")
    fine_trials = trials if fine_trials is None else fine_trials
    check_non_negative_int(fine_trials, "fine_trials")
    if isinstance(model, keras.Model) or not (isinstance(model, str) or callable(model)):
        raise UserError("`model` must be a registry name or a function building the model "
                        "(every trial builds a fresh one); received "
                        f"{type(model).__name__}.")
    fixed = dict(model_kwargs or {})
    both = sorted(searched_and_fixed(space, fixed))
    if both:  # (the searched value silently replaced the fixed one)
        raise UserError(f"{', '.join(both)} is searched and also fixed in model_kwargs "
                        f"({', '.join(f'{k}={fixed[k]!r}' for k in both)}): give one of them.")
    build = lambda **kw: registry.resolve(model, **{**fixed, **kw})  # noqa: E731
    named = _builder_name(model)
    if named is None and "model" not in (settings or {}):
        raise UserError(f"{model!r} has no name to record in the search's {SETTINGS_FILE}, "
                        "which keeps a rerun from taking another model's trials: give a "
                        "named function (def), or settings={'model': 'what it builds'}.")
    recorded = {"model": named, "model_kwargs": fixed, "trials": trials,
                "fine_trials": fine_trials, "epochs": epochs, "space": space, "top": top,
                "seed": seed, **(settings or {})}
    return space, build, recorded


_SEARCHING = []  # the run directories of the searches running in this process
_SEARCHING_LOCK = threading.Lock()


@contextlib.contextmanager
def _atomic_tuner_files(run_dir):
    """keras-tuner writes its ``trial.json`` and ``oracle.json`` in place (``tf.io.gfile``
    empties a file as it opens it and fills it as it closes): a search killed in between
    left an empty ``trial.json``, on which every resume failed in keras-tuner's reload
    (JSONDecodeError). Within the block, its JSON files under ``run_dir`` are written
    atomically (safeio); any other tuner's (a user's, on gs:// say) as keras-tuner writes
    them. keras-tuner's own function is back once no search runs."""
    from keras_tuner.src import utils as tuner_utils  # (what its Trial and Oracle call)

    def save_json(path, obj):  # keras-tuner's, but our files appear whole or not at all
        where = os.path.abspath(os.fspath(path))
        if not any(where.startswith(folder + os.sep) for folder in _SEARCHING):
            return save_json.original(path, obj)
        text = json.dumps(obj)
        try:  # (a trial's build_config.json, written within it: a failed trial otherwise)
            write_text(path, text)
        except OSError as err:
            raise _stop()(err) from err
        return text

    run_dir = os.path.abspath(run_dir)
    with _SEARCHING_LOCK:
        if not _SEARCHING:
            save_json.original, tuner_utils.save_json = tuner_utils.save_json, save_json
        _SEARCHING.append(run_dir)
    try:
        yield
    finally:
        with _SEARCHING_LOCK:
            _SEARCHING.remove(run_dir)
            if not _SEARCHING:
                tuner_utils.save_json = tuner_utils.save_json.original


def _stage_table(stage, count, hypermodel, seed, run_dir, train_data, val_data, epochs,
                 verbose):
    """The trials' table of one keras-tuner stage of ``count`` trials. A trial's UserError
    stops it; trials that failed otherwise are a warning, and none finishing, or three in a
    row failing, one line."""
    import keras_tuner as kt

    try:  # (keras-tuner builds a model as it starts, to learn the space)
        tuner = kt.RandomSearch(hypermodel, objective=kt.Objective(OBJECTIVE, "max"),
                                max_trials=count, seed=seed, directory=run_dir,
                                project_name=stage)
        tuner.search(train_data, validation_data=val_data, epochs=epochs, verbose=verbose)
    except _UserMistake as stop:  # (a width the model refuses, say)
        raise stop.error from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # a trial's file (a traceback)
        raise UserError(f"A file of keras-tuner's in {os.path.join(run_dir, stage)} is "
                        f"damaged ({err}): the {stage} search there cannot be resumed. Move "
                        "the run directory aside, or give another.") from None
    except RuntimeError as err:  # keras-tuner: "Number of consecutive failures ..."
        if "consecutive failures" not in str(err):
            raise
        limit = tuner.oracle.max_consecutive_failed_trials
        raise UserError(f"The {stage} search stopped: {limit} trials in a row failed, "
                        f"the last with: {_failures(tuner)[-1]}") from None
    table, failed = _trials_table(tuner, stage), _failures(tuner)
    if failed and table.empty:
        raise UserError(f"No trial of the {stage} search finished: {len(failed)} failed, "
                        f"the first with: {failed[0]}")
    if failed:
        warnings.warn(f"{len(failed)} trial(s) of the {stage} search failed and are left "
                      f"out of its table; the first with: {failed[0]}", stacklevel=3)
    return table


def _check_same_search(run_dir, settings, write=True):
    """keras-tuner takes the trials already in ``run_dir`` as its own: a search there with
    other settings would mix their trials with these (or keep only those). Refused in one
    line; the same settings resume the search."""
    try:  # (keras-tuner's tf.io.gfile: UnicodeEncodeError, after the statistics pass)
        os.fspath(run_dir).encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"The search's folder {run_dir!r} has a name that is not UTF-8 "
                        "text, which keras-tuner (tf.io.gfile) cannot open: give a folder "
                        "named in UTF-8.") from None
    path = os.path.join(run_dir, SETTINGS_FILE)
    now = json.loads(json.dumps(settings, default=str))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            try:
                before = json.load(f)
                damage = (None if isinstance(before, dict)  # (valid JSON: null, a list)
                          else f"it holds {json.dumps(before)[:40]}, not the settings")
            except (json.JSONDecodeError, UnicodeDecodeError) as err:  # (a traceback)
                damage = err
        if damage is not None:
            raise UserError(f"{path} is damaged ({damage}): it records the settings of the "
                            f"search in {run_dir}, which cannot be resumed without them. "
                            "Move the run directory aside, or give another.")
        # Compared key by key (command.image_size), so that the message shows what
        # changed, not two long JSON values cut to the same ends.
        before, now_flat = run_config.flat_config(before), run_config.flat_config(now)
        changed = sorted(k for k in set(before) | set(now_flat)
                         if before.get(k) != now_flat.get(k)
                         and not (k == "model" and _renamed(before.get(k), now_flat.get(k))))
        if changed:
            differ = "; ".join(f"{k}: {_short(before.get(k))} there, "
                               f"{_short(now_flat.get(k))} now" for k in changed)
            raise UserError(
                f"{run_dir} holds a search with other settings ({', '.join(changed)}): "
                "keras-tuner would take its trials as this search's. Give another run "
                f"directory, or the same settings to resume it ({differ}).")
    if write:
        os.makedirs(run_dir, exist_ok=True)
        write_json(path, now)


# Where the command line's builder was recorded by earlier versions: the same builder now.
_MOVED = {"_Setup.build": "zoo.cli.runs.Setup.build",
          "zoo.cli.commands._Setup.build": "zoo.cli.runs.Setup.build"}


def _renamed(before, now):
    """Whether a builder recorded as ``before`` by an earlier version (its bare
    ``__qualname__``, or where the command line's was then: ``_MOVED``) is ``now``."""
    return isinstance(before, str) and isinstance(now, str) and (
        now.endswith("." + before) or _MOVED.get(before) == now)


def _short(value):
    """``value`` as JSON, its middle left out past 80 characters (ends tell builders apart)."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:30] + "..." + text[-47:]


def _describe(value):
    if isinstance(value, list):
        return str(value)
    return f"{value[0]:.2g}..{value[1]:.2g}"


_PLOTTED = ("stage", "learning_rate", "weight_decay", "val_top1_error")


def plot_search(table, path=None, title="Random search", ax=None):
    """Scatter of the trials: learning rate against weight decay (both log scales),
    coloured by validation top-1 error, one marker per stage. Returns the ``Figure``; draws
    into ``ax`` when given, and writes a file (PNG, or as its extension names) only when
    given a ``path``.

    Example:

    >>> fig = plot_search(result.table)                                  # doctest: +SKIP
    """
    if not isinstance(table, pd.DataFrame):
        raise UserError("plot_search needs the search's table (SearchResult.table); "
                        f"received a {type(table).__name__}.")
    missing = [column for column in _PLOTTED if column not in table.columns]
    if missing or table.empty:
        raise UserError(f"plot_search needs a row per trial and the columns {list(_PLOTTED)}; "
                        f"received {len(table)} row(s)"
                        f"{f' without {missing}' if missing else ''}.")
    figure, axes = new_axes(ax, figsize=(6, 4.5))
    markers = {"coarse": "o", "fine": "^"}
    low, high = table["val_top1_error"].min(), table["val_top1_error"].max()
    if high == low:  # (one colour bar for both stages: matplotlib widened the last only,
        low, high = low - 0.01, high + 0.01  # and equal errors took two colours)
    for stage, rows in table.groupby("stage", sort=False):
        points = axes.scatter(rows["learning_rate"], rows["weight_decay"],
                              c=100 * rows["val_top1_error"], cmap="viridis_r",
                              vmin=100 * low, vmax=100 * high, marker=markers.get(stage, "s"),
                              edgecolors="black", label=stage)
    axes.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="weight decay",
             title=title)
    figure.colorbar(points, ax=axes, label="validation top-1 error (%)")
    axes.legend()
    if path is not None:
        save_figure(figure, path)
    return figure

