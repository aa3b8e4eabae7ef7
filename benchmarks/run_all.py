"""``make bench``: every benchmark, one table of side-by-side ratios, also written as CSV."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pandas as pd  # noqa: E402

import ensemble_vs_sequential  # noqa: E402
import flops_vs_matmul  # noqa: E402
import folder_scan  # noqa: E402
import pipeline_vs_training  # noqa: E402
import serving_runtimes  # noqa: E402
import step_overhead  # noqa: E402
import zoo_vs_keras  # noqa: E402

BENCHMARKS = [zoo_vs_keras.run, ensemble_vs_sequential.run, pipeline_vs_training.run,
              flops_vs_matmul.run, folder_scan.run, serving_runtimes.run, step_overhead.run]


def main(out_path="benchmarks/results.csv"):
    """Each benchmark's rows are written as they come, to ``results.partial.csv`` (one that
    fails keeps the others'), and the whole table to ``out_path`` at the end (a failed run
    leaves the previous whole table there)."""
    rows, partial = [], out_path[:-len(".csv")] + ".partial.csv"
    for run in BENCHMARKS:
        print(f"running {run.__module__} ...", flush=True)
        result = run()  # one row, or a list of rows
        rows.extend(result if isinstance(result, list) else [result])
        _write(pd.DataFrame(rows), partial)
    print(pd.DataFrame(rows).to_string(index=False))
    _write(pd.DataFrame(rows), out_path)
    os.remove(partial)
    print(f"wrote {out_path}")


def _write(table, out_path):
    tmp = out_path + ".tmp"
    table.to_csv(tmp, index=False)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
