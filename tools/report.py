"""Print a results table from finished runs: the last evaluation of each run's output folder.

    python tools/report.py "Teacher=out/teacher" "T4-tiny distilled=out/t4" ... [--json results.json]

Each folder holds eval_results.jsonl (written by main.py after every checkpoint) and, when the
runner recorded it, seconds.txt (the run's wall time).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository

from distillation.io import atomic_write_text  # noqa: E402


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
        rows.append({"model": name, "step": result["step"], "mnli": result["acc"]["mnli"],
                     "mnli-mm": result["acc"]["mnli-mm"], "seconds": wall_seconds(run_dir)})
    return rows


def markdown(rows):
    lines = ["| model | dev_matched acc | dev_mismatched acc | wall time |",
             "|---|---:|---:|---:|"]
    for row in rows:
        seconds = f"{row['seconds']:.0f} s" if row["seconds"] is not None else "-"
        lines.append(f"| {row['model']} | {100 * row['mnli']:.1f} | {100 * row['mnli-mm']:.1f} | {seconds} |")
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
