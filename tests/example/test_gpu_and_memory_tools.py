"""tools/gpu_report.py on its CPU path and tools/feature_memory.py at a tiny size: the commands
that a GPU machine and an MNLI-sized torchrun run need work before such a machine is at hand."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_tool(name, *options):
    return run_command([sys.executable, "-m", f"tools.{name.removesuffix('.py')}", *options])


def run_command(argv):
    """The command's output, from the repository's root, with one thread; it must succeed."""
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_the_gpu_check_runs_its_cpu_path_and_says_what_it_skipped():
    output = run_command(["bash", "tools/gpu_check.sh", "--tiny"])
    steps_table, levers_table = output.split("### The levers")
    rows = [line for line in steps_table.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row.strip("|").split("|")[0].strip() for row in rows[1:]]
    assert names == [
        "bare step",
        "GeneralDistiller L4t_hidden_mse + L4_hidden_smmd",
        "GeneralDistiller L4_relation_last (SDPA kept)",
        "EMDDistiller",
        "MultiTeacherDistiller, 2 teachers",
        "MultiTeacherDistiller, 2 teachers, cached logits (epoch >= 2)",
    ]
    for row in rows[1:]:
        steps_per_second, ratio, _, hours = [cell.strip() for cell in row.strip("|").split("|")[1:]]
        assert float(steps_per_second) > 0 and ratio.endswith("x") and hours.endswith(" h")
    assert rows[1].split("|")[3].strip() == "1.000x"  # the bare step against itself
    assert "Published run: 490,880 steps" in output  # 40 epochs of 12,272 steps of 32
    # One row per lever, each with its 40-epoch projection; nothing compiled once warmed up.
    levers = [line for line in levers_table.splitlines() if line.startswith("| ") and "---" not in line]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in levers[1:]]
    assert [row[:2] for row in cells] == [
        ["eager (today)", "all 16 tokens"],
        ["teacher in bf16", "all 16 tokens"],
        ["teacher in bf16, compiled", "all 16 tokens"],
        ["teacher in bf16, compiled", "MNLI-like, random"],
        ["teacher in bf16, compiled", "MNLI-like, grouped"],
    ]
    for _, _, steps_per_second, ratio, hours in cells:
        assert float(steps_per_second) > 0 and ratio.endswith("x") and hours.endswith(" h")
    assert re.search(
        r"Compilation \(eager\): [0-9.]+ s, [1-9]\d* graphs; graphs compiled during the timed epochs: 0",
        output,
    )
    assert "skipped: torch.cuda.set_sync_debug_mode needs CUDA" in output
    assert re.search(r"Evaluation: [0-9,]+ examples/s", output)


def test_feature_memory_measures_every_process(tmp_path):
    output = run_tool(
        "feature_memory.py",
        "--pairs",
        "600",
        "--processes",
        "2",
        "--length",
        "32",
        "--workdir",
        str(tmp_path),
    )
    assert "600 pairs at length 32" in output
    rows = [line for line in output.splitlines() if re.match(r"\| \d \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "1"]
    # The cache the processes mapped holds the narrow features: int32 ids, uint8 masks and
    # labels, 6 bytes a token and 1 a label (and a small header).
    [cache_file] = os.listdir(tmp_path / "cache")
    stored = 600 * 32 * 6 + 600
    assert stored <= os.path.getsize(tmp_path / "cache" / cache_file) < stored + 4096


def test_every_expected_host_wait_names_a_function_that_exists():
    # The sync check runs on GPUs only: a renamed function would turn its expected waits into
    # failures there, with nothing on the CPU to notice.
    from tools import gpu_report

    for filename, function in gpu_report.EXPECTED_SYNCS:
        with open(filename, encoding="utf-8") as source:
            lines = source.read().splitlines()
        def_lines = [
            number for number, line in enumerate(lines, 1) if re.match(rf"\s*def {function}\(", line)
        ]
        assert def_lines, (filename, function)
        # and the check, which names the function around a waiting line, finds it there
        assert gpu_report.function_at(filename, def_lines[0] + 1) == function, (filename, function)
