"""A task's examples from a Hugging Face dataset (--dataset, in place of --data_dir's files):

    python main.py --task_name mnli --dataset nyu-mll/glue ...   # the Hub's dataset, its mnli configuration
    python main.py --task_name rte --dataset rte-saved/ ...      # a folder written by save_to_disk
    python main.py --task_name rte --dataset glue/ ...           # a folder of the Hub's parquet files

A Hub id is read with the task as its configuration (GLUE_LAYOUTS: sst-2 is sst2, sts-b is
stsb), from the local cache when HF_DATASETS_OFFLINE=1. A folder of parquet files holds, in the
task's configuration folder (glue/rte/) or in itself, <split>-*.parquet (the Hub's layout) or
<split>/*.parquet. The `datasets` library reads them; it is optional, imported here only.

A DatasetTask answers the task interface (pipeline/tasks.py) for GLUE's tasks and your own
alike, from the dataset's splits:
  - The splits have GLUE's names on the Hub: train, validation (MNLI: validation_matched and
    validation_mismatched) and test (MNLI: test_matched, test_mismatched); another name is an
    error. A test split is read without labels (the Hub's are -1) and keeps its `idx`, the index
    GLUE's submission files want.
  - Labels are matched by name. A ClassLabel column's names are put into the task's order: the
    Hub numbers MNLI's entailment 0, neutral 1, contradiction 2, the task's rows are
    contradiction, entailment, neutral. Where GLUE's files write 0 and 1, the Hub names the
    labels (GLUE_LAYOUTS' names: MRPC's not_equivalent is 0, equivalent 1). Names that match no
    label of the task are refused. A plain column's values are read as a file's are.
  - The feature cache's key holds each split's fingerprint (data_version): another revision
    of the dataset never reuses the features of the last.
"""

import dataclasses
import glob
import logging
import os

from pipeline.commands import MissingDependency
from pipeline.custom_task import NAME as CUSTOM_DEV_SET
from pipeline.custom_task import TEST_SET as CUSTOM_TEST_SET
from pipeline.custom_task import read_records, table_text
from utils_glue import TASKS, InputExample, Table

logger = logging.getLogger(__name__)

TRAIN = "train"
INDEX = "idx"  # a test row's index in GLUE's submission files
SAVED_TO_DISK = ("dataset_dict.json", "state.json")  # what save_to_disk writes into its folder
# The Value types of a regression task's scores.
NUMBERS = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a task's fields and sets are in a dataset."""

    config: str | None  # the task's configuration of a Hub dataset (nyu-mll/glue's)
    text_a: str
    text_b: str | None
    label: str
    dev_sets: dict  # {dev set name: split}
    test_sets: dict  # {submission name: split}
    names: dict = dataclasses.field(default_factory=dict)  # {a Hub label name: the task's label}


def _glue(task, config, texts, names=None, dev=("validation",), test=("test",)):
    """A GLUE task as the Hub's nyu-mll/glue lays it out: its configuration, its text columns,
    the names of the labels GLUE's files write 0 and 1, its sets' names paired with the splits'."""
    return Layout(
        config,
        texts[0],
        texts[1] if len(texts) > 1 else None,
        "label",
        dict(zip(TASKS[task].dev_sets, dev, strict=True)),
        dict(zip(TASKS[task].test_sets, test, strict=True)),
        dict(zip(names, ("0", "1"), strict=True)) if names else {},
    )


PAIR = ("sentence1", "sentence2")
GLUE_LAYOUTS = {
    "cola": _glue("cola", "cola", ("sentence",), ("unacceptable", "acceptable")),
    "sst-2": _glue("sst-2", "sst2", ("sentence",), ("negative", "positive")),
    "mrpc": _glue("mrpc", "mrpc", PAIR, ("not_equivalent", "equivalent")),
    "sts-b": _glue("sts-b", "stsb", PAIR),
    "qqp": _glue("qqp", "qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
    "mnli": _glue(
        "mnli",
        "mnli",
        ("premise", "hypothesis"),
        dev=("validation_matched", "validation_mismatched"),
        test=("test_matched", "test_mismatched"),
    ),
    "qnli": _glue("qnli", "qnli", ("question", "sentence")),
    "rte": _glue("rte", "rte", PAIR),
    "wnli": _glue("wnli", "wnli", PAIR, ("not_entailment", "entailment")),
}


def layout_of(task):
    """GLUE's tasks as the Hub lays them out; your own with the columns the options name, and
    the splits train, validation and test."""
    if task.takes_columns:
        text_a, text_b, label = task.train_columns
        return Layout(None, text_a, text_b, label, {CUSTOM_DEV_SET: "validation"}, {CUSTOM_TEST_SET: "test"})
    return GLUE_LAYOUTS[task.name]


def open_dataset(kind, reference, columns=None):
    """(the task of tasks.task_kind's `kind` reading the dataset, reference); columns: a custom
    task's ({option name: column or None})."""
    layout = GLUE_LAYOUTS.get(kind.name)
    source = open_source(reference, layout.config if layout else None)
    task = kind.from_dataset(source, columns)
    return DatasetTask(task, source, layout_of(task)), reference


def read_dataset(task, reference):
    """(a known task (a trained model's) reading the dataset, reference)."""
    layout = layout_of(task)
    return DatasetTask(task, open_source(reference, layout.config), layout), reference


def import_datasets():
    try:
        import datasets
    except ImportError:
        raise MissingDependency(
            "--dataset reads with the Hugging Face `datasets` library, which is not installed: "
            "pip install datasets"
        ) from None
    return datasets


def open_source(reference, config=None):
    """The DatasetSource of a Hub id (with the task's configuration), a folder written by
    save_to_disk, or a folder of parquet files."""
    datasets = import_datasets()
    where = f"--dataset {reference}" + (f" (configuration {config})" if config else "")
    try:
        if os.path.isdir(reference):
            splits, config = _read_folder(datasets, reference, config)
            reference = os.path.abspath(reference)
        else:
            splits = datasets.load_dataset(reference, config)
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}: cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(splits, datasets.DatasetDict):
        raise ValueError(f"{where}: holds one dataset without split names; save a DatasetDict "
                         "({'train': ..., 'validation': ...}) instead")  # fmt: skip
    return DatasetSource(reference, config, dict(splits))


def _read_folder(datasets, folder, config):
    """(the splits of a local folder, the configuration read: None unless a subfolder of it)."""
    if any(os.path.isfile(os.path.join(folder, name)) for name in SAVED_TO_DISK):
        return datasets.load_from_disk(folder), None
    if config and os.path.isdir(os.path.join(folder, config)):
        folder = os.path.join(folder, config)
    else:
        config = None
    files = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.parquet"))):  # <split>-00000-of-00001.parquet
        files.setdefault(os.path.basename(path)[: -len(".parquet")].split("-")[0], []).append(path)
    for path in sorted(glob.glob(os.path.join(folder, "*", "*.parquet"))):  # <split>/0000.parquet
        files.setdefault(os.path.basename(os.path.dirname(path)), []).append(path)
    if not files:
        raise FileNotFoundError(
            f"{folder}: neither a folder written by save_to_disk ({' or '.join(SAVED_TO_DISK)}) nor "
            "one of parquet files (<split>-*.parquet or <split>/*.parquet, or a folder of them named "
            "after the task's configuration)"
        )
    return datasets.load_dataset("parquet", data_files=files), config


@dataclasses.dataclass
class DatasetSource:
    """A dataset's splits, {split name: datasets.Dataset}."""

    reference: str  # the Hub id, or the folder's absolute path
    config: str | None
    splits: dict

    def __str__(self):
        return f"{self.reference} ({self.config})" if self.config else self.reference

    def split(self, name):
        if name not in self.splits:
            raise ValueError(f"--dataset {self}: no split {name!r} (it has {', '.join(self.splits)})")
        return self.splits[name]

    def check_columns(self, split, columns):
        data = self.split(split)
        missing = [column for column in columns if column not in data.column_names]
        if missing:
            raise ValueError(f"--dataset {self}, split {split}: no column {', '.join(map(repr, missing))} "
                             f"(the task reads {', '.join(columns)}; the split has "
                             f"{', '.join(data.column_names)})")  # fmt: skip

    def label_names(self, split, column):
        """The names a ClassLabel column declares, in its numbers' order; None for a plain column."""
        return getattr(self.split(split).features[column], "names", None)

    def column(self, split, column):
        return self.split(split).select_columns([column]).to_dict()[column]

    def label_texts(self, split, column):
        """A labelled split's label values as text: a ClassLabel's names, numbers as a file
        writes them (1.0 as 1)."""
        self.check_columns(split, [column])
        names = self.label_names(split, column)
        texts = [value_text(value, names) for value in self.column(split, column)]
        for row, text in enumerate(texts):
            if text is None:
                raise ValueError(f"--dataset {self}, split {split}, row {row}: no label in a labelled split")
        return texts


def value_text(value, names=None):
    """A label value as text (None for none: a ClassLabel's -1, a null), as a file would hold it."""
    if value is None or (names is not None and value < 0):
        return None
    if names is not None:
        return names[value]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def holds_scores(feature):
    """Whether a column holds numbers a regression task reads (a ClassLabel's are int64, but name classes)."""
    return getattr(feature, "dtype", None) in NUMBERS and not hasattr(feature, "names")


class DatasetTask:
    """The task interface (pipeline/tasks.py's Task) over a dataset's splits: `task`'s labels,
    metrics and record (task.json is the same as from files), the dataset's examples."""

    # What the task itself answers (see Task).
    DELEGATED = frozenset({"name", "labels", "metrics", "output_mode", "num_labels", "label_list",
                           "get_labels", "text_columns", "takes_columns", "skip_labels", "record"})  # fmt: skip

    def __init__(self, task, source, layout):
        self.task, self.source, self.layout = task, source, layout
        self.dev_sets, self.test_sets = dict(layout.dev_sets), dict(layout.test_sets)
        self.splits = {TRAIN: TRAIN, **self.dev_sets, **self.test_sets}  # {set name: split}
        self._check_splits()
        self._logged = set()
        for split in source.splits:
            if split not in self.test_sets.values():
                self._label_reader(split)  # refuses labels that do not match, before any work

    def __getattr__(self, name):
        if name in DatasetTask.DELEGATED:
            return getattr(self.task, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _check_splits(self):
        known = list(dict.fromkeys(self.splits.values()))
        unknown = [split for split in self.source.splits if split not in known]
        if unknown:
            raise ValueError(f"--dataset {self.source}: unknown split(s) {', '.join(unknown)}; task "
                             f"{self.name} reads the splits {', '.join(known)}")  # fmt: skip
        for split in self.source.splits:
            labelled = split not in self.test_sets.values()
            self.source.check_columns(split, self._columns(labelled))

    def _columns(self, labelled):
        texts = [column for column in (self.layout.text_a, self.layout.text_b) if column]
        return texts + [self.layout.label] if labelled else texts

    @property
    def train_columns(self):
        return self.layout.text_a, self.layout.text_b, self.layout.label

    def locate(self, data_dir):
        return self, data_dir

    def split_name(self, split):
        """The dataset's split of 'train', a dev set or a test set."""
        if split not in self.splits:
            raise ValueError(
                f"unknown split {split!r} for task {self.name}, expected one of {', '.join(self.splits)}"
            )
        return self.splits[split]

    @property
    def where_files_go(self):
        return f"task {self.name} reads the splits {', '.join(dict.fromkeys(self.splits.values()))}"

    def check_splits(self, sets):
        """The splits of 'train', dev or test sets the run will read, before anything else is
        read or written (tasks.check_data_files' counterpart for a dataset)."""
        missing = [self.split_name(name) for name in sets if self.split_name(name) not in self.source.splits]
        if missing:
            raise ValueError(f"--dataset {self.source}: no split {', '.join(missing)}, which the run reads (the "
                             f"dataset has {', '.join(self.source.splits)}; {self.where_files_go})")  # fmt: skip

    def data_file(self, data_dir, split):
        """Where a split is read from, in words (messages, and augment.py's read_table)."""
        return f"{self.source} split {self.split_name(split)}"

    def data_version(self, data_dir, split):
        """Which version of a split is read: the dataset, its configuration, the split and its
        fingerprint (the feature cache's key)."""
        name = self.split_name(split)
        return {"dataset": self.source.reference, "dataset_config": self.source.config or "",
                "dataset_split": name, "data_fingerprint": self.source.split(name)._fingerprint}  # fmt: skip

    def is_test_set(self, split):
        return split in self.test_sets

    def get_examples(self, data_dir, split):
        """The InputExamples of a split: labelled ones as '<split>-<idx>' (or its row), a test
        split's unlabelled with its idx (or row) as the guid, as GLUE's submission files want."""
        name, labelled = self.split_name(split), not self.is_test_set(split)
        data = self.source.split(name)
        columns = self._columns(labelled) + ([INDEX] if INDEX in data.column_names else [])
        values = data.select_columns(columns).to_dict()
        read_label = self._label_reader(name) if labelled else None
        examples = []
        for row, index in enumerate(values.get(INDEX) or range(len(data))):
            text_a, text_b = (self._text(values, column, name, row) for column in self.train_columns[:2])
            label = read_label(values[self.layout.label][row], row) if labelled else None
            examples.append(
                InputExample(f"{name}-{index}" if labelled else str(index), text_a, text_b, label)
            )
        if not examples:
            raise ValueError(f"--dataset {self.source}: split {name} has no rows")
        return examples

    def _text(self, values, column, split, row):
        if column is None:
            return None
        text = values[column][row]
        if not isinstance(text, str):
            raise ValueError(f"--dataset {self.source}, split {split}, row {row}: column {column!r} holds "
                             f"{text!r}, expected text")  # fmt: skip
        return text

    def _label_reader(self, split):
        """(value, row) -> the task's label of a labelled split's value: a score for a
        regression task, else the label its name (a ClassLabel's, or the text) matches."""
        feature = self.source.split(split).features[self.layout.label]
        where = f"--dataset {self.source}, split {split}"
        if self.labels is None:
            if not holds_scores(feature):
                raise ValueError(f"{where}: task {self.name} is a regression: its label column "
                                 f"{self.layout.label!r} must hold scores, not {feature}")  # fmt: skip
            return lambda value, row: self._score(value, where, row)
        names = getattr(feature, "names", None)
        if names is not None:
            self._match_names(names, where)

        def read(value, row):
            text = value_text(value, names)
            if text is None:
                raise ValueError(f"{where}, row {row}: no label ({value!r}) in a labelled split")
            return self.task_label(text, f"{where}, row {row}")

        return read

    def _score(self, value, where, row):
        if value is None:
            raise ValueError(f"{where}, row {row}: no score in a labelled split")
        return float(value)

    def _match_names(self, names, where):
        """Refuse ClassLabel names that are not the task's labels; log the match once."""
        matched = [self.layout.names.get(name, name) for name in names]
        if sorted(matched) != sorted(self.labels):
            hub = f" (or the Hub's names {', '.join(self.layout.names)})" if self.layout.names else ""
            raise ValueError(f"{where}: the label names {', '.join(names)} do not match task {self.name}'s "
                             f"labels {', '.join(self.labels)}{hub}")  # fmt: skip
        if tuple(names) not in self._logged:
            self._logged.add(tuple(names))
            pairs = (f"{number}:{name} -> {self.labels.index(label)}:{label}"
                     for number, (name, label) in enumerate(zip(names, matched)))  # fmt: skip
            logger.info("%s: labels matched by name (the dataset's number:name -> the task's row:label): %s",
                        self.source, ", ".join(pairs))  # fmt: skip

    def task_label(self, text, where):
        """The task's label a name stands for: itself, or the Hub's name of it."""
        label = self.layout.names.get(text, text)
        if label not in self.labels:
            hub = f" (or the Hub's names {', '.join(self.layout.names)})" if self.layout.names else ""
            raise ValueError(f"{where}: label {text!r} is not one of {', '.join(self.labels)}{hub}")
        return label

    def read_file(self, path, labelled=True):
        """The examples of a file with the dataset's columns (TSV, CSV or JSON Lines); guid: the line."""
        text_a, text_b, label = self.train_columns
        examples = []
        for line, record in read_records(path, self._columns(labelled)):
            gold = self._file_label(record[label], f"{path}, line {line}") if labelled else None
            examples.append(InputExample(str(line), record[text_a], record[text_b] if text_b else None, gold))
        if not examples:
            raise ValueError(f"{path}: no examples (the file has no rows)")
        return examples

    def _file_label(self, text, where):
        if self.labels is None:
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{where}: score {text!r} is not a number") from None
        return self.task_label(text, where)

    def read_transfer_file(self, path):
        """Unlabelled examples (main.py --transfer_file) with the dataset's text columns."""
        return self.read_file(path, labelled=False)

    def read_table(self, path):
        """The rows of a split (as data_file names it; the label as the task's label) or of a
        file with the dataset's columns, to rewrite as JSON Lines (table_text)."""
        splits = {self.data_file(None, name): name for name in self.splits}
        if path not in splits:
            return Table([record for _, record in read_records(path, self._columns(False))], None, "jsonl")
        examples = self.get_examples(None, splits[path])
        columns = self.train_columns
        rows = [{column: value for column, value in zip(columns, (e.text_a, e.text_b, e.label)) if column}
                for e in examples]  # fmt: skip
        return Table(rows, None, "jsonl")

    def table_text(self, table):
        return table_text(table)
