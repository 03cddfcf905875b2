"""Evaluating a model on its task's dev sets, and the record a run keeps of it after each
checkpoint:

    eval_results.txt    step: 12272 Acc:mnli=0.82000 mnli-mm=0.82600 All=0.82300
    eval_results.jsonl  {"step": 12272, "acc": {"mnli": ..., "mnli-mm": ..., "All": ...},
                         "metrics": {"mnli": {"acc": ...}, "mnli-mm": {"acc": ...}},
                         "warnings": [...] (only when there are any: student_check.py)}
    eval_report.txt / .jsonl   per-label precision, recall, F1 and the confusion matrix

Each dev set's main score is its accuracy (Pearson's r for a regression task, under "pearson"
in place of "acc"); `All` is the mean of the sets' main scores, as in the original example.
Tasks with other GLUE metrics add them to the line: `Acc:mrpc=0.84069 f1=0.88663 All=0.84069`.
"""

import json
import logging
import os

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from distillation import atomic_write_text, checkpoint_path, checkpoint_steps, safe_torch_load
from utils_glue import MAIN_METRIC, metrics_of

logger = logging.getLogger(__name__)

RESULTS_TEXT = "eval_results.txt"
RESULTS_JSONL = "eval_results.jsonl"
REPORT_TEXT = "eval_report.txt"
REPORT_JSONL = "eval_report.jsonl"


@torch.no_grad()
def _batch_logits(model, dataloader, device):
    """(batch, logits) of each batch, the model in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    try:
        for batch in dataloader:
            inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "labels"}
            yield batch, model(**inputs)["logits"]
    finally:
        model.train(was_training)


def predictions(logits):
    """Label indices (argmax) of classification logits; the scores of a regressor's one output."""
    return logits[:, 0].float() if logits.size(-1) == 1 else logits.argmax(dim=-1)


def predict_labels(model, dataloader, device):
    """The predictions (see predictions) and gold labels of one dev set, as numpy arrays.

    Only the two vectors are kept, so memory does not grow with the logits of the dev set.
    """
    preds, labels = [], []
    for batch, logits in _batch_logits(model, dataloader, device):
        preds.append(predictions(logits).cpu())
        labels.append(batch["labels"])
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def predict_outputs(model, dataloader, device):
    """The softmax probabilities [N, num_labels] of unlabelled (or labelled) examples, in order;
    a regressor's scores [N, 1]."""

    def outputs(logits):
        logits = logits.float()
        return logits if logits.size(-1) == 1 else torch.softmax(logits, dim=-1)

    return torch.cat(
        [outputs(logits).cpu() for _, logits in _batch_logits(model, dataloader, device)]
    ).numpy()


def evaluate(model, eval_loaders, device, task):
    """{dev set: {metric: value}} on each of eval_loaders ({dev set name: loader})."""
    return evaluate_with_reports(model, eval_loaders, device, task)[0]


def evaluate_with_reports(model, eval_loaders, device, task):
    """({dev set: metrics}, {dev set: label_report}); no reports for a regression task."""
    metrics, reports = {}, {}
    for name, dataloader in eval_loaders.items():
        preds, labels = predict_labels(model, dataloader, device)
        metrics[name] = metrics_of(
            (MAIN_METRIC[task.output_mode],)
            + tuple(m for m in task.metrics if m != MAIN_METRIC[task.output_mode]),
            preds,
            labels,
            name,
        )
        if task.labels is not None:
            reports[name] = label_report(preds, labels, task.label_list)
    return metrics, reports


def main_scores(metrics, output_mode):
    """{dev set: its main score, ..., 'All': their mean} (the original's All: a mean of sets)."""
    main = MAIN_METRIC[output_mode]
    scores = {name: values[main] for name, values in metrics.items()}
    scores["All"] = float(np.mean(list(scores.values())))
    return scores


def most_frequent_label_scores(train_labels, dev_labels, num_labels):
    """(the train set's most frequent label, {dev set: the accuracy of always answering it});
    dev_labels: {dev set: its labels}. The bar a trained model has to clear."""
    majority = int(torch.bincount(train_labels.long(), minlength=num_labels).argmax())
    return majority, {
        name: float((labels.long() == majority).float().mean()) for name, labels in dev_labels.items()
    }


def label_report(preds, labels, label_list):
    """Precision, recall, F1 and support of each label, and the confusion matrix
    (rows: gold label, columns: predicted label, both in label_list's order)."""
    ids = list(range(len(label_list)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=ids, zero_division=0
    )
    return {
        "labels": list(label_list),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": [int(count) for count in support],  # scikit-learn gives floats when one is 0
        "confusion": confusion_matrix(labels, preds, labels=ids).tolist(),
    }


def format_label_report(name, report):
    """label_report as an aligned table and a confusion matrix, for people."""
    labels = report["labels"]
    width = max(len(label) for label in labels) + 2
    lines = [name, f"{'':{width}}precision  recall      f1  support"]
    for i, label in enumerate(labels):
        lines.append(
            f"{label:{width}}{report['precision'][i]:9.4f}{report['recall'][i]:8.4f}"
            f"{report['f1'][i]:8.4f}{report['support'][i]:9d}"
        )
    lines.append("confusion matrix (rows: gold, columns: predicted)")
    lines.append(f"{'':{width}}" + "".join(f"{label[:13]:>14}" for label in labels))
    for label, row in zip(labels, report["confusion"]):
        lines.append(f"{label:{width}}" + "".join(f"{count:14d}" for count in row))
    return "\n".join(lines)


def record_evaluation(output_dir, step, model, eval_loaders, device, task, warn=None):
    """Evaluate and write eval_report.* and then eval_results.* (see record_results).
    warn(metrics), when given, returns the warnings the record carries (see record_results)."""
    metrics, reports = evaluate_with_reports(model, eval_loaders, device, task)
    if reports:
        record_report(output_dir, step, reports)
    record_results(output_dir, step, metrics, task.output_mode, warnings=warn(metrics) if warn else None)
    return metrics


def record_report(output_dir, step, reports):
    """Write the per-label reports of `step` into eval_report.txt and eval_report.jsonl, in step
    order with one entry per step (as record_results does)."""

    def text(records):
        return (
            "\n\n".join(
                format_label_report(f"step {s}, {name}", records[s]["reports"][name])
                for s in sorted(records)
                for name in records[s]["reports"]
            )
            + "\n"
        )

    _record_step(output_dir, REPORT_TEXT, REPORT_JSONL, step, {"reports": reports}, text)


def recorded_results(output_dir):
    """{step: record} of the evaluations in output_dir's eval_results.jsonl (see the module's
    docstring for a record's keys)."""
    return _recorded_steps(os.path.join(output_dir, RESULTS_JSONL))


def record_results(output_dir, step, metrics, output_mode, warnings=None):
    """Write the evaluation of `step` into eval_results.txt and eval_results.jsonl.

    Both files are rewritten whole, in step order, with one line per step: a checkpoint
    evaluated again after a resume keeps one line. The JSON lines file is written last, so a
    step in it means that its evaluation is complete. warnings: [{"kind": ..., "message": ...}]
    about the checkpoint (a student that stopped learning: student_check.py), kept in the JSON
    record under "warnings" when there are any.
    """
    record = {MAIN_METRIC[output_mode]: main_scores(metrics, output_mode), "metrics": metrics}
    if warnings:
        record["warnings"] = list(warnings)
    logger.info("Evaluation %s", result_line(step, record))

    def text(records):
        return "".join(result_line(s, records[s]) + "\n" for s in sorted(records))

    _record_step(output_dir, RESULTS_TEXT, RESULTS_JSONL, step, record, text)


def scores_of(record):
    """The main scores of an eval_results.jsonl record: {dev set: score, 'All': mean}."""
    return record["acc"] if "acc" in record else record["pearson"]


def result_line(step, record):
    """'step: N Acc:mnli=0.80000 mnli-mm=0.81000 All=0.80500' (Pearson: for regression), the
    task's other metrics after the sets, named by set where there are several."""
    main = "acc" if "acc" in record else "pearson"
    scores, metrics = record[main], record["metrics"]
    sets = [name for name in scores if name != "All"]
    parts = [f"{name}={scores[name]:.5f}" for name in sets]
    for metric in metrics[sets[0]]:
        if metric == main:
            continue
        parts += [
            f"{metric}={metrics[name][metric]:.5f}"
            if len(sets) == 1
            else f"{metric}:{name}={metrics[name][metric]:.5f}"
            for name in sets
        ]
    return f"step: {step} {main.capitalize()}:{' '.join(parts)} All={scores['All']:.5f}"


def _recorded_steps(path):
    """{step: record without its 'step'} of a JSON lines file written by _record_step."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        records = map(json.loads, filter(str.strip, f))
        return {record.pop("step"): record for record in records}


def _record_step(output_dir, text_name, jsonl_name, step, record, text):
    """Put `record` at `step` in output_dir/jsonl_name ({"step": s, ...record} a line, in step
    order), then rewrite both files whole and atomically: the text file from text(records)
    first, the JSON lines file last."""
    path = os.path.join(output_dir, jsonl_name)
    records = _recorded_steps(path)
    records[step] = record
    atomic_write_text(os.path.join(output_dir, text_name), text(records))
    atomic_write_text(path, "".join(json.dumps({"step": s, **records[s]}) + "\n" for s in sorted(records)))


def evaluate_missed_checkpoints(output_dir, up_to_step, student, dev_loaders, device, task, warn=None):
    """Evaluate the checkpoints an interrupted run saved but did not evaluate (a kill during
    the evaluation). The student's own weights come back from the resume state afterwards.
    warn: as record_evaluation's."""
    evaluated = recorded_results(output_dir)
    for step in checkpoint_steps(output_dir):
        if step <= up_to_step and step not in evaluated:
            student.load_state_dict(safe_torch_load(checkpoint_path(output_dir, step)))
            record_evaluation(output_dir, step, student, dev_loaders, device, task, warn=warn)
