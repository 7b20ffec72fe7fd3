"""Score a submission against a solution file, the local stand-in for the leaderboard:

    python -m visionlab.score SUBMISSION.csv SOLUTION.csv [--id-col image_id] [--label-col label]

The last line printed is the accuracy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from visionlab.data.problems import DataError, listing
from visionlab.data.tables import read_table


def score(
    submission: str | Path, solution: str | Path, id_col: str | None = None, label_col: str | None = None
) -> float:
    """Accuracy of the submission's labels on the solution's ids. Ids are matched by value, so row
    order does not matter; a missing or extra id is an error, as on a leaderboard."""
    sol_raw = pd.read_csv(solution, nrows=0, encoding="utf-8-sig") if Path(solution).is_file() else None
    if sol_raw is None:
        raise DataError(f"Solution file {solution} does not exist.")
    cols = [c.strip() for c in sol_raw.columns]
    id_col = id_col or cols[0]
    label_col = label_col or (cols[1] if len(cols) > 1 else "label")
    sol = read_table(Path(solution), id_col, label_col, "Solution file", "--id-col", "--label-col")
    sub = read_table(Path(submission), id_col, label_col, "Submission", "--id-col", "--label-col")
    truth = dict(zip(sol[id_col], sol[label_col]))
    given = dict(zip(sub[id_col], sub[label_col]))
    missing = [i for i in truth if i not in given]
    extra = [i for i in given if i not in truth]
    if missing or extra:
        raise DataError(
            f"Submission {submission} does not cover the solution's ids: {len(missing)} missing, "
            f"{len(extra)} unknown.\n{listing([f'missing {i}' for i in missing] + [f'unknown {i}' for i in extra])}"
        )
    return sum(given[i] == label for i, label in truth.items()) / len(truth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visionlab.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("submission")
    parser.add_argument("solution")
    parser.add_argument("--id-col", default=None, help="id column (default: the solution's first column)")
    parser.add_argument("--label-col", default=None, help="label column (default: the solution's second column)")
    args = parser.parse_args(argv)
    try:
        acc = score(args.submission, args.solution, args.id_col, args.label_col)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = len(pd.read_csv(args.solution, encoding="utf-8-sig"))
    print(f"{args.submission}: {round(acc * n)}/{n} correct")
    print(f"accuracy {acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
