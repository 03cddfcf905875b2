"""Everything a GPU run has to show, in one command:

    python -m tools.gpu_report                 # on a machine with CUDA: the real sizes
    python -m tools.gpu_report --tiny          # the same path at toy sizes (any machine)

1. The training steps of tools/benchmark.py at the published run's sizes (a bert-base-shaped
   teacher, 12 x 768; T4-tiny; batch 32, length 128) under fp16 and under bf16: steps/s, the
   ratio to the bare step, peak GPU memory, and the projected time of the published 40-epoch
   run on MNLI (40 x 12,272 steps).
2. The levers of issue 27, in bf16, one row each with the projected 40-epoch run: the
   GeneralDistiller step as today (eager, length 128), with the teacher cast to bf16 under
   torch.inference_mode (--teacher_dtype), then compiled too (--compile: CUDA graphs), and
   compiled on the lengths of an MNLI-like histogram, with random and with grouped batches
   (--group_by_length). Each row times whole epochs of --lever_examples examples after a
   warm-up epoch that compiles every shape.
3. The steps of part 1 and the compiled step of part 2 under
   torch.cuda.set_sync_debug_mode("warn"): every place a step waits for the host is listed.
   The one allowed per step is EMDDistiller's transport-plan solve (a small matrix copied to
   the CPU for pyemd); the trainer's log line (every --PRINT_EVERY steps) and the logit
   cache's check at the end of an epoch are reported apart. Anything else makes the command
   exit with 1.
4. Evaluation throughput.

Without CUDA, parts 1, 2 and 4 run on the CPU in float32 (the half teacher in bf16) and part
3 says it was skipped. tools/gpu_check.sh runs it all, installation included.
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
from pipeline.compiling import BACKEND
from tools import benchmark

PUBLISHED_STEPS = 40 * -(-benchmark.MNLI_TRAIN_PAIRS // 32)  # 40 epochs of batch 32
REAL_SIZES = ["--teacher_layers", "12", "--teacher_hidden", "768", "--batch", "32", "--length", "128"]
TINY_SIZES = [*benchmark.TINY_SIZES, "--eval_examples", "64"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the path, measures nothing")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sync_steps", type=int, default=4, help="steps of each configuration under the sync check"
    )
    parser.add_argument(
        "--lever_examples", type=int, default=3200, help="examples of a lever's epoch (3200: 100 steps)"
    )
    parser.add_argument("--lever_rounds", type=int, default=3, help="timed epochs of each lever")
    parser.add_argument(
        "--compile_backend", default=BACKEND, help=f"torch.compile's backend (default {BACKEND})"
    )
    return parser.parse_args(argv)


def benchmark_args(args, device, precision):
    sizes = TINY_SIZES if args.tiny else REAL_SIZES
    flags = {"fp16": ["--fp16"], "bf16": ["--bf16"], "no": []}[precision]
    lever_examples = min(args.lever_examples, 40) if args.tiny else args.lever_examples
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
            "--lever_examples",
            str(lever_examples),
            "--lever_rounds",
            str(args.lever_rounds),
            "--compile_backend",
            args.compile_backend,
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


def lever_configurations(teacher_dtype, length):
    """(row, batch lengths, Lever) of the levers' table, each row adding a lever to the one above."""
    half, full = f"teacher in {teacher_dtype}", f"all {length} tokens"
    return [
        ("eager (today)", full, benchmark.Lever("eager")),
        (half, full, benchmark.Lever("half", teacher_dtype=teacher_dtype)),
        (f"{half}, compiled", full, benchmark.Lever("compiled", True, False, teacher_dtype)),
        (f"{half}, compiled", "MNLI-like, random", benchmark.Lever("mnli", True, False, teacher_dtype)),
        (f"{half}, compiled", "MNLI-like, grouped", benchmark.Lever("grouped", True, True, teacher_dtype)),
    ]


def levers_table(setup, configurations):
    """The levers' table, and the LeverEpoch of each row by its Lever's name (for the sync check)."""
    args = setup.args
    generator = torch.Generator().manual_seed(args.seed + 4)
    mnli_like = benchmark.mnli_like_lengths(args.lever_examples, args.length, generator)
    histograms = {
        f"all {args.length} tokens": torch.full((args.lever_examples,), args.length),
        "MNLI-like, random": mnli_like,
        "MNLI-like, grouped": mnli_like,
    }
    pairs = [(histogram, lever) for _, histogram, lever in configurations]
    times, (compile_seconds, graphs), recompiled = benchmark.time_levers(setup, pairs, histograms)
    number_format = {"no": "float32"}.get(benchmark.precision(args), benchmark.precision(args))
    lines = [
        f"### The levers: GeneralDistiller, {number_format}, {args.device}, batch {args.batch}, "
        f"epochs of {args.lever_examples} examples (median of {args.lever_rounds})",
        "",
        "| configuration | batch lengths | steps/s | ratio to the first row | 40 epochs of MNLI |",
        "|---|---|---:|---:|---:|",
    ]
    first = None
    for row, histogram, lever in configurations:
        seconds, epoch = times[histogram, lever.name]
        step = seconds / epoch.steps
        first = first or step
        hours = step * PUBLISHED_STEPS / 3600
        lines.append(f"| {row} | {histogram} | {1 / step:.2f} | {step / first:.3f}x | {hours:.2f} h |")
    lines += [
        "",
        f"Compilation ({args.compile_backend}): {compile_seconds:.1f} s, {graphs} graphs; graphs "
        f"compiled during the timed epochs: {recompiled}. MNLI-like lengths: generated, 40 word pieces "
        f"on average with a long tail (tools/benchmark.py, mnli_like_lengths).",
    ]
    epochs = {lever.name: times[histogram, lever.name][1] for _, histogram, lever in configurations}
    return "\n".join(lines), epochs


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


def sync_check(setup, num_steps, more_steps):
    """{configuration: [(where, count)]} of the host waits during num_steps steps of
    benchmark.build_steps and of more_steps ({name: object with run(num_steps)}), and whether
    all of them are expected."""
    torch.cuda.set_sync_debug_mode("warn")
    found, clean = {}, True
    try:
        for name, step in {**benchmark.build_steps(setup), **more_steps}.items():
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
        lever_setup = benchmark.Setup(benchmark_args(args, device, "bf16" if cuda else "no"), workdir)
        configurations = lever_configurations("bf16", lever_setup.args.length)
        table, lever_epochs = levers_table(lever_setup, configurations)
        print()
        print(table)
        print()
        print("### Host waits during training steps")
        if cuda:
            compiled = {"GeneralDistiller, teacher in bf16, compiled (bf16)": lever_epochs["compiled"]}
            found, clean = sync_check(setup, args.sync_steps, compiled)
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
