"""Evaluation on MNLI's two dev sets, and the results files written after each checkpoint."""
import json
import logging
import os

import torch

from distillation.io import append_line
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


def record_results(output_dir, step, results):
    """Append one line to eval_results.txt and the same as JSON to eval_results.jsonl."""
    accuracies = " ".join(f"{name}={acc:.5f}" for name, acc in results.items())
    line = f"step: {step} Acc:{accuracies}"
    logger.info("Evaluation %s", line)
    append_line(os.path.join(output_dir, RESULTS_TEXT), line)
    append_line(os.path.join(output_dir, RESULTS_JSONL), json.dumps({"step": step, "acc": results}))
