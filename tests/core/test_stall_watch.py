"""StallWatch: a loss back at a constant prediction's level is reported, once, with where it
came from; a run that never got below it, or that learns, is not. Then the trainer's wiring: a
real collapse (a learning rate far too high) is logged and kept across a resume."""

import logging
import math

import pytest
import torch

from distillation import BasicTrainer
from distillation.stall_watch import StallWatch
from tests.core.tiny_models import TinyClassifier, adaptor, dict_loader, make_data, train_config

TERM = "unweighted_hard_label_loss"


def feed(watch, values, first_step=1):
    """Each value one batch of its own step; check() after each, as at a log line every step.
    Returns the steps at which check() reported a stall."""
    stalled = []
    for step, value in enumerate(values, start=first_step):
        watch.add({TERM: torch.tensor(value), "other": torch.tensor(5.0)}, step)
        if watch.check(step) is not None:
            stalled.append(step)
    return stalled


def smoothed(values, smoothing):
    """The running mean StallWatch keeps, computed independently: the plain mean of the first
    1 / smoothing values, then an exponential one."""
    settling = round(1 / smoothing)
    mean = sum(values[:settling]) / len(values[:settling])
    for value in values[settling:]:
        mean = (1 - smoothing) * mean + smoothing * value
    return mean


def test_a_loss_back_at_the_level_is_reported_after_the_patience(caplog):
    prior = [0.2, 0.3, 0.5]
    low = -sum(p * math.log(p) for p in prior)  # 1.0297: answering the frequencies
    watch = StallWatch(3, prior, patience=7, smoothing=0.5)
    assert watch.low == pytest.approx(low) and watch.high == pytest.approx(math.log(3))
    learning = [0.9, 0.7, 0.5, 0.4]
    # Back between the two levels: each value inside [low, ln 3], so the smoothed mean enters the
    # band once it has come up from 0.4 (0.4 -> 0.715 -> 0.87 -> 0.95 -> 0.99 -> 1.01 -> 1.02).
    stuck = [1.03, 1.05, 1.09, 1.04, 1.06, 1.03, 1.08, 1.05, 1.04, 1.07, 1.06, 1.05, 1.04]
    with caplog.at_level(logging.WARNING, logger="distillation"):
        stalled = feed(watch, learning + stuck)
    means = [smoothed((learning + stuck)[: i + 1], 0.5) for i in range(len(learning + stuck))]
    entered = next(i for i, m in enumerate(means) if i > 3 and m >= low - 0.01) + 1  # its step
    assert stalled and stalled[0] == entered + 6  # the 7th batch in the band
    assert stalled == list(range(stalled[0], len(learning + stuck) + 1))  # until the end
    assert watch.stall["since_step"] == entered
    assert watch.stall["lowest"] == pytest.approx(min(means[1:]), abs=1e-6)  # settled after 2 batches
    assert watch.stall["batches"] == len(learning + stuck) - entered + 1
    assert caplog.text.count("the student has stopped learning") == 1  # said once
    assert f"at step {stalled[0]} " in caplog.text and f"(since step {entered})" in caplog.text
    assert "1.0297 (always answering the labels' frequencies) to 1.0986 = ln(3)" in caplog.text

    # It learns again: the stall ends (the mean leaves the band), and a later one is said again.
    with caplog.at_level(logging.INFO, logger="distillation"):
        assert feed(watch, [0.5, 0.5], first_step=18) == []
    assert watch.stall is None and "has left a constant prediction's level" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="distillation"):
        assert feed(watch, [1.06] * 12, first_step=20)
    assert caplog.text.count("the student has stopped learning") == 1


def test_no_stall_without_a_lower_point_a_long_enough_stretch_or_outside_the_band():
    # A random start sits at ln 2 and has not learnt yet: nothing to report.
    assert feed(StallWatch(2, patience=5), [0.6931, 0.70, 0.69] * 30) == []
    # Lower first, but back for fewer batches than the patience each time.
    assert feed(StallWatch(2, patience=5, smoothing=1.0), ([0.3] * 3 + [0.69] * 4) * 10) == []
    # Lower, then stuck above the band (a loss that diverges is not a constant prediction's).
    assert feed(StallWatch(2, patience=5, smoothing=1.0), [0.3] * 3 + [0.75] * 20) == []
    # Settling: the first 1 / smoothing batches are averaged plainly, so one low first batch
    # is not a lower point (a mean started at it would be: 0.62, 0.638, 0.652, 0.662 < 0.6631).
    assert feed(StallWatch(2, patience=5, smoothing=0.25), [0.62] + [0.6931] * 40) == []
    assert feed(StallWatch(2, patience=5, smoothing=0.25), [0.6, 0.6, 0.6, 0.6] + [0.6931] * 40)
    # A batch of unlabelled examples only (hard-label loss exactly 0) is not a lower point either.
    assert feed(StallWatch(2, patience=5, smoothing=1.0), [0.6931, 0.0] * 40) == []
    # The same with a real lower point is reported, the zeros left out of the streak.
    assert feed(StallWatch(2, patience=5, smoothing=1.0), [0.4] * 3 + [0.6931, 0.0] * 5)[0] == 12


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        StallWatch(1)
    with pytest.raises(ValueError, match="3 frequencies summing to 1"):
        StallWatch(3, [0.5, 0.5])
    with pytest.raises(ValueError, match="frequencies summing to 1"):
        StallWatch(2, [0.7, 0.7])


def train(output_dir, lr, steps=150, resume=None):
    """BasicTrainer on the tiny data, one batch of all 64 examples a step (so a constant
    prediction has one loss), AdamW at `lr` after a linear warm-up over the first 20% of steps,
    checkpoints every 50 steps. Returns the trainer and [(step, stall)] at the checkpoints."""
    data = make_data(64)
    share = float(data["labels"].float().mean())
    student = TinyClassifier(16, seed=2)
    trainer = BasicTrainer(train_config(output_dir, ckpt_steps=50, keep_resume_states=3), student, adaptor)
    trainer.log_every_steps = 10
    trainer.stall_watch = StallWatch(2, [1 - share, share])
    if resume is not None:
        trainer.resume_from(resume)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr)

    def schedule(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (0.2 * steps)))

    seen = []

    def callback(model, step):
        stall = trainer.stall_watch.stall
        seen.append((step, dict(stall) if stall else None))

    trainer.train(
        optimizer, dict_loader(data, 64), num_steps=steps, scheduler_class=schedule, callback=callback
    )
    return trainer, seen


def test_a_learning_rate_far_too_high_is_reported_and_a_healthy_run_is_not(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="distillation"):
        trainer, seen = train(tmp_path / "collapse", lr=0.1)
    stall = trainer.stall_watch.stall
    assert stall is not None and stall["lowest"] < trainer.stall_watch.low - 0.1  # it had learnt
    assert caplog.text.count("the student has stopped learning") == 1
    assert seen[-1] == (150, stall)  # the last checkpoint's callback sees the stall

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="distillation"):
        trainer, seen = train(tmp_path / "healthy", lr=3e-3)
    assert trainer.stall_watch.stall is None and "stopped learning" not in caplog.text
    assert [stall for _, stall in seen] == [None, None, None]


def test_the_watch_goes_on_across_a_resume(tmp_path):
    straight, seen = train(tmp_path / "straight", lr=0.1)
    assert seen[-1][1] is not None
    resumed, seen_resumed = train(
        tmp_path / "resumed", lr=0.1, resume=tmp_path / "straight" / "out" / "resume_gs50.pt"
    )
    # The lowest point (and here the stall's start too) came before step 50: the resumed run
    # reports the same stall only if they came back with the state.
    assert seen_resumed == seen[1:]
