"""The tasks: GLUE's nine and your own labelled files. Each task says which files it reads and
how, its labels, and its metrics; examples are encoded into tensors here too.

    task = get_task("rte")
    task.get_examples(data_dir, "train")          # InputExamples of train.tsv
    task.dev_sets                                 # {"rte": "dev.tsv"}; MNLI: mnli and mnli-mm
    compute_metrics("rte", preds, labels)         # {"acc": ...}
    processors["mnli-mm"]().get_dev_examples(d)   # the original's API: dev_mismatched.tsv

GLUE's files are read with QUOTE_NONE: their sentences hold quote characters as plain text.
Your own data: `CustomTask` (pipeline/custom_task.py) reads TSV, CSV or JSON Lines with named columns.
"""

import csv
import dataclasses
import functools
import logging
import os
import typing

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

logger = logging.getLogger(__name__)

# MNLI's layout: train.tsv 12 columns, dev_*.tsv 16 (five annotators), test_*.tsv 10 (no labels).
MNLI_TEST_COLUMNS = (
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
)
MNLI_TRAIN_COLUMNS = MNLI_TEST_COLUMNS + ("label1", "gold_label")
MNLI_DEV_COLUMNS = MNLI_TEST_COLUMNS + ("label1", "label2", "label3", "label4", "label5", "gold_label")
MNLI_LABELS = ("contradiction", "entailment", "neutral")
LABELS = list(MNLI_LABELS)  # the default task's labels, in the order of the classifier's rows
# Pairs without annotator consensus carry this gold label in the original MultiNLI release.
NO_CONSENSUS = "-"
PAIR_COLUMNS = ("sentence1", "sentence2")  # new pairs to classify (predict.py pairs)
# Parse-tree columns of real MNLI rows are long; the csv module's default limit is 128 KiB.
FIELD_SIZE_LIMIT = 2**31 - 1
# The score a task is compared by: accuracy, except for the regression task.
MAIN_METRIC = {"classification": "acc", "regression": "pearson"}


@dataclasses.dataclass
class InputExample:
    """One example; guid is '<file stem>-<index column>' (e.g. 'train-17'), or in test files the
    index GLUE's submission wants. text_b is None for single-sentence tasks; label is a label
    name, a float (regression), or None (unlabelled)."""

    guid: str
    text_a: str
    text_b: str | None
    label: str | float | None


@dataclasses.dataclass(frozen=True)
class Columns:
    """Where a file layout keeps each field: header names, or positions when it has no header.
    label None: an unlabelled (test) layout; index None: the line number is the example's id."""

    text_a: str | int
    text_b: str | int | None
    label: str | int | None
    index: str | int | None
    header: bool = True

    def required(self):
        return [c for c in (self.index, self.text_a, self.text_b, self.label) if c is not None]


@dataclasses.dataclass
class Table:
    """The rows of one task file as read ({column: text} each; columns by position in a file
    without a header), to be written back in the same layout (augment.py)."""

    rows: list
    header: list | None  # None: no header row (CoLA's train file, JSON Lines)
    format: str = "tsv"  # tsv, csv or jsonl


def file_version(path):
    """{data_file (absolute), data_size, data_mtime_ns}: which version of a data file is read."""
    path = os.path.abspath(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: data file not found") from None
    return {"data_file": path, "data_size": str(stat.st_size), "data_mtime_ns": str(stat.st_mtime_ns)}


def tsv_text(table):
    """A Table as tab-separated text, its header first when it has one."""
    lines = (["\t".join(table.header)] if table.header else []) + [
        "\t".join(str(value) for value in row.values()) for row in table.rows
    ]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """One GLUE task: its folder, files, layouts, labels and metrics.

    labels: the label names in the order of the classifier's rows (GLUE's spellings, which
    its submission files use); None for a regression task (one output).
    dev_sets: {name: file} of the sets evaluated after each checkpoint (MNLI has two).
    test_sets: {GLUE submission name: test file}.
    """

    name: str
    folder: str  # GLUE's folder name, under the data root
    labels: tuple | None
    metrics: tuple  # the metrics computed on each dev set (compute_metrics), the main one first
    columns: Columns
    test_columns: Columns
    dev_sets: dict
    test_sets: dict
    train_file: str = "train.tsv"
    skip_labels: tuple = ()  # rows with these labels are left out (MNLI's '-')
    skip_short_rows: bool = False  # QQP: rows with missing fields are left out, and counted
    takes_columns: typing.ClassVar[bool] = False  # GLUE's files name their columns themselves

    @property
    def output_mode(self):
        return "regression" if self.labels is None else "classification"

    @property
    def num_labels(self):
        return 1 if self.labels is None else len(self.labels)

    @property
    def label_list(self):
        """The labels as a list (None for regression): what encoding and evaluation take."""
        return None if self.labels is None else list(self.labels)

    def get_labels(self):  # the original processors' name
        return self.label_list

    def open(self, data_dir, columns=None):
        """(this task, the folder of its files) for --data_dir (see locate); `columns` are a
        custom task's (the options refuse them for GLUE's tasks)."""
        return self.locate(data_dir)

    def locate(self, data_dir):
        """(this task, the folder of its files): data_dir itself when it holds the training
        file, else GLUE's folder of the task under it (data_dir/RTE for rte), as the scripts
        pass the data root."""
        if not os.path.exists(os.path.join(data_dir, self.train_file)) and os.path.isdir(
            os.path.join(data_dir, self.folder)
        ):
            return self, os.path.join(data_dir, self.folder)
        return self, data_dir

    def from_record(self, record, path):
        """This task, as a run's task.json at `path` records it (see record)."""
        if record.get("labels") != self.label_list:
            raise ValueError(f"{path}: records the labels {record.get('labels')} for {self.name}, whose "
                             f"classifier rows are {self.label_list}: a record of another version?")  # fmt: skip
        return self

    def without_record(self, folder):
        """This task for a model folder without task.json: the name says it all."""
        return self

    @property
    def text_columns(self):
        """The text column(s) of the task's test files: what new examples to classify hold."""
        return tuple(c for c in (self.test_columns.text_a, self.test_columns.text_b) if c)

    @property
    def train_columns(self):
        """(text_a, text_b or None, label) columns of the training file's layout."""
        return self.columns.text_a, self.columns.text_b, self.columns.label

    @property
    def where_files_go(self):
        files = ", ".join([self.train_file, *self.dev_sets.values(), *self.test_sets.values()])
        return f"task {self.name} reads GLUE's {self.folder} folder ({files}) at --data_dir/{self.folder} or at --data_dir"

    def record(self):
        """What a run's task.json keeps of this task (pipeline/tasks.py)."""
        return {"task_name": self.name, "labels": self.label_list}

    def read_table(self, path):
        """The rows of a file in the training layout, to rewrite in that layout (table_text)."""
        rows = [row for _, row in read_tsv_rows(path, self.columns)]
        return Table(rows, list(rows[0]) if rows and self.columns.header else None)

    def table_text(self, table):
        return tsv_text(table)

    def data_file(self, data_dir, split):
        """The path of 'train', a dev set's name, or a test set's name."""
        files = {"train": self.train_file, **self.dev_sets, **self.test_sets}
        if split not in files:
            raise ValueError(
                f"unknown split {split!r} for task {self.name}, expected one of {', '.join(files)}"
            )
        return os.path.join(data_dir, files[split])

    def is_test_set(self, split):
        return split in self.test_sets

    def data_version(self, data_dir, split):
        """Which version of a split's file is read (the feature cache's key): file_version."""
        return file_version(self.data_file(data_dir, split))

    def from_dataset(self, source, columns=None):
        """This task, reading a dataset's splits (pipeline/hub_dataset.py): its labels are GLUE's."""
        return self

    def get_examples(self, data_dir, split):
        path = self.data_file(data_dir, split)
        return self.read_file(path, labelled=not self.is_test_set(split))

    def get_train_examples(self, data_dir):
        return self.get_examples(data_dir, "train")

    def get_dev_examples(self, data_dir):
        """The first dev set's examples (MNLI: dev_matched)."""
        return self.get_examples(data_dir, next(iter(self.dev_sets)))

    def read_transfer_file(self, path):
        """Unlabelled examples in the train file's layout (a transfer set, main.py --transfer_file):
        its label column, if it has one, is not read."""
        return self.read_file(path, labelled=False, columns=dataclasses.replace(self.columns, label=None))

    def read_file(self, path, labelled=True, columns=None):
        """The examples of one file of this task; labelled=False for a test file (its layout, or
        the one `columns` gives)."""
        columns = columns or (self.columns if labelled else self.test_columns)
        prefix = os.path.splitext(os.path.basename(path))[0]
        examples, skipped, short = [], 0, 0
        for line, row in read_tsv_rows(path, columns, tolerate_short=self.skip_short_rows):
            if row is None:
                short += 1
                continue
            label = None
            if labelled:
                label = row[columns.label]
                if label in self.skip_labels:
                    skipped += 1
                    continue
                label = self.check_label(label, path, line)
            index = row[columns.index] if columns.index is not None else str(line)
            guid = f"{prefix}-{index}" if labelled else index
            text_b = row[columns.text_b] if columns.text_b is not None else None
            examples.append(InputExample(guid, row[columns.text_a], text_b, label))
        if skipped:
            logger.info(
                "%s: skipped %d examples labelled %s", path, skipped, " or ".join(map(repr, self.skip_labels))
            )
        if short:
            logger.warning("%s: skipped %d rows with fewer columns than the header", path, short)
        if not examples:
            raise ValueError(f"{path}: no examples (the file has no {'labelled ' if labelled else ''}rows)")
        return examples

    def check_label(self, label, path, line):
        """A label read from a file: one of the task's names, or a float for regression."""
        if self.labels is None:
            try:
                return float(label)
            except ValueError:
                raise ValueError(f"{path}, line {line}: score {label!r} is not a number") from None
        if label not in self.labels:
            also = f" (or {', '.join(map(repr, self.skip_labels))})" if self.skip_labels else ""
            raise ValueError(
                f"{path}, line {line}: unknown {_column_name(self.columns.label)} "
                f"{label!r}, expected one of {', '.join(self.labels)}{also}"
            )
        return label


def _column_name(column):
    return column if isinstance(column, str) else f"label (column {column + 1})"


def _with_header(
    name,
    folder,
    labels,
    text_a,
    text_b,
    label,
    dev_sets,
    test_sets,
    index="index",
    test_index="index",
    metrics=("acc",),
    **kwargs,
):
    return GlueTask(
        name,
        folder,
        labels,
        metrics,
        Columns(text_a, text_b, label, index),
        Columns(text_a, text_b, None, test_index),
        dev_sets,
        test_sets,
        **kwargs,
    )


BINARY = ("0", "1")
TASKS = {
    task.name: task
    for task in [
        # CoLA's train and dev files have no header: source, label, original label, sentence.
        GlueTask(
            "cola",
            "CoLA",
            BINARY,
            ("acc", "mcc"),
            Columns(3, None, 1, None, header=False),
            Columns("sentence", None, None, "index"),
            {"cola": "dev.tsv"},
            {"CoLA": "test.tsv"},
        ),
        _with_header(
            "sst-2",
            "SST-2",
            BINARY,
            "sentence",
            None,
            "label",
            {"sst-2": "dev.tsv"},
            {"SST-2": "test.tsv"},
            index=None,
        ),
        _with_header(
            "mrpc",
            "MRPC",
            BINARY,
            "#1 String",
            "#2 String",
            "Quality",
            {"mrpc": "dev.tsv"},
            {"MRPC": "test.tsv"},
            index=None,
            metrics=("acc", "f1"),
        ),
        _with_header(
            "sts-b",
            "STS-B",
            None,
            "sentence1",
            "sentence2",
            "score",
            {"sts-b": "dev.tsv"},
            {"STS-B": "test.tsv"},
            metrics=("pearson", "spearmanr"),
        ),
        _with_header(
            "qqp",
            "QQP",
            BINARY,
            "question1",
            "question2",
            "is_duplicate",
            {"qqp": "dev.tsv"},
            {"QQP": "test.tsv"},
            index="id",
            test_index="id",
            metrics=("acc", "f1"),
            skip_short_rows=True,
        ),
        _with_header(
            "mnli",
            "MNLI",
            MNLI_LABELS,
            "sentence1",
            "sentence2",
            "gold_label",
            {"mnli": "dev_matched.tsv", "mnli-mm": "dev_mismatched.tsv"},
            {"MNLI-m": "test_matched.tsv", "MNLI-mm": "test_mismatched.tsv"},
            skip_labels=(NO_CONSENSUS,),
        ),
        _with_header(
            "qnli",
            "QNLI",
            ("entailment", "not_entailment"),
            "question",
            "sentence",
            "label",
            {"qnli": "dev.tsv"},
            {"QNLI": "test.tsv"},
        ),
        _with_header(
            "rte",
            "RTE",
            ("entailment", "not_entailment"),
            "sentence1",
            "sentence2",
            "label",
            {"rte": "dev.tsv"},
            {"RTE": "test.tsv"},
        ),
        _with_header(
            "wnli",
            "WNLI",
            BINARY,
            "sentence1",
            "sentence2",
            "label",
            {"wnli": "dev.tsv"},
            {"WNLI": "test.tsv"},
        ),
    ]
}
# The dev set names of every task, for compute_metrics (MNLI's mnli-mm among them).
DEV_SET_TASKS = {dev_set: task for task in TASKS.values() for dev_set in task.dev_sets}


class GlueProcessor:
    """The original example's processor of one dev set's name, over its GlueTask: the task's
    train file, that dev set (processors["mnli-mm"]: dev_mismatched.tsv) and its labels."""

    def __init__(self, task, dev_set):
        self.task, self.dev_set = task, dev_set

    def get_train_examples(self, data_dir):
        return self.task.get_train_examples(data_dir)

    def get_dev_examples(self, data_dir):
        return self.task.get_examples(data_dir, self.dev_set)

    def get_labels(self):
        """The labels in the classifier's order; [None] for STS-B's one output, as the original."""
        return self.task.label_list or [None]


# The original's tables, by dev set name: processors[name]() (a processor, as its classes gave),
# output_modes[name], and GLUE_TASKS_NUM_LABELS by task.
processors = {name: functools.partial(GlueProcessor, task, name) for name, task in DEV_SET_TASKS.items()}
output_modes = {name: task.output_mode for name, task in DEV_SET_TASKS.items()}
GLUE_TASKS_NUM_LABELS = {name: task.num_labels for name, task in TASKS.items()}


def get_task(name):
    """The GLUE task of that name (case-insensitive: 'SST-2' and 'sst-2' alike)."""
    task = TASKS.get(name.lower())
    if task is None:
        raise ValueError(f"unknown task {name!r}; GLUE tasks: {', '.join(TASKS)} (or custom)")
    return task


def read_mnli_tsv(path):
    """The labelled examples of an MNLI train or dev file (rows labelled '-' are skipped)."""
    return TASKS["mnli"].read_file(path)


def read_mnli_test_tsv(path):
    """The unlabelled pairs of test_matched.tsv / test_mismatched.tsv."""
    return TASKS["mnli"].read_file(path, labelled=False)


def read_tsv_rows(path, columns, lines=None, tolerate_short=False):
    """(line number, row) for each row of a tab-separated file; row maps column names (or
    positions, for a file without a header) to values.

    Every row must have as many columns as the header (with columns.header), which must name
    columns.required(); without a header, enough columns for the positions used. A row with too
    few columns is an error, or (tolerate_short) yields row None. lines: the file's lines when
    already read (stdin); path then only names them.
    """
    if lines is not None:
        yield from _tsv_rows(lines, path, columns, tolerate_short)
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: data file not found")
    with open(path, encoding="utf-8-sig", newline="") as f:
        yield from _tsv_rows(f, path, columns, tolerate_short)


def read_header(reader, required, path):
    """The first row of a csv reader: a header naming every column in `required`."""
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: empty file, expected a header row with the columns {', '.join(required)}")
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(
            f"{path}, line 1: the header lacks the column(s) {', '.join(missing)} "
            f"(expected {', '.join(required)}; it has {', '.join(header)})"
        )
    return header


def _tsv_rows(lines, path, columns, tolerate_short):
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    required = columns.required()
    if columns.header:
        header = read_header(reader, required, path)
        width = len(header)
    else:
        header, width = None, max(required) + 1
    for row in reader:
        if (len(row) != width) if header else (len(row) < width):
            if tolerate_short and len(row) < width:
                yield reader.line_num, None
                continue
            expected = (
                f"{width} tab-separated columns as in the header"
                if header
                else f"at least {width} tab-separated columns"
            )
            raise ValueError(f"{path}, line {reader.line_num}: expected {expected}, found {len(row)}")
        yield reader.line_num, dict(zip(header, row)) if header else dict(enumerate(row))


def compute_metrics(task_name, preds, labels):
    """The GLUE metrics of one of GLUE's dev sets ('mnli', 'mnli-mm', 'rte', ...): {'acc': ...}
    and the task's others ('mcc', 'f1'; STS-B: 'pearson', 'spearmanr'), as the original's
    compute_metrics named them. preds and labels: [N] arrays, label indices or (regression) scores."""
    task = DEV_SET_TASKS.get(task_name)
    if task is None:
        raise KeyError(f"unknown task {task_name!r}, expected one of {', '.join(DEV_SET_TASKS)}")
    return metrics_of(task.metrics, preds, labels, task_name)


METRICS = {
    "acc": lambda preds, labels: float((preds == labels).mean()),
    "mcc": lambda preds, labels: float(matthews_corrcoef(labels, preds)),
    "f1": lambda preds, labels: float(f1_score(labels, preds, pos_label=1, zero_division=0)),
    "pearson": lambda preds, labels: _correlation(pearsonr, preds, labels),
    "spearmanr": lambda preds, labels: _correlation(spearmanr, preds, labels),
}


def metrics_of(names, preds, labels, what):
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.shape != labels.shape or preds.size == 0:
        raise ValueError(
            f"{what}: expected predictions and labels of the same non-empty "
            f"shape, got {preds.shape} and {labels.shape}"
        )
    return {name: METRICS[name](preds, labels) for name in names}


def _correlation(function, preds, labels):
    """A correlation coefficient; 0 when either side is constant (it is undefined there)."""
    if np.ptp(preds) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(function(preds, labels)[0])


def convert_examples_to_features(
    examples, label_list, max_seq_length, tokenizer, chunk_size=10_000, labelled=True
):
    """Encode the examples with a fast tokenizer, `chunk_size` examples per call.

    Each call hands the whole chunk to the Rust tokenizer (which may use several threads), so no
    Python code runs per token. Pairs longer than max_seq_length are cut, longest segment first.
    Returns int64 tensors: input_ids, attention_mask and token_type_ids [N, max_seq_length], and
    labels [N]: indices into label_list, or float scores when label_list is None (regression).
    labelled=False (unlabelled pairs) leaves labels out.
    """
    if not examples:
        raise ValueError("no examples to encode")
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length {max_seq_length} is too short for [CLS] a [SEP] b [SEP]")
    labels = _label_array(examples, label_list) if labelled else None
    columns = ("input_ids", "attention_mask", "token_type_ids")
    features = {name: np.empty((len(examples), max_seq_length), dtype=np.int64) for name in columns}
    pairs = examples[0].text_b is not None
    for start in range(0, len(examples), chunk_size):
        chunk = examples[start : start + chunk_size]
        second = [e.text_b for e in chunk] if pairs else None
        encoded = tokenizer(
            [e.text_a for e in chunk],
            second,
            padding="max_length",
            truncation="longest_first",
            max_length=max_seq_length,
            return_attention_mask=True,
            return_token_type_ids=True,
            return_tensors="np",
        )
        for name in columns:
            features[name][start : start + len(chunk)] = encoded[name]
    if labels is not None:
        features["labels"] = labels
    return {name: torch.from_numpy(array) for name, array in features.items()}


def _label_array(examples, label_list):
    if label_list is None:  # regression: the scores themselves
        return np.array([float(e.label) for e in examples], dtype=np.float32)
    label_ids = {label: i for i, label in enumerate(label_list)}
    labels = np.empty(len(examples), dtype=np.int64)
    for i, example in enumerate(examples):
        if example.label not in label_ids:
            raise ValueError(
                f"example {example.guid}: label {example.label!r} is not one of {', '.join(label_list)}"
            )
        labels[i] = label_ids[example.label]
    return labels
