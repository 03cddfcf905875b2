"""Everything a GPU run has to show, in one command:

    python -m tools.gpu_report                 # on a machine with CUDA: the real sizes
    python -m tools.gpu_report --tiny          # the same path at toy sizes (any machine)

1. The training steps of tools/benchmark.py at the published run's sizes (a bert-base-shaped
   teacher, 12 x 768; T4-tiny; batch 32, length 128) under fp16 and under bf16: steps/s, the
   ratio to the bare step, peak GPU memory, and the projected time of the published 40-epoch
   run on MNLI (40 x 12,272 steps).
2. The same steps under torch.cuda.set_sync_debug_mode("warn"): every place a step waits for
   the host is listed. The one allowed per step is EMDDistiller's transport-plan solve (a
   small matrix copied to the CPU for pyemd); the trainer's log line (every --PRINT_EVERY
   steps) and the logit cache's check at the end of an epoch are reported apart. Anything
   else makes the command exit with 1.
3. Evaluation throughput.

Without CUDA, parts 1 and 3 run on the CPU in float32 and part 2 says it was skipped.
"""

import argparse
import ast
import functools
import inspect
import sys
import tempfile
import warnings

import torch

from distillation import logit_cache, loss_log
from distiller_emd import EMDDistiller
from tools import benchmark

PUBLISHED_STEPS = 40 * -(-benchmark.MNLI_TRAIN_PAIRS // 32)  # 40 epochs of batch 32
REAL_SIZES = ["--teacher_layers", "12", "--teacher_hidden", "768", "--batch", "32", "--length", "128"]
TINY_SIZES = [
    "--teacher_layers",
    "12",
    "--teacher_hidden",
    "64",
    "--student_layers",
    "4",
    "--student_hidden",
    "32",
    "--student_heads",
    "2",
    "--student_intermediate",
    "64",
    "--batch",
    "4",
    "--length",
    "16",
    "--eval_examples",
    "64",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the path, measures nothing")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sync_steps", type=int, default=4, help="steps of each configuration under the sync check"
    )
    return parser.parse_args(argv)


def benchmark_args(args, device, precision):
    sizes = TINY_SIZES if args.tiny else REAL_SIZES
    flags = {"fp16": ["--fp16"], "bf16": ["--bf16"], "no": []}[precision]
    return benchmark.parse_args(
        [
            *sizes,
            *flags,
            "--device",
            device,
            "--steps",
            str(args.steps),
            "--rounds",
            str(args.rounds),
            "--warmup",
            "2",
            "--threads",
            str(torch.get_num_threads()),
        ]
    )


def timing_table(setup, precision):
    step_times, peaks = benchmark.time_steps(setup, benchmark.build_steps(setup))
    bare = step_times["bare step"]
    lines = [
        f"### {precision}, {setup.args.device}",
        "",
        "| configuration | steps/s | ratio to the bare step | peak GPU memory | 40 epochs of MNLI |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds in step_times.items():
        peak = f"{peaks[name] / 2**20:,.0f} MiB" if name in peaks else "-"
        lines.append(
            f"| {name} | {1 / seconds:.2f} | {seconds / bare:.3f}x | {peak} | "
            f"{seconds * PUBLISHED_STEPS / 3600:.1f} h |"
        )
    return "\n".join(lines)


# Where a wait for the host is expected: (file, function) -> what it is.
EXPECTED_SYNCS = {
    (
        inspect.getsourcefile(EMDDistiller),
        "compute_loss",
    ): "EMD's transport-plan solve (exempt: one a step, its distances out and its plan back)",
    (inspect.getsourcefile(loss_log), "write"): "the log line (every --PRINT_EVERY steps)",
    (
        inspect.getsourcefile(loss_log),
        "check_finite",
    ): "the finite-loss check (with each log line and checkpoint)",
    (inspect.getsourcefile(logit_cache), "end_epoch"): "the logit cache's check (once per epoch)",
}


@functools.lru_cache(maxsize=None)
def function_spans(filename):
    """(first line, last line, name) of every function and method defined in `filename`."""
    try:
        with open(filename, encoding="utf-8") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):  # e.g. '<frozen ...>'
        return ()
    return tuple(
        (node.lineno, node.end_lineno, node.name)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    )


def function_at(filename, lineno):
    """The name of the outermost function (a method, for a class) of `filename` whose source
    holds line `lineno`, or None."""
    spans = [
        (last - first, name) for first, last, name in function_spans(filename) if first <= lineno <= last
    ]
    return max(spans)[1] if spans else None


def sync_check(setup, num_steps):
    """{configuration: [(where, count)]} of the host waits during num_steps steps, and whether
    all of them are expected."""
    torch.cuda.set_sync_debug_mode("warn")
    found, clean = {}, True
    try:
        for name, step in benchmark.build_steps(setup).items():
            step.run(2)  # warm-up, outside the check
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                step.run(num_steps)
            counts = {}
            for warning in caught:
                if "synchronizing" not in str(warning.message):
                    continue
                where = (warning.filename, function_at(warning.filename, warning.lineno))
                label = EXPECTED_SYNCS.get(where) or f"UNEXPECTED {warning.filename}:{warning.lineno}"
                clean &= where in EXPECTED_SYNCS
                counts[label] = counts.get(label, 0) + 1
            found[name] = sorted(counts.items())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return found, clean


def main(argv=None):
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    precisions = ["fp16", "bf16"] if cuda else ["no"]
    print(f"Machine: {benchmark.machine_description(torch.device(device))}")
    print(
        f"Published run: {PUBLISHED_STEPS:,} steps (40 epochs of {benchmark.MNLI_TRAIN_PAIRS:,} pairs, batch 32)"
    )
    clean = True
    with tempfile.TemporaryDirectory(prefix="gpu-report-") as workdir:
        for precision in precisions:
            setup = benchmark.Setup(benchmark_args(args, device, precision), workdir)
            print()
            print(timing_table(setup, precision))
        print()
        print("### Host waits during training steps")
        if cuda:
            found, clean = sync_check(setup, args.sync_steps)
            print(f"({args.sync_steps} steps of each configuration, {precisions[-1]})")
            for name, waits in found.items():
                listed = "; ".join(f"{label}: {count}" for label, count in waits) or "none"
                print(f"- {name}: {listed}")
        else:
            print("skipped: torch.cuda.set_sync_debug_mode needs CUDA")
        print()
        rate = benchmark.time_evaluation(setup)
        print(f"Evaluation: {rate:,.0f} examples/s (batch 128, length {setup.args.length})")
    if not clean:
        print("A training step waits for the host where it should not (UNEXPECTED above).")
        sys.exit(1)


if __name__ == "__main__":
    main()
