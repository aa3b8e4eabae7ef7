"""Training and inference images/s of the zoo on a GPU, beside torchvision's peers.

Measured in one run, side by side: batch 256, bf16 mixed precision, the step compiled
(XLA: ``jit_compile=True``; Keras on the JAX backend where TensorFlow is absent), images
224x224 (227 for AlexNet), 1,000 classes, random pixels and labels.

- Keras: ``zoo.alexnet`` (one and two towers), ``zoo.googlenet``, ``zoo.resnet50``: the
  step ``zoo.train`` compiles (``zoo.compile_model``: SGD with momentum and weight decay,
  top-1/top-5 metrics), run by ``train_on_batch``, and ``predict_on_batch``; a one-graph
  ``ensembles.Ensemble`` of 5 ResNet-18s against the same members' ``predict_on_batch`` in
  turn.
- torchvision (when torch is importable and a GPU is there): the same models eager
  (channels_last, bf16 autocast) and, for the names in ``--compile``, under torch.compile.

Writes a CSV and prints one table with the ratios the project's targets are about.
``--smoke`` runs every Keras path on the CPU with tiny sizes (a test in ``make test``).

Run: ``KERAS_BACKEND=jax python benchmarks/gpu.py --out gpu.csv`` (or ``make bench-gpu``).
"""

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

FULL = dict(batch=256, steps=10, warmup=2, alexnet=227, size=224, classes=1000,
            googlenet_width=1.0, resnet_width=1.0, jit=True, members=5)
# XLA compiles slowly on a CPU: the smoke run checks the code paths, not the compiler.
SMOKE = dict(batch=2, steps=1, warmup=1, alexnet=67, size=32, classes=10,
             googlenet_width=0.125, resnet_width=0.25, jit=False, members=2)


def _rate(fn, images, steps, warmup):
    """Images/s of ``fn()`` (which must block until its work is done) over ``steps``."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return images * steps / (time.perf_counter() - start)


def keras_rows(cfg, precision):
    import keras

    import ensembles
    import zoo
    from benchmarks.step_overhead import hand_jitted_step
    from zoo.optimizers import compile_model

    keras.config.set_dtype_policy(precision)
    rng = np.random.default_rng(0)
    batch, classes = cfg["batch"], cfg["classes"]
    fc = 4096 if cfg is FULL else 64
    models = {
        "alexnet (one tower)": (lambda shape: zoo.alexnet(classes=classes, width=fc,
                                                          input_shape=shape), cfg["alexnet"]),
        "alexnet (two towers)": (lambda shape: zoo.alexnet(classes=classes, width=fc, towers=2,
                                                           input_shape=shape), cfg["alexnet"]),
        "googlenet": (lambda shape: zoo.googlenet(classes=classes, input_shape=shape,
                                                  width=cfg["googlenet_width"]), cfg["size"]),
        "resnet50": (lambda shape: zoo.resnet50(classes=classes, input_shape=shape,
                                                width=cfg["resnet_width"]), cfg["size"]),
    }
    rows = []
    for name, (build, size) in models.items():
        model = build((size, size, 3))
        # zoo.train's compile (PaperSGD, top-1/top-5 metrics; zoo.optimizers needs no
        # TensorFlow, which the GPU image lacks); its step is the one fit runs, without
        # fit's per-epoch bookkeeping.
        compile_model(model, learning_rate=0.01, jit_compile=cfg["jit"])
        # On the device, as the torchvision peers' tensors are: the step is timed, not a
        # 154 MB host-to-device copy per batch.
        x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)),
                                        dtype="float32")
        y = keras.ops.convert_to_tensor(rng.integers(0, classes, batch), dtype="int32")
        modes = [("train", lambda: model.train_on_batch(x, y)),
                 ("inference", lambda: model.predict_on_batch(x))]
        # The reference the product's step is held to (on the CPU smoke run, for one
        # model: XLA compiles a GoogLeNet's or a ResNet-50's step for minutes there).
        if keras.backend.backend() == "jax" and (cfg is FULL or name == "alexnet (one tower)"):
            hand = hand_jitted_step(model, zoo.PaperSGD(0.01, momentum=0.9, l2=5e-4))
            modes.append(("train, hand-jitted", lambda: hand(x, y).block_until_ready()))
        for mode, fn in modes:
            rows.append(_row("keras", f"zoo.{name}", mode, _rate(fn, batch, cfg["steps"],
                                                                  cfg["warmup"]), size))
            print(_line(rows[-1]), flush=True)
    size = cfg["size"]
    members = [zoo.resnet18(classes=classes, width=cfg["resnet_width"],
                            input_shape=(size, size, 3), name=f"resnet18_{i}")
               for i in range(cfg["members"])]
    ensemble = ensembles.Ensemble(members)
    x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)),
                                    dtype="float32")
    for mode, fn in (("one graph", lambda: ensemble.predict_on_batch(x)),
                     ("members in turn", lambda: [m.predict_on_batch(x) for m in members])):
        rows.append(_row("keras", f"ensemble of {cfg['members']} zoo.resnet18", mode,
                         _rate(fn, batch, cfg["steps"], cfg["warmup"]), size))
        print(_line(rows[-1]), flush=True)
    return rows


def torch_rows(cfg, compiled):
    try:
        import torch
        import torchvision
    except ImportError:
        print("torchvision peers skipped: torch is not importable here", flush=True)
        return []
    if not torch.cuda.is_available():
        print("torchvision peers skipped: no CUDA device", flush=True)
        return []
    device = "cuda"
    batch, classes = cfg["batch"], cfg["classes"]
    builders = {
        "alexnet": (lambda: torchvision.models.alexnet(num_classes=classes), cfg["alexnet"]),
        "googlenet": (lambda: torchvision.models.googlenet(num_classes=classes,
                                                            aux_logits=False,
                                                            init_weights=False), cfg["size"]),
        "resnet50": (lambda: torchvision.models.resnet50(num_classes=classes), cfg["size"]),
    }
    rows = []
    for name, (build, size) in builders.items():
        x = torch.rand(batch, 3, size, size, device=device).contiguous(
            memory_format=torch.channels_last)
        y = torch.randint(0, classes, (batch,), device=device)
        for flavour in ["eager"] + (["torch.compile"] if name in compiled else []):
            model = build().to(device, memory_format=torch.channels_last)
            runner = torch.compile(model) if flavour == "torch.compile" else model
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss_fn = torch.nn.CrossEntropyLoss()

            def train():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = loss_fn(runner(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.synchronize()

            def infer():
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    runner(x)
                torch.cuda.synchronize()

            model.train()
            rows.append(_row(f"torchvision {flavour}", name, "train",
                             _rate(train, batch, cfg["steps"], cfg["warmup"]), size))
            print(_line(rows[-1]), flush=True)
            model.eval()
            rows.append(_row(f"torchvision {flavour}", name, "inference",
                             _rate(infer, batch, cfg["steps"], cfg["warmup"]), size))
            print(_line(rows[-1]), flush=True)
    return rows


def _row(framework, model, mode, images_per_s, size):
    return {"framework": framework, "model": model, "mode": mode,
            "images_per_s": round(images_per_s, 1), "size": size}


def _line(row):
    return (f"{row['framework']:<26} {row['model']:<28} {row['mode']:<16} "
            f"{row['images_per_s']:>10,.1f} img/s")


def ratios(rows):
    """The targets' ratios: ours over the peer, where both were measured."""
    def rate(framework, model, mode):
        found = [r["images_per_s"] for r in rows
                 if (r["framework"], r["model"], r["mode"]) == (framework, model, mode)]
        return found[0] if found else None

    pairs = [
        ("zoo.resnet50 train / torch.compile", ("keras", "zoo.resnet50", "train"),
         ("torchvision torch.compile", "resnet50", "train"), 1.0),
        ("zoo.googlenet train / torch.compile", ("keras", "zoo.googlenet", "train"),
         ("torchvision torch.compile", "googlenet", "train"), 1.2),
        ("zoo.resnet50 train / torchvision eager", ("keras", "zoo.resnet50", "train"),
         ("torchvision eager", "resnet50", "train"), None),
        ("zoo.googlenet train / torchvision eager", ("keras", "zoo.googlenet", "train"),
         ("torchvision eager", "googlenet", "train"), None),
        ("two-tower / one-tower AlexNet train", ("keras", "zoo.alexnet (two towers)", "train"),
         ("keras", "zoo.alexnet (one tower)", "train"), 0.95),
        ("one-graph ensemble / members in turn",
         ("keras", "ensemble of 5 zoo.resnet18", "one graph"),
         ("keras", "ensemble of 5 zoo.resnet18", "members in turn"), 1.5),
        *[(f"zoo.{name} train: product step / hand-jitted step",
           ("keras", f"zoo.{name}", "train"), ("keras", f"zoo.{name}", "train, hand-jitted"),
           None) for name in ("resnet50", "googlenet", "alexnet (two towers)")],
        ("one-graph ensemble / members in turn (smoke)",
         ("keras", "ensemble of 2 zoo.resnet18", "one graph"),
         ("keras", "ensemble of 2 zoo.resnet18", "members in turn"), None),
    ]
    out = []
    for label, ours, peer, target in pairs:
        a, b = rate(*ours), rate(*peer)
        if a and b:
            out.append({"ratio": label, "value": round(a / b, 3), "target": target})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/gpu_results.csv")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one step: every Keras path on the CPU")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--compile", nargs="*", default=["resnet50", "googlenet"],
                        help="torchvision models also timed under torch.compile")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    import keras

    device = "cpu"
    if keras.backend.backend() == "jax":
        import jax

        device = str(jax.devices()[0].device_kind)
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, {device}; batch "
          f"{cfg['batch']}, {args.precision}, {cfg['size']}x{cfg['size']} "
          f"({cfg['alexnet']} for AlexNet)", flush=True)
    rows = keras_rows(cfg, args.precision)
    if not args.no_torch and not args.smoke:
        rows += torch_rows(cfg, set(args.compile))
    for row in rows:
        row.update(batch=cfg["batch"], precision=args.precision, device=device,
                   keras=keras.__version__, backend=keras.backend.backend(),
                   date=time.strftime("%Y-%m-%d"))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, args.out)
    print()
    for r in ratios(rows):
        target = f"(target >= {r['target']})" if r["target"] else ""
        print(f"{r['ratio']:<42} {r['value']:>6.3f}x {target}")
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
