"""tools/plot_runs.py: what it reads from run folders, the picture, and life without matplotlib."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = "tools.plot_runs"


def load_plot_runs():
    from tools import plot_runs

    return plot_runs


def write_run(folder, losses, accuracies, resumed_at=None):
    folder.mkdir(parents=True)
    lines = [
        json.dumps({"step": step, "epoch": 1, "loss": loss, "kd_loss": loss / 2, "lr": 1e-4})
        for step, loss in losses
    ]
    if resumed_at is not None:
        lines.insert(resumed_at, json.dumps({"step": losses[resumed_at - 1][0], "resumed": True}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "eval_results.jsonl").write_text(
        "".join(
            json.dumps({"step": step, "acc": {"mnli": m, "mnli-mm": mm, "All": (m + mm) / 2}}) + "\n"
            for step, m, mm in accuracies
        )
    )
    return folder


@pytest.fixture
def runs(tmp_path):
    alone = write_run(tmp_path / "alone", [(2, 1.1), (4, 0.9), (6, 0.7)], [(3, 0.5, 0.4), (6, 0.6, 0.55)])
    distilled = write_run(
        tmp_path / "distilled", [(2, 2.0), (4, 1.5), (6, 1.0)], [(3, 0.55, 0.5), (6, 0.7, 0.65)], resumed_at=2
    )
    return alone, distilled


def test_read_run_skips_the_resume_mark_and_keeps_every_term(runs):
    data = load_plot_runs().read_run(str(runs[1]))
    assert set(data["losses"]) == {"loss", "kd_loss"}  # step, epoch, lr are not losses
    assert data["losses"]["loss"] == ([2, 4, 6], [2.0, 1.5, 1.0])
    assert data["accuracy"]["mnli-mm"] == ([3, 6], [pytest.approx(50.0), pytest.approx(65.0)])


def test_names_default_to_the_folder(runs):
    plot_runs = load_plot_runs()
    assert plot_runs.parse_run_names([str(runs[0]) + "/", f"KD recipe={runs[1]}"]) == [
        ("alone", str(runs[0]) + "/"),
        ("KD recipe", str(runs[1])),
    ]


def test_draws_several_runs_into_one_png(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is optional; the picture needs it")
    output = tmp_path / "runs.png"
    result = subprocess.run(
        [sys.executable, "-m", MODULE, str(runs[0]), f"KD={runs[1]}", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    data = output.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 200_000
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]


def test_without_matplotlib_it_says_how_to_install_it(runs, tmp_path):
    output = tmp_path / "runs.png"
    hide_matplotlib = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        f"sys.argv = [{MODULE!r}, {str(runs[0])!r}, '--output', {str(output)!r}]; "
        f"runpy.run_module({MODULE!r}, run_name='__main__', alter_sys=True)"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_matplotlib], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "plot_runs.py needs matplotlib (an optional dependency): pip install matplotlib"
    )
    assert not output.exists()


def test_a_folder_without_results_is_named(tmp_path):
    pytest.importorskip("matplotlib", reason="the check for matplotlib comes first")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"step": 2, "loss": 1}\n{"step": 4, "lo\n')
    for folder, message in [
        ("empty", "empty: neither metrics.jsonl nor eval_results.jsonl"),
        ("bad", "metrics.jsonl, line 2: not JSON"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", MODULE, str(tmp_path / folder), "--output", str(tmp_path / "x.png")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert result.returncode == 1
        assert message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "x.png").exists()
