"""The student's own checks while it trains, beside the teacher's (teacher_check.py).

A student can stop learning without an error: after a learning rate too high for its run it
answers every input alike, its loss sits at the value of a constant prediction (about ln of the
number of labels) and its checkpoints score near chance, while the run goes on to its end. Two checks
make that loud, in the log and in the checkpoint's record in eval_results.jsonl ("warnings",
which tools/report.py marks in its table):
  stalled_loss  the hard-label loss came back to a constant prediction's (between the entropy of
                the train set's label frequencies and ln(labels)) and stayed there for a stretch
                of batches (distillation.StallWatch, watched during training);
  at_baseline   a dev set's accuracy is no better than always answering the train set's most
                frequent label, plus 2 points (teacher_check.py's bar).
A regression task has neither check.
"""

import logging

import torch

from distillation.stall_watch import StallWatch
from pipeline.evaluation import most_frequent_label_scores
from pipeline.teacher_check import MARGIN
from utils_glue import MAIN_METRIC

logger = logging.getLogger(__name__)

TO_TRY = (
    "The usual causes: a learning rate too high for the run (--learning_rate; the more so with "
    "a short warm-up, no gradient clipping and KD on the logits alone, as in a multi-teacher run), "
    "a student that cannot read its inputs (another vocabulary than its embeddings were trained "
    "with), or a teacher that teaches nothing (see teacher_check.txt). To try: a lower "
    "--learning_rate, a longer --warmup_proportion, --max_grad_norm 1, intermediate --matches "
    "(one teacher), or another --random_seed to see whether the run is on an edge."
)


class StudentCheck:
    """Watches a classification task's student: `watch` goes to the distiller before training
    (distiller.stall_watch), `warnings` to record_evaluation (its warn)."""

    def __init__(self, task, train_labels, dev_labels):
        """train_labels: the train set's; dev_labels: {dev set: its labels} (empty: no dev check)."""
        counts = torch.bincount(train_labels.long(), minlength=task.num_labels).double()
        self.watch = StallWatch(task.num_labels, prior=(counts / counts.sum()).tolist())
        self.metric = MAIN_METRIC[task.output_mode]
        self.baseline_label, self.baseline = None, {}
        if dev_labels:
            majority, self.baseline = most_frequent_label_scores(train_labels, dev_labels, task.num_labels)
            self.baseline_label = task.labels[majority]

    def warnings(self, metrics):
        """[{"kind", "message"}] about the checkpoint whose dev `metrics` were just measured;
        each is logged as a warning."""
        found = []
        stall = self.watch.stall
        if stall is not None:
            found.append(
                {
                    "kind": "stalled_loss",
                    "message": (
                        f"the student stopped learning: its hard-label loss has sat at "
                        f"{self.watch.level_text()} since step {stall['since_step']} (after it had been "
                        f"down to {stall['lowest']:.4f}): it answers every input alike. " + TO_TRY
                    ),
                }
            )
        weak = {
            name: scores[self.metric]
            for name, scores in metrics.items()
            if name in self.baseline and scores[self.metric] <= self.baseline[name] + MARGIN
        }
        if weak:
            scores = ", ".join(
                f"{100 * score:.1f} on {name} (always {self.baseline_label!r}: {100 * self.baseline[name]:.1f})"
                for name, score in weak.items()
            )
            found.append(
                {
                    "kind": "at_baseline",
                    "message": (
                        f"the student scores {scores}: no better than always answering the train set's "
                        f"most frequent label plus {100 * MARGIN:g} points. " + TO_TRY
                    ),
                }
            )
        for warning in found:
            logger.warning("%s", warning["message"])
        return found


def watch_student(task, distiller, train_labels, dev_features):
    """A classification task's run watched: a StudentCheck's watch set on the distiller, and its
    `warnings` returned, the warn that record_evaluation takes; None for a regression task.
    dev_features: {dev set: features} (empty where this process does not evaluate)."""
    if task.output_mode != "classification":
        return None
    check = StudentCheck(task, train_labels, {name: f["labels"] for name, f in dev_features.items()})
    distiller.stall_watch = check.watch
    return check.warnings
