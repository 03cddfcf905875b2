"""Predictions from a trained model: GLUE submission files for a task's test sets, labels for
new examples, and the metrics of a labelled file.

    python predict.py test  MODEL --data_dir RTE --output_dir OUT   # OUT/RTE.tsv (MNLI: MNLI-m.tsv, MNLI-mm.tsv)
    python predict.py pairs MODEL [pairs.tsv | pairs.jsonl | -]     # label and probabilities
    python predict.py eval  MODEL dev_matched.tsv                   # metrics, per-label report
    python predict.py test  MODEL --dataset nyu-mll/glue --output_dir OUT   # a dataset's test splits
    python predict.py eval  MODEL --dataset nyu-mll/glue            # each of its dev splits

MODEL: --model EXPORTED_FOLDER, or --model_config_json JSON [--which teacher0] [--checkpoint
gs*.pkl or RUN_FOLDER] (see pipeline/trained_models.py). The task is the one the model's folder records
(task.json), else --task_name (default mnli). New examples name the task's text columns
(MNLI: sentence1 and sentence2; SST-2: sentence; a custom task: its own).
"""

import argparse
import logging
import os
import sys

import torch

from modeling import check_max_seq_length
from pipeline.commands import errors_in_one_line, start_logging
from pipeline.custom_task import read_pairs
from pipeline.data import feature_batches
from pipeline.evaluation import format_label_report, label_report, predict_labels, predict_outputs
from pipeline.options import (
    DEFAULT_MAX_SEQ_LENGTH,
    add_data_source,
    add_max_seq_length,
    add_model_options,
    add_no_cuda,
    add_output_dir,
    add_predict_batch_size,
    model_choice,
)
from pipeline.submission import prediction_text, read_test_sets, write_submissions
from pipeline.tasks import with_data
from pipeline.trained_models import load_trained
from utils_glue import MAIN_METRIC, convert_examples_to_features, metrics_of

logger = logging.getLogger(__name__)


def _cli_test(trained, args, device):
    task, data_dir = with_data(trained.task, args.data_dir, args.dataset)  # a custom task's test file too
    test_sets = read_test_sets(task, data_dir, trained.tokenizer, args.max_seq_length)
    os.makedirs(args.output_dir, exist_ok=True)
    write_submissions(
        trained.model, test_sets, args.output_dir, args.predict_batch_size, device, task.label_list
    )


def _cli_pairs(trained, args, device):
    task = trained.task
    text = sys.stdin.read() if args.file == "-" else None
    examples = read_pairs("<stdin>" if args.file == "-" else args.file, text, task.text_columns)
    features = convert_examples_to_features(
        examples, task.label_list, args.max_seq_length, trained.tokenizer, labelled=False
    )
    outputs = predict_outputs(trained.model, feature_batches(features, args.predict_batch_size), device)
    labels = task.label_list
    print("\t".join(["label"] + labels) if labels is not None else "score")
    for row in outputs:
        print(
            "\t".join([prediction_text(row, labels)] + [f"{p:.4f}" for p in row])
            if labels is not None
            else f"{float(row[0]):.4f}"
        )


def _cli_eval(trained, args, device):
    if (args.file is None) == (args.dataset is None):
        raise ValueError("eval: name a labelled file, or --dataset (its dev splits), one of them")
    if args.file is not None:
        return _evaluate(trained, args, device, args.file, trained.task.read_file(args.file))
    task, dataset = with_data(trained.task, dataset=args.dataset)
    for name in task.dev_sets:
        _evaluate(trained, args, device, task.data_file(dataset, name), task.get_examples(dataset, name))


def _evaluate(trained, args, device, what, examples):
    task = trained.task
    features = convert_examples_to_features(examples, task.label_list, args.max_seq_length, trained.tokenizer)
    preds, labels = predict_labels(trained.model, feature_batches(features, args.predict_batch_size), device)
    main = MAIN_METRIC[task.output_mode]
    metrics = metrics_of((main,) + tuple(m for m in task.metrics if m != main), preds, labels, what)
    print(
        f"{what}: "
        + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        + f" ({len(labels)} examples)"
    )
    if task.labels is not None:
        print(format_label_report(trained.source, label_report(preds, labels, task.label_list)))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    test = commands.add_parser("test", help="GLUE submission files from the task's test files.")
    add_data_source(test, help="The task's folder (MNLI: test_matched.tsv, test_mismatched.tsv), or "
                    "the folder above GLUE's task folders.")  # fmt: skip
    add_output_dir(test, "Where the submission files go.")
    pairs = commands.add_parser(
        "pairs",
        help="Classify new examples (TSV, CSV or JSON lines with the task's text columns); '-' reads stdin.",
    )
    pairs.add_argument("file", nargs="?", default="-")
    evaluation = commands.add_parser(
        "eval",
        help="The metrics and per-label report of a labelled file of the task, or of a dataset's dev splits.",
    )
    evaluation.add_argument("file", nargs="?", default=None)
    evaluation.add_argument("--dataset", default=None, help="A Hugging Face dataset (see main.py --dataset).")
    for command in (test, pairs, evaluation):
        add_model_options(command)
        add_max_seq_length(command, None, help=f"Examples are cut to this many tokens (default: "
                           f"{DEFAULT_MAX_SEQ_LENGTH}, or the model's max_position_embeddings when smaller).")  # fmt: skip
        add_predict_batch_size(command, 64, aliases=["--batch_size"])
        add_no_cuda(command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    start_logging(logging.WARNING)
    device = "cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu"
    with errors_in_one_line(logger):  # as training reports a mistake
        trained = load_trained(**model_choice(args))
        config = trained.bert_config
        args.max_seq_length = args.max_seq_length or min(
            DEFAULT_MAX_SEQ_LENGTH, config.max_position_embeddings
        )
        check_max_seq_length(args.max_seq_length, config, "model")
        trained.model.to(device)
        {"test": _cli_test, "pairs": _cli_pairs, "eval": _cli_eval}[args.command](trained, args, device)


if __name__ == "__main__":
    main()
