"""Predictions from a trained model: GLUE submission files for a task's test sets, labels for
new examples, and the metrics of a labelled file.

    python predict.py test  MODEL --data_dir RTE --output_dir OUT   # OUT/RTE.tsv (MNLI: MNLI-m.tsv, MNLI-mm.tsv)
    python predict.py pairs MODEL [pairs.tsv | pairs.jsonl | -]     # label and probabilities
    python predict.py eval  MODEL dev_matched.tsv                   # metrics, per-label report

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
from pipeline.custom_task import read_pairs
from pipeline.data import feature_batches
from pipeline.evaluation import format_label_report, label_report, predict_labels, predict_outputs
from pipeline.options import DEFAULT_MAX_SEQ_LENGTH
from pipeline.submission import prediction_text, read_test_sets, write_submissions
from pipeline.trained_models import add_model_arguments, load_from_args
from utils_glue import MAIN_METRIC, convert_examples_to_features, metrics_of, task_data_dir

logger = logging.getLogger(__name__)


def _cli_test(trained, args, device):
    data_dir = task_data_dir(args.data_dir, trained.task)
    task = trained.task.with_files_in(data_dir)  # a custom task's test file is found in data_dir
    test_sets = read_test_sets(task, data_dir, trained.tokenizer, args.max_seq_length)
    os.makedirs(args.output_dir, exist_ok=True)
    write_submissions(trained.model, test_sets, args.output_dir, args.batch_size, device, task.label_list)


def _cli_pairs(trained, args, device):
    task = trained.task
    text = sys.stdin.read() if args.file == "-" else None
    examples = read_pairs("<stdin>" if args.file == "-" else args.file, text, task.text_columns)
    features = convert_examples_to_features(
        examples, task.label_list, args.max_seq_length, trained.tokenizer, labelled=False
    )
    outputs = predict_outputs(trained.model, feature_batches(features, args.batch_size), device)
    labels = task.label_list
    print("\t".join(["label"] + labels) if labels is not None else "score")
    for row in outputs:
        print(
            "\t".join([prediction_text(row, labels)] + [f"{p:.4f}" for p in row])
            if labels is not None
            else f"{float(row[0]):.4f}"
        )


def _cli_eval(trained, args, device):
    task = trained.task
    examples = task.read_file(args.file)
    features = convert_examples_to_features(examples, task.label_list, args.max_seq_length, trained.tokenizer)
    preds, labels = predict_labels(trained.model, feature_batches(features, args.batch_size), device)
    main = MAIN_METRIC[task.output_mode]
    metrics = metrics_of((main,) + tuple(m for m in task.metrics if m != main), preds, labels, args.file)
    print(
        f"{args.file}: "
        + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        + f" ({len(labels)} examples)"
    )
    if task.labels is not None:
        print(format_label_report(trained.source, label_report(preds, labels, task.label_list)))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    test = commands.add_parser("test", help="GLUE submission files from the task's test files.")
    test.add_argument(
        "--data_dir",
        required=True,
        help="The task's folder (MNLI: test_matched.tsv, test_mismatched.tsv), or "
        "the folder above GLUE's task folders.",
    )
    test.add_argument("--output_dir", required=True, help="Where the submission files go.")
    pairs = commands.add_parser(
        "pairs",
        help="Classify new examples (TSV, CSV or JSON lines with the task's text columns); '-' reads stdin.",
    )
    pairs.add_argument("file", nargs="?", default="-")
    evaluation = commands.add_parser(
        "eval", help="The metrics and per-label report of a labelled file of the task."
    )
    evaluation.add_argument("file")
    for command in (test, pairs, evaluation):
        add_model_arguments(command)
        command.add_argument(
            "--max_seq_length",
            type=int,
            default=None,
            help=f"Examples are cut to this many tokens (default: "
            f"{DEFAULT_MAX_SEQ_LENGTH}, or the model's "
            f"max_position_embeddings when smaller).",
        )
        command.add_argument("--batch_size", type=int, default=64)
        command.add_argument("--no_cuda", action="store_true")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.WARNING
    )
    device = "cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu"
    try:
        trained = load_from_args(args)
        config = trained.bert_config
        args.max_seq_length = args.max_seq_length or min(
            DEFAULT_MAX_SEQ_LENGTH, config.max_position_embeddings
        )
        check_max_seq_length(args.max_seq_length, config, "model")
        trained.model.to(device)
        {"test": _cli_test, "pairs": _cli_pairs, "eval": _cli_eval}[args.command](trained, args, device)
    except (ValueError, FileNotFoundError, PermissionError) as error:
        logger.error("%s", error)  # one line, as training reports a mistake
        sys.exit(1)


if __name__ == "__main__":
    main()
