"""``make bench``: every benchmark, one table of side-by-side ratios, also written as CSV."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pandas as pd  # noqa: E402

from safeio import check_writable_file, write_csv  # noqa: E402
from safeio.checks import UserError  # noqa: E402

import ensemble_vs_sequential  # noqa: E402
import flops_vs_matmul  # noqa: E402
import folder_scan  # noqa: E402
import pipeline_vs_training  # noqa: E402
import serving_runtimes  # noqa: E402
import step_overhead  # noqa: E402
import zoo_vs_keras  # noqa: E402

BENCHMARKS = [zoo_vs_keras.run, ensemble_vs_sequential.run, pipeline_vs_training.run,
              flops_vs_matmul.run, folder_scan.run, serving_runtimes.run, step_overhead.run]


def main(argv=None):
    """Each benchmark's rows are written as they come, to ``OUT``'s ``.partial.csv`` (one
    that fails keeps the others'), and the whole table to ``OUT`` at the end (a failed run
    leaves the previous whole table there)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results.csv",
                        help="the table's CSV (default: benchmarks/results.csv)")
    out = parser.parse_args(argv).out
    partial = os.path.splitext(out)[0] + ".partial.csv"
    try:  # (both before the first benchmark, not after every one has run)
        for path in (out, partial):
            check_writable_file(path)
        _check_ours(partial)
    except (UserError, OSError) as err:  # (an OSError names its file)
        parser.error(str(err))
    rows = []
    for run in BENCHMARKS:
        print(f"running {run.__module__} ...", flush=True)
        result = run()  # one row, or a list of rows
        rows.extend(result if isinstance(result, list) else [result])
        write_csv(pd.DataFrame(rows), partial, index=False)
    print(pd.DataFrame(rows).to_string(index=False))
    write_csv(pd.DataFrame(rows), out, index=False)
    os.remove(partial)
    print(f"wrote {out}")


def _check_ours(partial):
    """A file at ``partial`` is a failed run's table (this script's header), never a user's
    of the same name, which the run would write over and then delete."""
    if not os.path.exists(partial):
        return
    with open(partial, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\n")
    if not header.startswith("benchmark,ours,"):  # (common.result_row's first columns)
        raise UserError(f"{partial} is there and is not a table of this script's (its first "
                        f"line is {header[:60]!r}, not the columns benchmark,ours,...): "
                        "move it, or give another --out.")


if __name__ == "__main__":
    main()
