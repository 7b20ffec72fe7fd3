"""Wall time of the design card's sweep (4 jobs: model.bn=true,false optimizer=sgd,adam), run one job
after another (Hydra's basic launcher, as `python train.py -m ...` does by default) and in parallel
(hydra/launcher=joblib: one job per core, each with its share of torch threads), on the same machine
in the same run.

    python benchmarks/sweep_parallel.py [--subset 2000] [--epochs 3] [--repeats 1] [--cores N]

Each side is the real command line in a fresh process (interpreter start, imports and the final
summary included), in its own temporary folder. With --repeats > 1 the order alternates
(sequential first, then parallel first, ...) so that a busy neighbour slows both alike; the ratio is
the median over the pairs. --cores N pins both sides to the first N cores (taskset), to see how
the ratio grows with the machine. Prints the machine's load average before and after: the figures
mean little while something else runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["-m", "model.bn=true,false", "optimizer=sgd,adam"]


def run_sweep(parallel: bool, args) -> float:
    extra = ["hydra/launcher=joblib"] if parallel else []
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        *SWEEP,
        f"data.subset={args.subset}",
        f"trainer.max_epochs={args.epochs}",
        "callbacks.early_stopping=null",
        *extra,
    ]
    if args.cores:
        cmd = ["taskset", "-c", f"0-{args.cores - 1}", *cmd]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory(prefix="vl_sweep_bench_") as cwd:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        [summary] = Path(cwd).glob("outputs/train/multiruns/*/summary.csv")
        df = pd.read_csv(summary)
        if len(df) != 4 or set(df["status"]) != {"completed"}:
            sys.exit(f"error: the sweep did not complete its 4 jobs:\n{df[['run', 'status']]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=2000, help="training images per job (data.subset)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per job (trainer.max_epochs)")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of (sequential, parallel) sweeps")
    parser.add_argument("--cores", type=int, default=None, help="pin both sides to this many cores")
    args = parser.parse_args()
    cores = args.cores or len(os.sched_getaffinity(0))
    print(
        f"design-card sweep: 4 jobs, data.subset={args.subset}, trainer.max_epochs={args.epochs}, {cores} cores; "
        f"load average before: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    pairs = []
    for i in range(args.repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        times = {}
        for parallel in order:
            times[parallel] = run_sweep(parallel, args)
            print(
                f"  {'parallel (hydra/launcher=joblib)' if parallel else 'sequential (default launcher)':34s}"
                f" {times[parallel]:6.1f} s",
                flush=True,
            )
        pairs.append((times[False], times[True]))
    seq = statistics.median(s for s, _ in pairs)
    par = statistics.median(p for _, p in pairs)
    ratio = statistics.median(p / s for s, p in pairs)
    print(
        f"sequential: {seq:.1f} s\nparallel:   {par:.1f} s\n"
        f"ratio parallel / sequential: {ratio:.2f} (pairs: {', '.join(f'{p / s:.2f}' for s, p in pairs)})\n"
        f"load average after: {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
