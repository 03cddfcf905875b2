"""MNLI: reading the official TSV files, the accuracy metric, and encoding pairs into tensors."""
import csv
import dataclasses
import json
import logging
import os

import numpy as np
import torch

logger = logging.getLogger(__name__)

LABELS = ["contradiction", "entailment", "neutral"]
# Pairs without annotator consensus carry this gold label in the original MultiNLI release.
NO_CONSENSUS = "-"
REQUIRED_COLUMNS = ("index", "sentence1", "sentence2", "gold_label")
TEST_COLUMNS = ("index", "sentence1", "sentence2")  # test_*.tsv have no label columns
PAIR_COLUMNS = ("sentence1", "sentence2")  # new pairs to classify
# Parse-tree columns of real MNLI rows are long; the csv module's default limit is 128 KiB.
FIELD_SIZE_LIMIT = 2**31 - 1


@dataclasses.dataclass
class InputExample:
    """One premise/hypothesis pair; guid is '<file stem>-<index column>', e.g. 'train-17'."""
    guid: str
    text_a: str
    text_b: str
    label: str | None  # None in the unlabelled test files


def read_mnli_tsv(path):
    """The examples of one MNLI file (train.tsv: 12 columns, dev_*.tsv: 16 columns).

    Columns are found by their header names. Quote characters are plain text in MNLI, so the
    file is read with QUOTE_NONE. Rows whose gold label is '-' are skipped.
    """
    prefix = os.path.splitext(os.path.basename(path))[0]
    examples, skipped = [], 0
    for line, row in read_tsv_rows(path, REQUIRED_COLUMNS):
        label = row["gold_label"]
        if label == NO_CONSENSUS:
            skipped += 1
            continue
        if label not in LABELS:
            raise ValueError(f"{path}, line {line}: unknown gold_label {label!r}, "
                             f"expected one of {', '.join(LABELS)} (or '-')")
        examples.append(InputExample(f"{prefix}-{row['index']}", row["sentence1"],
                                     row["sentence2"], label))
    if skipped:
        logger.info("%s: skipped %d pairs whose gold_label is '-' (no consensus)", path, skipped)
    if not examples:
        raise ValueError(f"{path}: no examples (the header is followed by no labelled rows)")
    return examples


def read_mnli_test_tsv(path):
    """The unlabelled pairs of test_matched.tsv / test_mismatched.tsv (10 columns, the dev
    layout without the label columns); guid is the 'index' column, as GLUE's submission wants."""
    examples = [InputExample(row["index"], row["sentence1"], row["sentence2"], None)
                for _, row in read_tsv_rows(path, TEST_COLUMNS)]
    if not examples:
        raise ValueError(f"{path}: no examples (the header is followed by no rows)")
    return examples


def read_tsv_rows(path, required_columns, lines=None):
    """(line number, {column: value}) for each row of a tab-separated file with a header row.

    Every row must have as many columns as the header, which must name required_columns.
    lines: the file's lines when they are already read (stdin); path then only names them.
    """
    if lines is not None:
        yield from _tsv_rows(lines, path, required_columns)
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: MNLI data file not found")
    with open(path, encoding="utf-8-sig", newline="") as f:
        yield from _tsv_rows(f, path, required_columns)


def _tsv_rows(lines, path, required_columns):
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: empty file, expected a header row with the columns "
                         f"{', '.join(required_columns)}")
    missing = [name for name in required_columns if name not in header]
    if missing:
        raise ValueError(f"{path}, line 1: the header lacks the column(s) {', '.join(missing)}"
                         f" (expected {', '.join(required_columns)})")
    for row in reader:
        if len(row) != len(header):
            raise ValueError(f"{path}, line {reader.line_num}: expected {len(header)} "
                             f"tab-separated columns as in the header, found {len(row)}")
        yield reader.line_num, dict(zip(header, row))


def read_pairs(path, lines=None):
    """New sentence pairs to classify: a TSV file with a header naming sentence1 and sentence2,
    or JSON lines ({"sentence1": ..., "sentence2": ...} per line). path '-' with `lines`: text
    read from stdin, JSON lines when its first non-blank character is '{'."""
    if lines is None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: file of sentence pairs not found")
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().splitlines(keepends=True)
    first = next((line.lstrip() for line in lines if line.strip()), "")
    if path.endswith((".jsonl", ".json")) or first.startswith("{"):
        examples = list(_json_pairs(lines, path))
    else:
        examples = [InputExample(str(line), row["sentence1"], row["sentence2"], None)
                    for line, row in read_tsv_rows(path, PAIR_COLUMNS, lines)]
    if not examples:
        raise ValueError(f"{path}: no sentence pairs")
    return examples


def _json_pairs(lines, path):
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not JSON ({error.msg}); expected "
                             '{"sentence1": "...", "sentence2": "..."}') from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object with sentence1 and "
                             f"sentence2, got {type(record).__name__}")
        for key in PAIR_COLUMNS:
            if not isinstance(record.get(key), str):
                raise ValueError(f"{path}, line {number}: key {key!r}: expected a string, got "
                                 f"{record.get(key)!r}")
        yield InputExample(str(number), record["sentence1"], record["sentence2"], None)


class MnliProcessor:
    """MNLI with the matched dev set (dev_matched.tsv)."""
    task_name = "mnli"
    split_files = {"train": "train.tsv", "dev": "dev_matched.tsv"}

    def data_file(self, data_dir, split):
        """The path of the file that holds `split` ('train' or 'dev')."""
        if split not in self.split_files:
            raise ValueError(f"unknown split {split!r} for task {self.task_name}, "
                             f"expected one of {', '.join(self.split_files)}")
        return os.path.join(data_dir, self.split_files[split])

    def get_examples(self, data_dir, split):
        return read_mnli_tsv(self.data_file(data_dir, split))

    def get_train_examples(self, data_dir):
        return self.get_examples(data_dir, "train")

    def get_dev_examples(self, data_dir):
        return self.get_examples(data_dir, "dev")

    def get_labels(self):
        return list(LABELS)


class MnliMismatchedProcessor(MnliProcessor):
    """MNLI with the mismatched dev set (dev_mismatched.tsv); the same training file."""
    task_name = "mnli-mm"
    split_files = {"train": "train.tsv", "dev": "dev_mismatched.tsv"}


processors = {"mnli": MnliProcessor, "mnli-mm": MnliMismatchedProcessor}


def compute_metrics(task_name, preds, labels):
    """{'acc': fraction of preds equal to labels}; preds and labels are [N] arrays or lists."""
    if task_name not in processors:
        raise KeyError(f"unknown task {task_name!r}, expected one of {', '.join(processors)}")
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.shape != labels.shape or preds.size == 0:
        raise ValueError(f"{task_name}: expected predictions and labels of the same non-empty "
                         f"shape, got {preds.shape} and {labels.shape}")
    return {"acc": float((preds == labels).mean())}


def convert_examples_to_features(examples, label_list, max_seq_length, tokenizer,
                                 chunk_size=10_000):
    """Encode the pairs with a fast tokenizer, `chunk_size` pairs per call.

    Each call hands the whole chunk to the Rust tokenizer (which may use several threads), so no
    Python code runs per token. Pairs longer than max_seq_length are cut, longest segment first.
    Returns int64 tensors: input_ids, attention_mask and token_type_ids [N, max_seq_length],
    labels [N] (indices into label_list; left out when label_list is None: unlabelled pairs).
    """
    if not examples:
        raise ValueError("no examples to encode")
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length {max_seq_length} is too short for [CLS] a [SEP] b [SEP]")
    label_ids = {label: i for i, label in enumerate(label_list or [])}
    labels = np.empty(len(examples), dtype=np.int64)
    for i, example in enumerate(examples if label_list is not None else []):
        if example.label not in label_ids:
            raise ValueError(f"example {example.guid}: label {example.label!r} is not one of "
                             f"{', '.join(label_list)}")
        labels[i] = label_ids[example.label]

    columns = ("input_ids", "attention_mask", "token_type_ids")
    features = {name: np.empty((len(examples), max_seq_length), dtype=np.int64) for name in columns}
    for start in range(0, len(examples), chunk_size):
        chunk = examples[start:start + chunk_size]
        encoded = tokenizer([e.text_a for e in chunk], [e.text_b for e in chunk],
                            padding="max_length", truncation="longest_first",
                            max_length=max_seq_length, return_attention_mask=True,
                            return_token_type_ids=True, return_tensors="np")
        for name in columns:
            features[name][start:start + len(chunk)] = encoded[name]
    if label_list is not None:
        features["labels"] = labels
    return {name: torch.from_numpy(array) for name, array in features.items()}
