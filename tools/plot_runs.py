"""Pictures of runs: the loss terms over the steps and the dev accuracy at each checkpoint.

    python -m tools.plot_runs out/alone "distilled=out/T4tiny" --output runs.png

Each run is a folder written by main.py (metrics.jsonl, eval_results.jsonl), optionally named
NAME=FOLDER; several runs are drawn over each other, one colour each. Needs matplotlib, an
optional dependency: pip install matplotlib.
"""

import argparse
import json
import os
import sys

from distillation import atomic_path
from pipeline.evaluation import scores_of

NOT_LOSSES = ("step", "epoch", "lr")
DEV_SETS = {"mnli": ("dev matched", "-"), "mnli-mm": ("dev mismatched", "--")}  # others: their names


def read_jsonl(path):
    """The records of a JSON lines file; an unreadable line is reported with its number."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error.msg})") from None
    return records


def read_run(run_dir):
    """{'losses': {term: ([steps], [values])}, 'accuracy': {dev set: ([steps], [acc])}}."""
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    results_path = os.path.join(run_dir, "eval_results.jsonl")
    if not (os.path.isfile(metrics_path) or os.path.isfile(results_path)):
        raise FileNotFoundError(
            f"{run_dir}: neither metrics.jsonl nor eval_results.jsonl; is it a run's output folder?"
        )
    losses, accuracy = {}, {}
    if os.path.isfile(metrics_path):
        for record in read_jsonl(metrics_path):
            if record.get("resumed"):  # the mark a resumed run leaves, not a measurement
                continue
            for term, value in record.items():
                if term not in NOT_LOSSES:
                    steps, values = losses.setdefault(term, ([], []))
                    steps.append(record["step"])
                    values.append(value)
    if os.path.isfile(results_path):
        for record in read_jsonl(results_path):
            for dev_set, score in scores_of(record).items():
                if dev_set != "All":
                    steps, values = accuracy.setdefault(dev_set, ([], []))
                    steps.append(record["step"])
                    values.append(100 * score)
    return {"losses": losses, "accuracy": accuracy}


def parse_run_names(items):
    """[(name, folder)] from FOLDER or NAME=FOLDER arguments (a folder alone is named by itself)."""
    runs = []
    for item in items:
        name, sep, folder = item.partition("=")
        runs.append((name, folder) if sep else (os.path.basename(os.path.normpath(item)), item))
    return runs


def draw(runs, output, title=None):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(11, 4), dpi=80)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    # One run: every loss term. Several: each run's total loss, so the legend stays readable.
    every_term = len(runs) == 1
    for i, (name, data) in enumerate(runs):
        colour = colours[i % len(colours)]
        terms = (
            sorted(data["losses"].items())
            if every_term
            else [(term, series) for term, series in data["losses"].items() if term == "loss"]
        )
        for j, (term, (steps, values)) in enumerate(terms):
            loss_axes.plot(
                steps,
                values,
                styles[j % len(styles)],
                color=colour,
                label=f"{name}: {term}" if every_term else name,
                linewidth=1.2,
            )
        for k, (dev_set, (steps, values)) in enumerate(data["accuracy"].items()):
            label, style = DEV_SETS.get(dev_set, (dev_set, styles[k % len(styles)]))
            acc_axes.plot(
                steps, values, style, marker="o", markersize=3, color=colour, label=f"{name}: {label}"
            )
    loss_axes.set(
        xlabel="step",
        ylabel="loss (mean since the last log line)",
        title="loss terms" if every_term else "total loss",
    )
    if any(v > 0 for _, data in runs for _, values in data["losses"].values() for v in values):
        loss_axes.set_yscale("log")
    acc_axes.set(xlabel="step", ylabel="accuracy (%)", title="dev accuracy at each checkpoint")
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(output) as tmp:  # never a half-drawn picture
        figure.savefig(tmp, format="png")
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="Run folders, or NAME=FOLDER.")
    parser.add_argument("--output", default="runs.png", help="The PNG to write.")
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("plot_runs.py needs matplotlib (an optional dependency): pip install matplotlib")
    try:
        runs = [(name, read_run(folder)) for name, folder in parse_run_names(args.runs)]
    except (ValueError, FileNotFoundError, KeyError) as error:
        sys.exit(f"plot_runs.py: error: {error}")
    draw(runs, args.output, args.title)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
