"""Evaluation on MNLI's two dev sets, and the results files written after each checkpoint."""
import json
import logging
import os

import torch

from distillation.io import atomic_write_text
from utils_glue import compute_metrics

logger = logging.getLogger(__name__)

RESULTS_TEXT = "eval_results.txt"
RESULTS_JSONL = "eval_results.jsonl"


@torch.no_grad()
def predict_labels(model, dataloader, device):
    """Argmax predictions and gold labels of one dev set.

    Only the two label vectors are kept, so memory does not grow with the logits of the dev set.
    """
    was_training = model.training
    model.eval()
    preds, labels = [], []
    for batch in dataloader:
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "labels"}
        logits = model(**inputs)["logits"]
        preds.append(logits.argmax(dim=-1).cpu())
        labels.append(batch["labels"])
    model.train(was_training)
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def evaluate(model, eval_loaders, device):
    """Accuracy on each dev set ({'mnli': ..., 'mnli-mm': ...}) and on both together ('All')."""
    results, correct, total = {}, 0, 0
    for task_name, dataloader in eval_loaders.items():
        preds, labels = predict_labels(model, dataloader, device)
        results[task_name] = compute_metrics(task_name, preds, labels)["acc"]
        correct += int((preds == labels).sum())
        total += len(labels)
    results["All"] = correct / total
    return results


def recorded_results(output_dir):
    """{step: accuracies} of the evaluations in output_dir's eval_results.jsonl."""
    path = os.path.join(output_dir, RESULTS_JSONL)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {record["step"]: record["acc"] for record in records}


def record_results(output_dir, step, results):
    """Write the evaluation of `step` into eval_results.txt and eval_results.jsonl.

    Both files are rewritten whole, in step order, with one line per step: a checkpoint
    evaluated again after a resume keeps one line. The JSON lines file is written last, so a
    step in it means that its evaluation is complete.
    """
    logger.info("Evaluation %s", _text_line(step, results))
    records = recorded_results(output_dir)
    records[step] = results
    steps = sorted(records)
    atomic_write_text(os.path.join(output_dir, RESULTS_TEXT),
                      "".join(_text_line(s, records[s]) + "\n" for s in steps))
    atomic_write_text(os.path.join(output_dir, RESULTS_JSONL),
                      "".join(json.dumps({"step": s, "acc": records[s]}) + "\n" for s in steps))


def _text_line(step, results):
    accuracies = " ".join(f"{name}={acc:.5f}" for name, acc in results.items())
    return f"step: {step} Acc:{accuracies}"
