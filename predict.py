"""Evaluation on MNLI's two dev sets and the results files written after each checkpoint;
GLUE submission files for the test sets; predictions for new pairs.

    python predict.py test  MODEL --data_dir MNLI --output_dir OUT  # OUT/MNLI-m.tsv, OUT/MNLI-mm.tsv
    python predict.py pairs MODEL [pairs.tsv | pairs.jsonl | -]     # label and probabilities
    python predict.py eval  MODEL dev_matched.tsv                   # accuracy, per-label report

MODEL: --model EXPORTED_FOLDER, or --model_config_json JSON [--which teacher0] [--checkpoint
gs*.pkl or RUN_FOLDER] (see trained_models.py).
"""
import argparse
import json
import logging
import os
import sys

import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from distillation.io import atomic_write_text
from utils_glue import (LABELS, compute_metrics, convert_examples_to_features, read_mnli_test_tsv,
                        read_mnli_tsv, read_pairs)

logger = logging.getLogger(__name__)

RESULTS_TEXT = "eval_results.txt"
RESULTS_JSONL = "eval_results.jsonl"
REPORT_TEXT = "eval_report.txt"
REPORT_JSONL = "eval_report.jsonl"
# GLUE's submission file of each MNLI test set, and the test file it answers.
TEST_SETS = {"MNLI-m": "test_matched.tsv", "MNLI-mm": "test_mismatched.tsv"}
DEFAULT_MAX_SEQ_LENGTH = 128  # main.py's default


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


def predict_labels(model, dataloader, device):
    """Argmax predictions and gold labels of one dev set.

    Only the two label vectors are kept, so memory does not grow with the logits of the dev set.
    """
    preds, labels = [], []
    for batch, logits in _batch_logits(model, dataloader, device):
        preds.append(logits.argmax(dim=-1).cpu())
        labels.append(batch["labels"])
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def predict_probabilities(model, dataloader, device):
    """The softmax probabilities [N, num_labels] of unlabelled (or labelled) pairs, in order."""
    return torch.cat([torch.softmax(logits.float(), dim=-1).cpu()
                      for _, logits in _batch_logits(model, dataloader, device)]).numpy()


def evaluate(model, eval_loaders, device):
    """Accuracy on each dev set ({'mnli': ..., 'mnli-mm': ...}) and on both together ('All')."""
    return evaluate_with_reports(model, eval_loaders, device)[0]


def evaluate_with_reports(model, eval_loaders, device, label_list=LABELS):
    """(accuracies as evaluate returns them, {dev set: label_report})."""
    results, reports, correct, total = {}, {}, 0, 0
    for task_name, dataloader in eval_loaders.items():
        preds, labels = predict_labels(model, dataloader, device)
        results[task_name] = compute_metrics(task_name, preds, labels)["acc"]
        reports[task_name] = label_report(preds, labels, label_list)
        correct += int((preds == labels).sum())
        total += len(labels)
    results["All"] = correct / total
    return results, reports


def label_report(preds, labels, label_list=LABELS):
    """Precision, recall, F1 and support of each label, and the confusion matrix
    (rows: gold label, columns: predicted label, both in label_list's order)."""
    ids = list(range(len(label_list)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=ids, zero_division=0)
    return {"labels": list(label_list), "precision": precision.tolist(), "recall": recall.tolist(),
            "f1": f1.tolist(), "support": support.tolist(),
            "confusion": confusion_matrix(labels, preds, labels=ids).tolist()}


def format_label_report(name, report):
    """label_report as an aligned table and a confusion matrix, for people."""
    labels = report["labels"]
    width = max(len(label) for label in labels) + 2
    lines = [name, f"{'':{width}}precision  recall      f1  support"]
    for i, label in enumerate(labels):
        lines.append(f"{label:{width}}{report['precision'][i]:9.4f}{report['recall'][i]:8.4f}"
                     f"{report['f1'][i]:8.4f}{report['support'][i]:9d}")
    lines.append("confusion matrix (rows: gold, columns: predicted)")
    lines.append(f"{'':{width}}" + "".join(f"{label[:13]:>14}" for label in labels))
    for label, row in zip(labels, report["confusion"]):
        lines.append(f"{label:{width}}" + "".join(f"{count:14d}" for count in row))
    return "\n".join(lines)


def record_evaluation(output_dir, step, model, eval_loaders, device):
    """Evaluate and write eval_report.* and then eval_results.* (see record_results)."""
    results, reports = evaluate_with_reports(model, eval_loaders, device)
    record_report(output_dir, step, reports)
    record_results(output_dir, step, results)
    return results


def record_report(output_dir, step, reports):
    """Write the per-label reports of `step` into eval_report.txt and eval_report.jsonl, in step
    order with one entry per step (as record_results does)."""
    def text(records):
        return "\n\n".join(format_label_report(f"step {s}, {name}", report)
                           for s in sorted(records) for name, report in records[s].items()) + "\n"
    _record_step(output_dir, REPORT_TEXT, REPORT_JSONL, "reports", step, reports, text)


def recorded_results(output_dir):
    """{step: accuracies} of the evaluations in output_dir's eval_results.jsonl."""
    return _recorded_steps(os.path.join(output_dir, RESULTS_JSONL), "acc")


def record_results(output_dir, step, results):
    """Write the evaluation of `step` into eval_results.txt and eval_results.jsonl.

    Both files are rewritten whole, in step order, with one line per step: a checkpoint
    evaluated again after a resume keeps one line. The JSON lines file is written last, so a
    step in it means that its evaluation is complete.
    """
    logger.info("Evaluation %s", _text_line(step, results))

    def text(records):
        return "".join(_text_line(s, records[s]) + "\n" for s in sorted(records))
    _record_step(output_dir, RESULTS_TEXT, RESULTS_JSONL, "acc", step, results, text)


def _recorded_steps(path, key):
    """{step: record[key]} of a JSON lines file written by _record_step ({} when there is none)."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return {record["step"]: record[key] for record in map(json.loads, filter(str.strip, f))}


def _record_step(output_dir, text_name, jsonl_name, key, step, value, text):
    """Put `value` at `step` in output_dir/jsonl_name ({"step": s, key: ...} a line, in step
    order), then rewrite both files whole and atomically: the text file from text(records)
    first, the JSON lines file last."""
    path = os.path.join(output_dir, jsonl_name)
    records = _recorded_steps(path, key)
    records[step] = value
    atomic_write_text(os.path.join(output_dir, text_name), text(records))
    atomic_write_text(path, "".join(json.dumps({"step": s, key: records[s]}) + "\n"
                                    for s in sorted(records)))


def _text_line(step, results):
    accuracies = " ".join(f"{name}={acc:.5f}" for name, acc in results.items())
    return f"step: {step} Acc:{accuracies}"


def feature_batches(features, batch_size):
    """Consecutive slices of encoded features, batch_size examples each."""
    total = len(features["input_ids"])
    for start in range(0, total, batch_size):
        yield {key: tensor[start:start + batch_size] for key, tensor in features.items()}


def read_test_sets(data_dir, tokenizer, max_seq_length):
    """{submission name: (examples, features)} of test_matched.tsv and test_mismatched.tsv."""
    test_sets = {}
    for name, file_name in TEST_SETS.items():
        examples = read_mnli_test_tsv(os.path.join(data_dir, file_name))
        test_sets[name] = examples, convert_examples_to_features(examples, None, max_seq_length,
                                                                 tokenizer)
    return test_sets


def write_submissions(model, test_sets, output_dir, batch_size, device, label_list=LABELS):
    """Write GLUE's MNLI-m.tsv and MNLI-mm.tsv: 'index<TAB>prediction', labels by name."""
    for name, (examples, features) in test_sets.items():
        probabilities = predict_probabilities(model, feature_batches(features, batch_size), device)
        lines = ["index\tprediction"] + [f"{example.guid}\t{label_list[int(row.argmax())]}"
                                          for example, row in zip(examples, probabilities)]
        path = os.path.join(output_dir, f"{name}.tsv")
        atomic_write_text(path, "\n".join(lines) + "\n")
        logger.info("wrote %d predictions to %s", len(examples), path)


def _cli_test(trained, args, device):
    test_sets = read_test_sets(args.data_dir, trained.tokenizer, args.max_seq_length)
    os.makedirs(args.output_dir, exist_ok=True)
    write_submissions(trained.model, test_sets, args.output_dir, args.batch_size, device)


def _cli_pairs(trained, args, device):
    lines = sys.stdin.read().splitlines(keepends=True) if args.file == "-" else None
    examples = read_pairs("<stdin>" if args.file == "-" else args.file, lines)
    features = convert_examples_to_features(examples, None, args.max_seq_length, trained.tokenizer)
    probabilities = predict_probabilities(trained.model, feature_batches(features, args.batch_size),
                                          device)
    print("\t".join(["label"] + LABELS))
    for row in probabilities:
        print("\t".join([LABELS[int(row.argmax())]] + [f"{p:.4f}" for p in row]))


def _cli_eval(trained, args, device):
    examples = read_mnli_tsv(args.file)
    features = convert_examples_to_features(examples, LABELS, args.max_seq_length, trained.tokenizer)
    preds, labels = predict_labels(trained.model, feature_batches(features, args.batch_size), device)
    print(f"{args.file}: accuracy {float((preds == labels).mean()):.4f} ({len(labels)} pairs)")
    print(format_label_report(trained.source, label_report(preds, labels)))


def build_parser():
    from trained_models import add_model_arguments  # here: main.py imports this module too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    test = commands.add_parser("test", help="GLUE submission files from the MNLI test sets.")
    test.add_argument("--data_dir", required=True, help="Folder of test_matched.tsv, test_mismatched.tsv.")
    test.add_argument("--output_dir", required=True, help="Where MNLI-m.tsv and MNLI-mm.tsv go.")
    pairs = commands.add_parser("pairs", help="Classify new pairs (TSV with sentence1 and "
                                "sentence2 columns, or JSON lines); '-' reads stdin.")
    pairs.add_argument("file", nargs="?", default="-")
    evaluation = commands.add_parser("eval", help="Accuracy and per-label report of a labelled "
                                     "MNLI file.")
    evaluation.add_argument("file")
    for command in (test, pairs, evaluation):
        add_model_arguments(command)
        command.add_argument("--max_seq_length", type=int, default=None,
                             help="Pairs are cut to this many tokens (default: 128, or the "
                                  "model's max_position_embeddings when smaller).")
        command.add_argument("--batch_size", type=int, default=64)
        command.add_argument("--no_cuda", action="store_true")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", level=logging.WARNING)
    from trained_models import load_from_args
    device = "cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu"
    try:
        trained = load_from_args(args)
        limit = trained.bert_config.max_position_embeddings
        args.max_seq_length = args.max_seq_length or min(DEFAULT_MAX_SEQ_LENGTH, limit)
        if args.max_seq_length > limit:
            raise ValueError(f"--max_seq_length {args.max_seq_length} exceeds the model's "
                             f"max_position_embeddings {limit}")
        trained.model.to(device)
        {"test": _cli_test, "pairs": _cli_pairs, "eval": _cli_eval}[args.command](trained, args, device)
    except (ValueError, FileNotFoundError, PermissionError) as error:
        logger.error("%s", error)  # one line, as training reports a mistake
        sys.exit(1)


if __name__ == "__main__":
    main()
