"""Print a results table from finished runs: the last evaluation of each run's output folder.

    python -m tools.report "Teacher=out/teacher" "T4-tiny distilled=out/t4" ... [--json results.json]

Each folder holds eval_results.jsonl (written by main.py after every checkpoint) and, when the
runner recorded it, seconds.txt (the run's wall time). A column per dev set: its accuracy (a
regression task's: Pearson's r); MNLI's are named dev_matched and dev_mismatched. A row whose
last evaluation carries warnings (a student that stopped learning: student_check.py) is marked
(!), with a line under the table. --parallel N says that the runs shared the machine N at a time:
a row's wall time is then its own run's, not what it would take alone.
"""

import argparse
import json
import os
import sys

from distillation import atomic_write_text
from pipeline.evaluation import scores_of

SET_NAMES = {"mnli": "dev_matched", "mnli-mm": "dev_mismatched"}  # as the README's tables say
WARNINGS = {  # what each kind of student_check.py's warnings says, in a line under the table
    "stalled_loss": "stopped learning: its loss sat at a constant prediction's",
    "at_baseline": "no better than always answering the most frequent label",
}
MARK = " (!)"


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
                "warnings": [warning["kind"] for warning in result.get("warnings", [])],
            }
        )
    return rows


def markdown(rows, parallel=1):
    """A table with a column per dev set of the first row (all rows evaluate one task), then a
    line per marked row; parallel: how many runs shared the machine at a time."""
    sets = [key for key in rows[0] if key not in ("model", "step", "metric", "seconds", "warnings")]
    time = "wall time" if parallel == 1 else f"wall time ({parallel} runs at a time)"
    lines = [
        "| model | "
        + " | ".join(f"{SET_NAMES.get(s, s)} {rows[0]['metric']}" for s in sets)
        + f" | {time} |",
        "|---|" + "---:|" * (len(sets) + 1),
    ]
    notes = []
    for row in rows:
        seconds = f"{row['seconds']:.0f} s" if row["seconds"] is not None else "-"
        cells = " | ".join(f"{100 * row[s]:.1f}" if s in row else "-" for s in sets)
        mark = MARK if row["warnings"] else ""
        lines.append(f"| {row['model']}{mark} | {cells} | {seconds} |")
        if row["warnings"]:
            said = "; ".join(WARNINGS.get(kind, kind) for kind in row["warnings"])
            notes.append(
                f"{MARK.strip()} {row['model']}: {said} (the warnings in its eval_results.jsonl and log)"
            )
    if parallel > 1:
        notes.append(
            f"Rows ran {parallel} at a time, each on its share of the cores: a row's time is its own "
            "run's, beside another; the rows' times add up to more than the whole took."
        )
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=FOLDER pairs, in table order")
    parser.add_argument("--json", help="Also write the rows to this JSON file.")
    parser.add_argument(
        "--parallel", type=int, default=1, help="How many of the runs shared the machine at a time."
    )
    args = parser.parse_args(argv)
    try:
        rows = collect(args.runs)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(markdown(rows, args.parallel))
    if args.json:  # written whole or not at all
        atomic_write_text(args.json, json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
