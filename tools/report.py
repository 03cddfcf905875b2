"""Print a results table from finished runs: the last evaluation of each run's output folder.

    python -m tools.report "Teacher=out/teacher" "T4-tiny distilled=out/t4" ... [--json results.json]

Each folder holds eval_results.jsonl (written by main.py after every checkpoint) and, when the
runner recorded it, seconds.txt (the run's wall time). A column per dev set: its accuracy (a
regression task's: Pearson's r); MNLI's are named dev_matched and dev_mismatched.
"""

import argparse
import json
import os
import sys

from distillation import atomic_write_text
from pipeline.evaluation import scores_of

SET_NAMES = {"mnli": "dev_matched", "mnli-mm": "dev_mismatched"}  # as the README's tables say


def last_result(run_dir):
    path = os.path.join(run_dir, "eval_results.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no evaluation results; did the run finish?")
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty")
    return json.loads(lines[-1])


def wall_seconds(run_dir):
    path = os.path.join(run_dir, "seconds.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return float(f.read().strip())
    return None


def collect(named_dirs):
    rows = []
    for item in named_dirs:
        name, sep, run_dir = item.partition("=")
        if not sep:
            raise ValueError(f"expected NAME=FOLDER, got {item!r}")
        result = last_result(run_dir)
        scores = {dev_set: score for dev_set, score in scores_of(result).items() if dev_set != "All"}
        rows.append(
            {
                "model": name,
                "step": result["step"],
                **scores,
                "metric": "acc" if "acc" in result else "pearson",
                "seconds": wall_seconds(run_dir),
            }
        )
    return rows


def markdown(rows):
    """A table with a column per dev set of the first row (all rows evaluate one task)."""
    sets = [key for key in rows[0] if key not in ("model", "step", "metric", "seconds")]
    lines = [
        "| model | "
        + " | ".join(f"{SET_NAMES.get(s, s)} {rows[0]['metric']}" for s in sets)
        + " | wall time |",
        "|---|" + "---:|" * (len(sets) + 1),
    ]
    for row in rows:
        seconds = f"{row['seconds']:.0f} s" if row["seconds"] is not None else "-"
        cells = " | ".join(f"{100 * row[s]:.1f}" if s in row else "-" for s in sets)
        lines.append(f"| {row['model']} | {cells} | {seconds} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=FOLDER pairs, in table order")
    parser.add_argument("--json", help="Also write the rows to this JSON file.")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.runs)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(markdown(rows))
    if args.json:  # written whole or not at all
        atomic_write_text(args.json, json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
