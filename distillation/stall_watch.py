"""Noticing a student that stops learning: a loss back at the value of a constant prediction.

A classifier that answers every input with the same distribution, whatever it reads, has a
cross-entropy between two values: the entropy of the labels' frequencies H(prior) (when it
answers with those frequencies, the best a constant can do) and ln(num_classes) (the uniform
distribution). Nothing fails: the run goes on to its end and its checkpoints score near chance.
StallWatch follows one loss term (by default the hard-label cross-entropy, logged even when its
weight is 0) smoothed over the batches, on the device without waiting for it; at the log lines
and checkpoints, where the trainer waits for the device anyway, it reports a stall: the smoothed
term within `tolerance` of [H(prior), ln(num_classes)] for `patience` batches in a row, after it
had been below H(prior) by more than `margin`. A student that starts at that level and has not
left it yet (a random start learns slowly at first) is not a stall here.
"""

import logging
import math

import torch

logger = logging.getLogger("distillation")

HARD_LABEL_TERM = "unweighted_hard_label_loss"


class StallWatch:
    """Set `distiller.stall_watch = StallWatch(num_classes, prior)` before train(); `stall` is
    then None, or (while the term sits at a constant prediction's level) a dict saying since when
    and from where. prior: the labels' frequencies (num_classes numbers; None: uniform).

    smoothing: the weight of each new batch in the running mean (0.1: mostly the last 10 to 20
    batches); the first 1 / smoothing batches are averaged plainly, and the lowest point counts
    only after them. A batch whose term is exactly 0 (a batch of unlabelled examples only, which
    has no hard-label loss) leaves the watch as it was.
    """

    def __init__(
        self,
        num_classes,
        prior=None,
        term=HARD_LABEL_TERM,
        patience=50,
        margin=0.03,
        tolerance=0.01,
        smoothing=0.1,
    ):
        if num_classes < 2:
            raise ValueError(f"StallWatch: a classifier has at least 2 classes, got {num_classes}")
        if prior is not None and (len(prior) != num_classes or abs(sum(prior) - 1) > 1e-6 or min(prior) < 0):
            raise ValueError(f"StallWatch: prior must be {num_classes} frequencies summing to 1, got {prior}")
        self.high = math.log(num_classes)  # a uniform prediction's loss
        # the best constant prediction's: the entropy of the frequencies
        self.low = -sum(p * math.log(p) for p in prior if p > 0) if prior is not None else self.high
        self.term = term
        self.patience = patience
        self.margin = margin
        self.tolerance = tolerance
        self.smoothing = smoothing
        self.stall = None
        self._state = None  # on the device: smoothed value, lowest, batches seen, streak, streak's first step

    def add(self, losses, step):
        """Follow one batch's terms (`step`: the optimizer step it belongs to); no host sync."""
        if self.term not in losses:
            return
        value = losses[self.term].detach().float()
        if self._state is None:
            self._state = torch.tensor([math.nan, math.inf, 0.0, 0.0, 0.0], device=value.device)
        smoothed, lowest, seen, streak, since = self._state.unbind()
        counts = value != 0
        # The plain mean of the batches so far until there are 1 / smoothing of them, then a
        # running mean; its lowest point counts from then on.
        rate = torch.clamp(1 / (seen + 1), min=self.smoothing)
        smoothed = torch.where(seen == 0, value, smoothed + rate * (value - smoothed))
        settled = seen + 1 >= 1 / self.smoothing
        lowest = torch.where(settled, torch.minimum(lowest, smoothed), lowest)
        at_level = (smoothed >= self.low - self.tolerance) & (smoothed <= self.high + self.tolerance)
        since = torch.where(at_level & (streak == 0), torch.full_like(since, step), since)
        streak = torch.where(at_level, streak + 1, torch.zeros_like(streak))
        updated = torch.stack([smoothed, lowest, seen + 1, streak, since])
        self._state = torch.where(counts, updated, self._state)

    def check(self, step):
        """At a log line or a checkpoint (one host sync): warn when a stall begins, note its
        end; returns `stall`."""
        if self._state is None:
            return self.stall
        smoothed, lowest, _, streak, since = self._state.tolist()
        stalled = streak >= self.patience and lowest < self.low - self.margin
        if stalled and self.stall is None:
            self.stall = {
                "term": self.term,
                "level": [self.low, self.high],
                "since_step": int(since),
                "lowest": lowest,
                "batches": int(streak),
            }
            logger.warning("%s", self.message(step))
        elif stalled:
            self.stall["batches"] = int(streak)
        elif self.stall is not None and streak == 0:
            logger.info(
                "step %d: %s has left a constant prediction's level (now %.4f)", step, self.term, smoothed
            )
            self.stall = None
        return self.stall

    def level_text(self):
        """What the level is, in words."""
        uniform = f"{self.high:.4f} = ln({round(math.exp(self.high))}), a uniform prediction's loss"
        if self.high - self.low < 1e-4:
            return uniform
        return f"{self.low:.4f} (always answering the labels' frequencies) to {uniform}"

    def message(self, step):
        stall = self.stall
        return (
            f"the student has stopped learning: at step {step} its {stall['term']} has sat at "
            f"{self.level_text()}, for {stall['batches']} batches (since step {stall['since_step']}), after "
            f"it had been down to {stall['lowest']:.4f}: it answers every input alike. The usual causes: a "
            "learning rate too high for the run (often with a short warm-up, no gradient clipping and "
            "a loss on the logits alone), or inputs or labels the model cannot read. To try: a lower "
            "learning rate, a longer warm-up, gradient clipping, or intermediate matches to anchor the "
            "student's layers."
        )

    # ----- resume: the watch goes on where it was --------------------------------------------
    def state_dict(self):
        return {"state": None if self._state is None else self._state.cpu(), "stall": self.stall}

    def load_state_dict(self, state, device):
        self._state = None if state["state"] is None else state["state"].to(device)
        self.stall = state["stall"]
