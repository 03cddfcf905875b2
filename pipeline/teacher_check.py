"""Each teacher's own score on the dev sets, measured before it teaches.

A student distilled from a teacher that never learnt the task ends at chance, hours later, with
nothing said why. The usual causes: the teacher's classifier rows are in another label order
than the task's, the checkpoint is pre-trained but not fine-tuned (or a run that never trained),
or it reads another vocabulary than it was trained with. So before the first step each enabled
teacher is evaluated on the first --teacher_check_size examples of each dev set, and a teacher
that does no better than always answering the train set's most frequent label plus 2 points
(on a regression task: a Pearson r of at most 0.1, where a constant scores 0) on any dev set
stops the run, unless --allow_weak_teacher. The table goes to the log and into the run folder
(teacher_check.txt and .json); its scores are those --do_predict gives the same checkpoint.
"""

import dataclasses
import json
import logging
import os

import torch

from distillation import atomic_write_text
from pipeline.data import batch_loader
from pipeline.evaluation import evaluate
from utils_glue import MAIN_METRIC

logger = logging.getLogger(__name__)

MARGIN = 0.02  # above the most-frequent-label baseline (accuracy)
REGRESSION_BAR = 0.1  # Pearson's r; a constant prediction scores 0
CHECK_TEXT, CHECK_JSON = "teacher_check.txt", "teacher_check.json"


@dataclasses.dataclass
class TeacherCheck:
    metric: str  # 'acc', or 'pearson' for a regression task
    sizes: dict  # {dev set: examples checked}
    baseline_label: str | None  # the train set's most frequent label (None: regression)
    baseline: dict  # {dev set: the baseline's score}
    bar: dict  # {dev set: the score a teacher must exceed}
    teachers: list  # [{'name', 'checkpoint', 'scores': {dev set: score}, 'weak'}]

    def table(self):
        sets = list(self.sizes)
        what = "accuracy" if self.metric == "acc" else "Pearson's r"
        baseline = (
            f"always {self.baseline_label!r} (the train set's most frequent label), plus "
            f"{100 * MARGIN:g} points"
            if self.baseline_label is not None
            else f"a constant (r = 0), a teacher must exceed r = {REGRESSION_BAR}"
        )
        names = ["baseline"] + [t["name"] for t in self.teachers]
        width = max(map(len, names)) + 2
        lines = [
            f"Teacher check: {what} on the first examples of each dev set "
            f"({', '.join(f'{n} of {name}' for name, n in self.sizes.items())}); the bar: {baseline}",
            f"{'':{width}}" + "".join(f"{name:>10}" for name in sets),
            f"{'baseline':{width}}" + "".join(f"{self._cell(self.baseline[s]):>10}" for s in sets),
        ]
        for teacher in self.teachers:
            verdict = "WEAK" if teacher["weak"] else "ok"
            lines.append(
                f"{teacher['name']:{width}}"
                + "".join(f"{self._cell(teacher['scores'][s]):>10}" for s in sets)
                + f"  {verdict}  "
                f"{teacher['checkpoint']}"
            )
        return "\n".join(lines)

    def _cell(self, value):
        return f"{100 * value:.1f}" if self.metric == "acc" else f"{value:.3f}"

    def write(self, output_dir):
        atomic_write_text(os.path.join(output_dir, CHECK_TEXT), self.table() + "\n")
        atomic_write_text(
            os.path.join(output_dir, CHECK_JSON), json.dumps(dataclasses.asdict(self), indent=1) + "\n"
        )

    def weak_teachers(self):
        return [t for t in self.teachers if t["weak"]]


def check_teachers(teachers, entries, task, dev_features, train_labels, size, allow_weak, batch_size, device):
    """Evaluate each teacher (model, with its model_config entry) on the first `size` examples
    of each dev set, batch_size at a time; raise ValueError for a weak one unless allow_weak.
    dev_features: per teacher, {dev set: features} as it reads them (the same examples, in the
    same order, for every teacher); train_labels: the train set's."""
    subsets = {name: _first(features, size) for name, features in dev_features[0].items()}
    metric = MAIN_METRIC[task.output_mode]
    if task.labels is not None:
        majority = int(torch.bincount(train_labels.long(), minlength=task.num_labels).argmax())
        baseline = {
            name: float((f["labels"].long() == majority).float().mean()) for name, f in subsets.items()
        }
        bar = {name: score + MARGIN for name, score in baseline.items()}
        baseline_label = task.labels[majority]
    else:
        baseline = {name: 0.0 for name in subsets}
        bar = {name: REGRESSION_BAR for name in subsets}
        baseline_label = None
    rows = []
    for teacher, entry, features in zip(teachers, entries, dev_features, strict=True):
        loaders = {
            name: batch_loader(_first(features[name], size), batch_size, shuffle=False) for name in subsets
        }
        scores = {name: values[metric] for name, values in evaluate(teacher, loaders, device, task).items()}
        rows.append(
            {
                "name": entry.where,
                "checkpoint": entry.checkpoint,
                "scores": scores,
                "weak": any(scores[name] <= bar[name] for name in scores),
            }
        )
    check = TeacherCheck(
        metric, {name: len(f["labels"]) for name, f in subsets.items()}, baseline_label, baseline, bar, rows
    )
    logger.info("%s", check.table())
    weak = check.weak_teachers()
    if weak and not allow_weak:
        raise ValueError(_weak_message(weak, check))
    for teacher in weak:
        logger.warning(
            "%s is weak (see the table above); --allow_weak_teacher: distilling from it all the same",
            teacher["name"],
        )
    return check


def _first(features, size):
    return {key: tensor[:size] for key, tensor in features.items()}


def _weak_message(weak, check):
    parts = []
    for teacher in weak:
        failed = [name for name, score in teacher["scores"].items() if score <= check.bar[name]]
        scores = ", ".join(
            f"{check._cell(teacher['scores'][n])} on {n} (bar {check._cell(check.bar[n])})" for n in failed
        )
        parts.append(f"{teacher['name']} ({teacher['checkpoint']}) scores {scores}")
    return (
        "teacher check failed: "
        + "; ".join(parts)
        + ", no better than "
        + (f"always answering {check.baseline_label!r}" if check.baseline_label is not None else "a constant")
        + ". The usual causes: its classifier rows are in another label order than the "
        'task\'s (name them with "label_order" in its JSON entry), it was never fine-tuned on '
        "this task (a pre-trained checkpoint, or a run that did not train), or it reads another "
        "vocabulary or checkpoint than it was trained with. Nothing was written. To distill "
        "from it all the same: --allow_weak_teacher.\n" + check.table()
    )
