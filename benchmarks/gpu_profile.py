"""Where a training step's device time goes, layer by layer, for the models of
``benchmarks/gpu.py``: the step ``zoo.train`` compiles, run by ``fit`` under JAX's profiler.

Each model runs in a process of its own, which dumps its optimised HLO
(``XLA_FLAGS=--xla_dump_to``) and writes a trace (``jax.profiler``, Perfetto's JSON). Each
kernel or thunk in the trace names the HLO instruction it ran (``hlo_op``); the HLO's
metadata names the JAX operation it came from, whose path holds the Keras layer:
``jit(train_step)/jvp(conv2_tower1)/...`` is that layer's forward pass,
``.../transpose(jvp(conv2_tower1))/...`` its backward pass, ``paper_sgd`` the optimizer.
The tables sum the device time of one step per layer, and per stage (the towers of the
two-tower AlexNet summed, ``conv2_tower1`` + ``conv2_tower2`` = ``conv2``), side by side
for the models profiled. On a GPU, XLA's command buffers (CUDA graphs) are turned off in
the profiled process, so that each kernel keeps its name.

``--smoke`` runs it on the CPU with tiny sizes (a test in ``make test-all``): there the
trace's events are XLA:CPU's thunks, on the same HLO names.

Run: ``KERAS_BACKEND=jax python benchmarks/gpu_profile.py --models alexnet alexnet2
--out profile/`` (names: alexnet, alexnet2, googlenet, resnet50).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# Short names for benchmarks/gpu.py's models.
MODELS = {"alexnet": "alexnet (one tower)", "alexnet2": "alexnet (two towers)",
          "googlenet": "googlenet", "resnet50": "resnet50"}
ASSIGNMENT = re.compile(r"^\s+(?:ROOT )?%?([\w.\-]+) = .*?\s([a-z][\w\-]*)\(")
COMPUTATION = re.compile(r"^%?([\w.\-]+) .*\{\s*$")
PART = re.compile(r"^(?:transpose\()?jvp\(([^()]+)\)\)?$")


def run_child(name, directory, steps, smoke):
    """Profile ``name``'s step in this process: the HLO dump and the trace under
    ``directory`` (XLA_FLAGS were set by the parent before JAX started)."""
    import jax
    import keras

    from benchmarks import gpu
    from benchmarks.common import epoch_timer
    from zoo.optimizers import compile_model

    cfg = gpu.SMOKE if smoke else gpu.FULL
    keras.config.set_dtype_policy("mixed_bfloat16")
    build, size, _ = gpu.keras_models(cfg)[MODELS[name]]
    model = build((size, size, 3))
    compile_model(model, learning_rate=0.01, jit_compile=True)
    batch = cfg["batch"]
    x = keras.random.uniform((batch, size, size, 3), 0, 255, seed=0)
    y = keras.random.randint((batch,), 0, cfg["classes"], seed=1)

    timer, times = epoch_timer()  # the epoch's steps, not fit's set-up
    model.fit(gpu.repeated(x, y), steps_per_epoch=2, epochs=1, verbose=0)  # compiles
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # the device's kernels, not every Python call
    jax.profiler.start_trace(os.path.join(directory, "trace"), create_perfetto_trace=True,
                             profiler_options=options)
    model.fit(gpu.repeated(x, y), steps_per_epoch=steps, epochs=1, verbose=0,
              callbacks=[timer])
    jax.profiler.stop_trace()
    wall = times[-1] / steps
    with open(os.path.join(directory, "wall.json"), "w") as f:
        json.dump({"seconds_per_step": wall, "steps": steps}, f)


def op_names(dump_dir):
    """``{HLO instruction: op_name}`` of the training step's optimised HLO. A fusion with no
    metadata of its own takes its fused computation's most common op_name; with none there
    either (XLA:CPU's library fusions), ``"?/(convolution, no metadata)"``, after the
    operation its computation ends in."""
    paths = glob.glob(os.path.join(dump_dir, "*jit_train_step*after_optimizations.txt"))
    if not paths:
        raise FileNotFoundError(f"no optimised HLO of jit_train_step in {dump_dir}")
    names, calls = {}, {}
    inside, roots = collections.defaultdict(collections.Counter), {}
    for path in paths:
        computation = None
        with open(path, encoding="utf-8") as f:
            for line in f:
                header = COMPUTATION.match(line)
                if header and "=" not in line.split("{")[0]:
                    computation = header.group(1)
                    continue
                assigned = ASSIGNMENT.match(line)
                if not assigned:
                    continue
                instruction, opcode = assigned.groups()
                if line.lstrip().startswith("ROOT"):
                    roots[computation] = opcode
                called = re.search(r"calls=%?([\w.\-]+)", line)
                if called:
                    calls[instruction] = called.group(1)
                op_name = re.search(r'op_name="([^"]*)"', line)
                if op_name:
                    names[instruction] = op_name.group(1)
                    inside[computation][op_name.group(1)] += 1
                else:
                    names.setdefault(instruction, f"?/({opcode}, no metadata)")
    for instruction, called in calls.items():
        if names[instruction].startswith("?/"):
            names[instruction] = (inside[called].most_common(1)[0][0] if inside.get(called)
                                  else f"?/({roots.get(called, 'fusion')}, no metadata)")
    return names


def layer_of(op_name):
    """``("conv2_tower1", "backward")`` for an op of that layer's backward pass;
    ``("optimizer", "update")``, or the operation's own name, for what no layer owns."""
    parts = op_name.split("/")[1:]
    if not parts:
        return "(unnamed)", "other"
    if parts[0] == "paper_sgd" or "optimizer" in parts[0]:
        return "optimizer", "update"
    found = PART.match(parts[0])
    if found:
        return found.group(1), "backward" if parts[0].startswith("transpose(") else "forward"
    return parts[0].strip('"'), "other"


def device_time(trace_dir):
    """``{hlo_op: microseconds}`` summed over the trace: the GPU's kernels where the trace
    has a GPU, else every event naming an HLO instruction of the training step."""
    paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(paths[0], "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    processes = {e["pid"]: e.get("args", {}).get("name", "") for e in events
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    # The accelerator's events ("/device:GPU:0"), not the host's ("/host:CPU") launching them.
    gpus = {pid for pid, name in processes.items()
            if name.startswith("/device:") and "CPU" not in name}
    total = collections.Counter()
    for e in events:
        args = e.get("args") or {}
        if (e.get("ph") == "X" and "hlo_op" in args
                and "train_step" in args.get("hlo_module", "train_step")
                and (not gpus or e["pid"] in gpus)):
            total[args["hlo_op"]] += float(e.get("dur", 0))
    if not total:
        raise RuntimeError(
            f"no event of {paths[0]} names an HLO instruction of the training step (an "
            f"'hlo_op' argument); its processes: {sorted(processes.values())}")
    return total


def layer_table(directory):
    """Rows ``{layer, stage, direction, ms_per_step}`` and the step's wall time."""
    with open(os.path.join(directory, "wall.json")) as f:
        wall = json.load(f)
    names = op_names(os.path.join(directory, "hlo"))
    sums = collections.Counter()
    for op, micros in device_time(os.path.join(directory, "trace")).items():
        sums[layer_of(names.get(op, f"?/{op}"))] += micros
    rows = [{"layer": layer, "stage": re.sub(r"_tower\d+$", "", layer), "direction": direction,
             "ms_per_step": micros / 1000 / wall["steps"]}
            for (layer, direction), micros in sums.items()]
    return sorted(rows, key=lambda r: -r["ms_per_step"]), wall["seconds_per_step"] * 1000


def profile(name, out, steps, smoke):
    """Profile ``name`` in a child process; its files go to a new folder under ``out``."""
    directory = os.path.join(out, name, time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(directory)
    # Without the compilation cache: a step loaded from it is not compiled, so not dumped.
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_ENABLE_COMPILATION_CACHE": "false",
           "XLA_FLAGS": " ".join([os.environ.get("XLA_FLAGS", ""),
                                  f"--xla_dump_to={os.path.join(directory, 'hlo')}",
                                  "--xla_dump_hlo_as_text",
                                  "--xla_dump_hlo_module_re=.*train_step.*",
                                  *([] if smoke else ["--xla_gpu_enable_command_buffer="])])}
    command = [sys.executable, os.path.abspath(__file__), "--child", name, "--out", directory,
               "--steps", str(steps)] + (["--smoke"] if smoke else [])
    subprocess.run(command, env=env, check=True)
    return layer_table(directory)


def print_tables(tables):
    import pandas as pd

    frames = []
    for name, (rows, wall_ms) in tables.items():
        frame = pd.DataFrame(rows)
        device_ms = frame["ms_per_step"].sum()
        print(f"\n{MODELS[name]}: {wall_ms:.2f} ms a step (wall), {device_ms:.2f} ms of it "
              f"in the step's kernels")
        by_layer = frame.pivot_table(index="layer", columns="direction",
                                     values="ms_per_step", aggfunc="sum", fill_value=0.0)
        by_layer["total"] = by_layer.sum(axis=1)
        by_layer["share"] = by_layer["total"] / device_ms
        print(by_layer.sort_values("total", ascending=False).head(25).round(3).to_string())
        frames.append(frame.assign(model=name))
    if len(frames) > 1:
        both = pd.concat(frames)
        stages = both.pivot_table(index="stage", columns="model", values="ms_per_step",
                                  aggfunc="sum", fill_value=0.0)
        stages.loc["(all)"] = stages.sum()
        print("\nms a step, per stage (towers summed), side by side:")
        print(stages.sort_values(stages.columns[0], ascending=False).round(3).to_string())
    return frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "alexnet2"],
                        choices=sorted(MODELS))
    parser.add_argument("--out", default="profile")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, on the CPU")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:  # (0: fit's "until the data ends" on an endless generator, for ever)
        parser.error(f"--steps must be at least 1; received {args.steps}.")
    if args.child:
        return run_child(args.child, args.out, args.steps, args.smoke)
    tables = {name: profile(name, args.out, args.steps, args.smoke) for name in args.models}
    frames = print_tables(tables)
    for frame in frames:
        path = os.path.join(args.out, f"layers_{frame['model'].iloc[0]}.csv")
        frame.to_csv(path, index=False)
    print(f"\nwrote {args.out}/layers_*.csv")
    return tables


if __name__ == "__main__":
    main()
