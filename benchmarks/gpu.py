"""Training and inference images/s of the zoo on a GPU, beside torchvision's peers.

Measured in one run, side by side: batch 256, bf16 mixed precision, the step compiled
(XLA: ``jit_compile=True``; Keras on the JAX backend where TensorFlow is absent), images
224x224 (227 for AlexNet), 1,000 classes, random pixels and labels.

- Keras: ``zoo.alexnet`` (one and two towers), ``zoo.googlenet``, ``zoo.resnet50``: the
  step ``zoo.train`` compiles (``zoo.compile_model``: SGD with momentum and weight decay,
  top-1/top-5 metrics), run by ``fit`` as ``zoo.train`` runs it, beside a hand-jitted
  stateless step of the same model and optimizer (the reference the product's step is
  held to), and ``predict_on_batch``; a one-graph
  ``ensembles.Ensemble`` of 5 ResNet-18s against the same members in turn, by
  ``predict_on_batch`` (the batch on the device) and by ``predict`` (host images, as users
  call it).
- torchvision (when torch is importable and a GPU is there): the same models eager
  (channels_last, bf16 autocast) and, for the names in ``--compile``, under torch.compile.

Writes the CSV after every row and prints one table with the ratios the project's targets
are about. ``--deadline`` skips what would not finish in time (a GPU lease is short).
``--smoke`` runs every Keras path on the CPU with tiny sizes (a test in ``make test-all``).

Run: ``KERAS_BACKEND=jax python benchmarks/gpu.py --out gpu.csv`` (or ``make bench-gpu``).
On a short lease, in two runs: ``--no-torch --out keras.csv``, then ``--no-keras --out
torch.csv``; ``--report keras.csv torch.csv`` prints the ratios of both.
"""

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from safeio import atomic_path, check_writable_file  # noqa: E402
from safeio.checks import UserError  # noqa: E402

FULL = dict(full=True, batch=256, steps=10, warmup=2, alexnet=227, size=224, classes=1000,
            googlenet_width=1.0, resnet_width=1.0, members=5, predict_batches=10)
SMOKE = dict(full=False, batch=2, steps=1, warmup=1, alexnet=67, size=32, classes=10,
             googlenet_width=0.125, resnet_width=0.25, members=2, predict_batches=2)
# The smoke run checks the code paths, not the compiler: XLA compiles its steps without
# LLVM's optimisations (unless XLA_FLAGS sets the level). Its compiled steps took 90 s
# here, against 287 s run op by op (jit_compile=False: 2,023 kernels compiled one by one).
SMOKE_XLA_FLAG = "--xla_backend_optimization_level=0"
# Seconds a phase is expected to take on a GPU (compiling, mostly): one is skipped, with a
# line saying so, when it would end past the deadline.
COST = {"alexnet": 45, "googlenet": 120, "resnet50": 120, "ensemble": 90,
        "torch eager": 25, "torch.compile resnet50 train": 75,
        "torch.compile googlenet train": 150, "torch.compile alexnet train": 45,
        "torch.compile resnet50 inference": 50, "torch.compile googlenet inference": 80,
        "torch.compile alexnet inference": 30}


class Results:
    """The rows measured so far, written to ``out`` (atomically) after each one, and the
    clock the phases are held to."""

    def __init__(self, out, deadline, common, start=None):
        self.out, self.deadline, self.common = out, deadline, common
        self.rows = []
        self.start = time.monotonic() if start is None else start

    def add(self, framework, model, mode, images_per_s, size, steps=None):
        """One row; ``steps``: the batches timed, where not the run's ``--steps``."""
        row = {"framework": framework, "model": model, "mode": mode,
               "images_per_s": round(images_per_s, 1), "size": size, **self.common,
               "date": time.strftime("%Y-%m-%d")}
        if steps is not None:
            row["steps"] = steps
        self.rows.append(row)
        print(_line(row), flush=True)
        with atomic_path(self.out) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.rows)

    def allows(self, phase):
        """Whether ``phase`` (a key of COST) is expected to end before the deadline."""
        elapsed = time.monotonic() - self.start
        if self.deadline is None or elapsed + COST[phase] <= self.deadline:
            return True
        print(f"skipped {phase}: {elapsed:.0f} s gone, about {COST[phase]} s more would pass "
              f"the deadline of {self.deadline:.0f} s", flush=True)
        return False


def _rate(fn, images, steps, warmup, wait=lambda result: None):
    """Images/s of ``steps`` calls of ``fn()``. ``wait(result)`` blocks until the device has
    done the work of the call that returned ``result``; it runs after the warm-up and after
    the last call only, as ``fit`` waits only at the end of an epoch: launching one step
    overlaps the device's work on the one before, for every framework timed."""
    result = None
    for _ in range(warmup):
        result = fn()
    wait(result)
    start = time.perf_counter()
    for _ in range(steps):
        result = fn()
    wait(result)
    return images * steps / (time.perf_counter() - start)


def _fit_rate(model, x, y, batch, steps):
    """Images/s of ``model.fit`` (the loop ``zoo.train`` runs) over ``steps`` batches of the
    device arrays ``x, y``, timed from the second epoch's start to its end (the first
    compiles; the end of an epoch waits for its last step)."""
    from benchmarks.common import epoch_timer

    timer, times = epoch_timer()
    model.fit(repeated(x, y), steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[timer])
    return batch * steps / times[-1]


def repeated(x, y):
    """The batch ``(x, y)`` for ever, as ``fit`` takes it: arrays already on the device stay
    there (Keras' generator adapter passes them through)."""
    while True:
        yield x, y


def keras_models(cfg):
    """``{name: (build(input_shape), side, COST key)}``: the models the targets are about."""
    import zoo

    classes = cfg["classes"]
    fc = 4096 if cfg["full"] else 64
    return {
        "alexnet (one tower)": (lambda shape: zoo.alexnet(classes=classes, width=fc,
                                                          input_shape=shape), cfg["alexnet"],
                                "alexnet"),
        "alexnet (two towers)": (lambda shape: zoo.alexnet(classes=classes, width=fc, towers=2,
                                                           input_shape=shape), cfg["alexnet"],
                                 "alexnet"),
        "googlenet": (lambda shape: zoo.googlenet(classes=classes, input_shape=shape,
                                                  width=cfg["googlenet_width"]), cfg["size"],
                      "googlenet"),
        "resnet50": (lambda shape: zoo.resnet50(classes=classes, input_shape=shape,
                                                width=cfg["resnet_width"]), cfg["size"],
                     "resnet50"),
    }


def keras_rows(cfg, precision, results):
    import keras

    import zoo
    from benchmarks.common import check_same_update
    from benchmarks.step_overhead import hand_jitted_step, step_weights
    from zoo.optimizers import compile_model

    keras.config.set_dtype_policy(precision)
    rng = np.random.default_rng(0)
    batch, classes = cfg["batch"], cfg["classes"]
    for name, (build, size, phase) in keras_models(cfg).items():
        if not results.allows(phase):
            continue
        model = build((size, size, 3))
        # zoo.train's compile (PaperSGD, top-1/top-5 metrics; zoo.optimizers needs no
        # TensorFlow, which the GPU image lacks).
        compile_model(model, learning_rate=0.01, jit_compile=True)
        # On the device, as the torchvision peers' tensors are: the step is timed, not a
        # 154 MB host-to-device copy per batch.
        x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)),
                                        dtype="float32")
        y = keras.ops.convert_to_tensor(rng.integers(0, classes, batch), dtype="int32")
        # The reference the product's step is held to (on the CPU smoke run, for one
        # model: each is a second compile of the step, and their code path is one). Its
        # own copy of the weights, taken before fit.
        if keras.backend.backend() == "jax" and (cfg["full"] or name == "alexnet (one tower)"):
            hand = hand_jitted_step(model, zoo.PaperSGD(0.01, momentum=0.9, l2=5e-4))
            # Both steps do the same work: one of each from the same weights, on one batch.
            before = step_weights(model)
            hand(x, y)
            model.train_on_batch(x, y)
            check_same_update(before, step_weights(model), hand.weights(),
                              f"zoo.{name}: fit's step against the hand-jitted one",
                              rtol=1e-3 if precision == "float32" else 5e-2)
            results.add("keras", f"zoo.{name}", "train, hand-jitted",
                        _rate(lambda: hand(x, y), batch, cfg["steps"], cfg["warmup"],
                              wait=lambda loss: loss.block_until_ready()), size)
        fit_steps = cfg["steps"] + cfg["warmup"]  # (fit's second epoch: all of it timed)
        results.add("keras", f"zoo.{name}", "train", _fit_rate(model, x, y, batch, fit_steps),
                    size, steps=fit_steps)
        results.add("keras", f"zoo.{name}", "inference",
                    _rate(lambda: model.predict_on_batch(x), batch, cfg["steps"],
                          cfg["warmup"]), size)
    if results.allows("ensemble"):
        ensemble_rows(cfg, results, rng)


def ensemble_rows(cfg, results, rng):
    """A one-graph Ensemble of ResNet-18s against its members in turn: on a batch already on
    the device (``predict_on_batch``), and on host images through ``predict`` (each member
    in turn copies every batch to the device again; the ensemble copies it once)."""
    import keras

    import ensembles
    import zoo
    from benchmarks.common import check_same_results

    batch, size = cfg["batch"], cfg["size"]
    members = [zoo.resnet18(classes=cfg["classes"], width=cfg["resnet_width"],
                            input_shape=(size, size, 3), name=f"resnet18_{i}")
               for i in range(cfg["members"])]
    ensemble = ensembles.Ensemble(members)
    label = f"ensemble of {cfg['members']} zoo.resnet18"
    x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)),
                                    dtype="float32")
    check_same_results(  # both sides compute the same probabilities
        ensemble.predict_on_batch(x),
        np.mean([keras.ops.convert_to_numpy(m.predict_on_batch(x)) for m in members], axis=0),
        f"{label}: the one graph against the members' mean",
        # (float32 on a GPU may run its convolutions in TF32: not bit for bit)
        atol=1e-3 if keras.config.dtype_policy().name == "float32" else 1e-2)
    for mode, fn in (("one graph", lambda: ensemble.predict_on_batch(x)),
                     ("members in turn", lambda: [m.predict_on_batch(x) for m in members])):
        results.add("keras", label, mode, _rate(fn, batch, cfg["steps"], cfg["warmup"]), size)
    images = np.concatenate([keras.ops.convert_to_numpy(x)] * cfg["predict_batches"])
    for mode, fn in (
            ("one graph, predict", lambda: ensemble.predict(images, batch_size=batch,
                                                            verbose=0)),
            ("members in turn, predict", lambda: [m.predict(images, batch_size=batch, verbose=0)
                                                  for m in members])):
        results.add("keras", label, mode, _rate(fn, len(images), 2, 1), size,
                    steps=2 * cfg["predict_batches"])  # (two calls timed, of these batches)


def torch_rows(cfg, compiled, results, precision):
    try:
        import torch
        import torchvision
    except ImportError:
        print("torchvision peers skipped: torch is not importable here", flush=True)
        return
    if not torch.cuda.is_available():
        print("torchvision peers skipped: no CUDA device", flush=True)
        return
    device = "cuda"
    torch.backends.cudnn.benchmark = True  # as torchvision's reference training script
    batch, classes = cfg["batch"], cfg["classes"]
    builders = {
        "resnet50": (lambda: torchvision.models.resnet50(num_classes=classes), cfg["size"]),
        "googlenet": (lambda: torchvision.models.googlenet(num_classes=classes,
                                                            aux_logits=False,
                                                            init_weights=False), cfg["size"]),
        "alexnet": (lambda: torchvision.models.alexnet(num_classes=classes), cfg["alexnet"]),
    }

    def measure(name, flavour, mode):
        build, size = builders[name]
        x = torch.rand(batch, 3, size, size, device=device).contiguous(
            memory_format=torch.channels_last)
        y = torch.randint(0, classes, (batch,), device=device)
        model = build().to(device, memory_format=torch.channels_last)
        runner = torch.compile(model) if flavour == "torch.compile" else model
        # As PaperSGD: momentum 0.9, L2 weight decay 5e-4 of the kernels alone (not the
        # biases, nor the normalisation's gamma and beta).
        kernels = [p for p in model.parameters() if p.ndim > 1]
        others = [p for p in model.parameters() if p.ndim <= 1]
        optimizer = torch.optim.SGD([{"params": kernels, "weight_decay": 5e-4},
                                     {"params": others, "weight_decay": 0.0}],
                                    lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        # (the Keras rows' precision: bf16 autocast for mixed_bfloat16)
        autocast = dict(device_type="cuda", dtype=torch.bfloat16,
                        enabled=precision == "mixed_bfloat16")

        def train():
            with torch.autocast(**autocast):
                loss = loss_fn(runner(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def infer():  # the probabilities on the host, as predict_on_batch returns them
            with torch.no_grad(), torch.autocast(**autocast):
                return runner(x).float().cpu()

        model.train(mode == "train")
        results.add(f"torchvision {flavour}", name, mode,
                    _rate(train if mode == "train" else infer, batch, cfg["steps"],
                          cfg["warmup"], wait=lambda _: torch.cuda.synchronize()), size)

    # Eager first, then the compile peers the targets need (training), then inference.
    for name in builders:
        if results.allows("torch eager"):
            for mode in ("train", "inference"):
                measure(name, "eager", mode)
    for mode in ("train", "inference"):
        for name in builders:
            if name in compiled and results.allows(f"torch.compile {name} {mode}"):
                measure(name, "torch.compile", mode)


def _line(row):
    return (f"{row['framework']:<26} {row['model']:<34} {row['mode']:<24} "
            f"{row['images_per_s']:>10,.1f} img/s")


def ratios(rows):
    """The targets' ratios: ours over the peer, where both were measured."""
    def rate(framework, model, mode):
        found = [float(r["images_per_s"]) for r in rows
                 if (r["framework"], r["model"], r["mode"]) == (framework, model, mode)]
        return (float(np.median(found)), len(found)) if found else (None, 0)

    ensemble = next((r["model"] for r in rows if r["model"].startswith("ensemble of")), "")
    pairs = [
        ("zoo.resnet50 train / torch.compile", ("keras", "zoo.resnet50", "train"),
         ("torchvision torch.compile", "resnet50", "train"), 1.0),
        ("zoo.googlenet train / torch.compile", ("keras", "zoo.googlenet", "train"),
         ("torchvision torch.compile", "googlenet", "train"), 1.2),
        ("two-tower / one-tower AlexNet train", ("keras", "zoo.alexnet (two towers)", "train"),
         ("keras", "zoo.alexnet (one tower)", "train"), 0.95),
        ("one-graph ensemble / members in turn, predict",
         ("keras", ensemble, "one graph, predict"),
         ("keras", ensemble, "members in turn, predict"), 1.5),
        ("one-graph ensemble / members in turn, batch on device",
         ("keras", ensemble, "one graph"), ("keras", ensemble, "members in turn"), None),
        ("zoo.resnet50 train / torchvision eager", ("keras", "zoo.resnet50", "train"),
         ("torchvision eager", "resnet50", "train"), None),
        ("zoo.googlenet train / torchvision eager", ("keras", "zoo.googlenet", "train"),
         ("torchvision eager", "googlenet", "train"), None),
    ]
    pairs += [(f"zoo.{name}: fit step / hand-jitted step", ("keras", f"zoo.{name}", "train"),
               ("keras", f"zoo.{name}", "train, hand-jitted"), None)
              for name in ("resnet50", "googlenet", "alexnet (one tower)", "alexnet (two towers)")]
    out = []
    for label, ours, peer, target in pairs:
        (a, runs), (b, peer_runs) = rate(*ours), rate(*peer)
        if a and b:  # (rows measured more than once, in several runs: their medians)
            out.append({"ratio": label, "value": round(a / b, 3), "target": target,
                        "runs": max(runs, peer_runs)})
    return out


COLUMNS = ("framework", "model", "mode", "images_per_s", "batch", "precision")


def read_rows(paths):
    """The rows of the CSVs at ``paths`` (this script's ``--out``), checked: their columns,
    their rates, and one batch size and precision (a ``--smoke`` file's rows beside a
    full run's made ratios of nothing alike)."""
    rows = []
    for path in paths:
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:  # (Excel's BOM)
                reader = csv.DictReader(f)
                found = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise UserError(f"Cannot read {path}: {err}") from None
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise UserError(f"{path} is not a table of gpu.py's --out: it has no "
                            f"{', '.join(missing)} column(s).")
        for number, row in enumerate(found, 2):
            if any(row[c] is None for c in COLUMNS):
                raise UserError(f"{path}, line {number}: a row of fewer fields than the "
                                "header.")
            try:
                float(row["images_per_s"])
            except ValueError:
                raise UserError(f"{path}, line {number}: images_per_s must be a number; "
                                f"received {row['images_per_s']!r}.") from None
        rows += found
    settings = sorted({(r["batch"], r["precision"]) for r in rows})
    if len(settings) > 1:
        raise UserError("The rows were measured with other batch sizes or precisions "
                        f"({'; '.join(f'batch {b}, {p}' for b, p in settings)}): their "
                        "ratios would compare nothing alike. Report one setting's files.")
    devices = sorted({r.get("device") or "(not recorded)" for r in rows})
    if len(devices) > 1:  # (an H100's torch rows beside an H200's Keras rows, say)
        raise UserError(f"The rows were measured on other devices ({', '.join(devices)}): "
                        "a ratio is of two rates measured on one machine. Report one "
                        "device's files.")
    return rows


def _print_ratios(rows, smoke=False):
    print()
    if smoke and rows:
        print("(--smoke: tiny sizes on the CPU; these ratios check the code paths, not "
              "speed)")
    for r in ratios(rows):
        target = f"(target >= {r['target']})" if r["target"] else ""
        runs = f" (medians of {r['runs']} runs)" if r["runs"] > 1 else ""
        print(f"{r['ratio']:<52} {r['value']:>6.3f}x {target}{runs}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/gpu_results.csv")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one step: every Keras path on the CPU")
    parser.add_argument("--precision", default="mixed_bfloat16",
                        choices=("mixed_bfloat16", "float32"),
                        help="both frameworks' (torch: bf16 autocast or none)")
    parser.add_argument("--compile", nargs="*", default=["resnet50", "googlenet"],
                        choices=("resnet50", "googlenet", "alexnet"),
                        help="torchvision models also timed under torch.compile")
    parser.add_argument("--no-torch", action="store_true", help="the Keras rows alone")
    parser.add_argument("--no-keras", action="store_true", help="the torchvision rows alone")
    parser.add_argument("--report", nargs="+", metavar="CSV",
                        help="measure nothing: print the ratios of these files' rows")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds from the start: skip a phase expected to end later")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps a measurement (default: 10, 1 with --smoke)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1; received {args.steps}.")
    if args.deadline is not None and not 0 < args.deadline < float("inf"):
        parser.error(f"--deadline is seconds from the start: a number > 0; received "
                     f"{args.deadline:g}.")
    try:
        if args.report:
            _print_ratios(read_rows(args.report))
            return None
        check_writable_file(args.out)  # (not after the first phase's minutes)
    except (UserError, OSError) as err:  # (an OSError names its file)
        parser.error(str(err))
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.smoke and "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        # (before Keras imports JAX, which reads XLA_FLAGS once)
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SMOKE_XLA_FLAG}".strip()
    if args.steps is not None:
        cfg["steps"] = args.steps
    device, keras_version, backend = "cpu", "", ""
    if args.no_keras:  # Keras is not imported: the torch image may lack what it needs
        try:
            import torch

            device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        except ImportError:
            pass
    else:
        import keras

        keras_version, backend = keras.__version__, keras.backend.backend()
        if backend == "jax":
            import jax

            device = str(jax.devices()[0].device_kind)
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            device = (tf.config.experimental.get_device_details(gpus[0]).get("device_name",
                                                                              "GPU")
                      if gpus else "cpu")
    print(f"Keras {keras_version or '(not imported)'} on {backend or '-'}, {device}; batch "
          f"{cfg['batch']}, {args.precision}, {cfg['size']}x{cfg['size']} "
          f"({cfg['alexnet']} for AlexNet), {cfg['steps']} timed steps", flush=True)
    results = Results(args.out, args.deadline, dict(
        batch=cfg["batch"], steps=cfg["steps"], precision=args.precision, device=device,
        keras=keras_version, backend=backend), start=start)
    if not args.no_keras:
        keras_rows(cfg, args.precision, results)
    if not args.no_torch and not args.smoke:
        torch_rows(cfg, set(args.compile), results, args.precision)
    _print_ratios(results.rows, smoke=args.smoke)
    if not results.rows:  # (--no-keras where torch or CUDA is missing, say)
        sys.exit(f"measured nothing: {args.out} was not written")
    print(f"wrote {args.out} ({time.monotonic() - results.start:.0f} s)")
    return results.rows


if __name__ == "__main__":
    main()
