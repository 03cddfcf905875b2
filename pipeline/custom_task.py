"""Your own labelled text as a task: train, dev (and optionally test) files in TSV, CSV or JSON
Lines, with the columns you name.

    python main.py --task_name custom --data_dir tickets/ --text_a_column text \
        --label_column category ...    # tickets/train.csv, tickets/dev.csv, tickets/test.csv

The labels are the label column's values in the train file, sorted; the run writes them into its
folder (task.json), where evaluation, predict.py and export.py read them.
A TSV or CSV file has a header row naming its columns; a JSON Lines file holds one object per
line. CSV follows the csv module's quoting (Excel's); TSV is read as GLUE's files are, with quote
characters as plain text.
"""

import csv
import io
import json
import os

from utils_glue import FIELD_SIZE_LIMIT, InputExample, Table, file_version, read_header, tsv_text

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
NAME = "custom"  # also the name of its dev set
TEST_SET = "predictions"  # the test set's name: --do_test writes predictions.tsv
# The columns read when their options are not given: --text_a_column, --text_b_column, --label_column.
COLUMN_DEFAULTS = {"text_a_column": "text", "text_b_column": None, "label_column": "label"}


class CustomTask:
    """The task interface (pipeline/tasks.py's Task) over your own files."""

    name = NAME
    metrics = ("acc",)
    skip_labels = ()
    takes_columns = True  # the columns are named by options (COLUMN_DEFAULTS)

    output_mode = "classification"

    def __init__(
        self,
        text_a_column,
        label_column,
        labels,
        text_b_column=None,
        train_file=None,
        dev_file=None,
        test_file=None,
    ):
        self.text_a_column, self.text_b_column = text_a_column, text_b_column
        self.label_column = label_column
        self.labels = tuple(labels)
        self.train_file = train_file
        self.dev_sets = {NAME: dev_file} if dev_file else {}
        self.test_sets = {TEST_SET: test_file} if test_file else {}  # -> predictions.tsv

    @classmethod
    def open(cls, data_dir, columns=None):
        """(the task of data_dir's files, data_dir); columns: {option name: column or None},
        the ones not given read as COLUMN_DEFAULTS."""
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"--data_dir {data_dir}: no such folder")
        named = named_columns(columns)
        task = cls.from_files(data_dir, named["text_a_column"], named["label_column"], named["text_b_column"])
        return task, data_dir

    @classmethod
    def from_dataset(cls, source, columns=None):
        """The task of a dataset's splits (pipeline/hub_dataset.py's source): the columns the
        options name, the labels its train split's, sorted as a file's are (a ClassLabel column:
        all the names it declares)."""
        named = named_columns(columns)
        label_column = named["label_column"]
        values = source.label_texts("train", label_column)
        labels = sorted_labels(values, f"--dataset {source}, split train", label_column)
        names = source.label_names("train", label_column)
        if names:
            labels = tuple(sorted(set(names), key=_natural_key))
        return cls(named["text_a_column"], label_column, labels, named["text_b_column"])

    @classmethod
    def from_files(cls, data_dir, text_a_column, label_column, text_b_column=None):
        """The task of data_dir's train, dev and (optional) test files; the labels are the
        train file's."""
        train = _find_file(data_dir, "train", required=True)
        dev = _find_file(data_dir, "dev", required=True)
        test = _find_file(data_dir, "test", required=False)
        labels = _discover_labels(os.path.join(data_dir, train), text_a_column, label_column)
        return cls(text_a_column, label_column, labels, text_b_column, train, dev, test)

    def locate(self, data_dir):
        """(this task reading the files data_dir holds, data_dir): a task rebuilt from task.json
        has none of its own."""
        files = {split: _find_file(data_dir, split, required=False) for split in ("train", "dev", "test")}
        return CustomTask(self.text_a_column, self.label_column, self.labels, self.text_b_column,
                          files["train"], files["dev"], files["test"]), data_dir  # fmt: skip

    @classmethod
    def from_record(cls, record, path=None):
        """The task a run's task.json describes (see record), without its data files."""
        return cls(
            record["text_a_column"], record["label_column"], record["labels"], record.get("text_b_column")
        )

    @classmethod
    def without_record(cls, folder):
        raise ValueError(f"{folder}: no task.json to read the custom task's labels from")

    @property
    def num_labels(self):
        return len(self.labels)

    @property
    def label_list(self):
        return list(self.labels)

    def get_labels(self):
        return self.label_list

    def record(self):
        """What a run's task.json keeps of this task (from_record reads it)."""
        return {
            "task_name": NAME,
            "labels": list(self.labels),
            "text_a_column": self.text_a_column,
            "text_b_column": self.text_b_column,
            "label_column": self.label_column,
        }

    @property
    def text_columns(self):
        return (self.text_a_column, self.text_b_column) if self.text_b_column else (self.text_a_column,)

    @property
    def train_columns(self):
        return self.text_a_column, self.text_b_column, self.label_column

    where_files_go = (
        "task custom reads your train, dev and (optional) test files, .tsv, .csv or .jsonl, at --data_dir"
    )

    def read_table(self, path):
        """The rows of one of your files, to rewrite in its layout (table_text)."""
        format = FORMATS.get(os.path.splitext(path)[1].lower(), "tsv")
        rows = [record for _, record in read_records(path, list(self.text_columns))]
        return Table(rows, list(rows[0]) if rows and format != "jsonl" else None, format)

    def table_text(self, table):
        return table_text(table)

    def data_file(self, data_dir, split):
        files = {"train": self.train_file, **self.dev_sets, **self.test_sets}
        if split not in files:
            raise ValueError(f"unknown split {split!r} for task {NAME}, expected one of {', '.join(files)}")
        return os.path.join(data_dir, files[split])

    def is_test_set(self, split):
        return split in self.test_sets

    def data_version(self, data_dir, split):
        """Which version of a split's file is read (the feature cache's key)."""
        return file_version(self.data_file(data_dir, split))

    def get_examples(self, data_dir, split):
        return self.read_file(self.data_file(data_dir, split), labelled=not self.is_test_set(split))

    def read_transfer_file(self, path):
        """Unlabelled examples (a transfer set, main.py --transfer_file): its label column, if it
        has one, is not read."""
        return self.read_file(path, labelled=False)

    def read_file(self, path, labelled=True):
        """The examples of one of your files; labelled=False leaves the label column out."""
        columns = [self.text_a_column] + ([self.text_b_column] if self.text_b_column else [])
        if labelled:
            columns.append(self.label_column)
        prefix = os.path.splitext(os.path.basename(path))[0]
        examples = []
        for number, (line, record) in enumerate(read_records(path, columns)):
            label = self.check_label(record[self.label_column], path, line) if labelled else None
            text_b = record[self.text_b_column] if self.text_b_column else None
            # guid: the example's place among the file's rows, from 0 (predictions.tsv's index)
            guid = f"{prefix}-{number}" if labelled else str(number)
            examples.append(InputExample(guid, record[self.text_a_column], text_b, label))
        if not examples:
            raise ValueError(f"{path}: no examples (the file has no rows)")
        return examples

    def check_label(self, label, path, line):
        if label not in self.labels:
            raise ValueError(
                f"{path}, line {line}: label {label!r} in column "
                f"{self.label_column!r} is not among the labels of the train file "
                f"({', '.join(self.labels)})"
            )
        return label


def named_columns(columns=None):
    """{option name: column} of a custom task's columns: those given, COLUMN_DEFAULTS' otherwise."""
    return {name: (columns or {}).get(name) or default for name, default in COLUMN_DEFAULTS.items()}


def table_text(table):
    """A Table as the text of a file in its format (TSV, CSV or JSON Lines)."""
    if table.format == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in table.rows)
    if table.format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=table.header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table.rows)
        return buffer.getvalue()
    return tsv_text(table)


def _discover_labels(path, text_a_column, label_column):
    values = [record[label_column] for _, record in read_records(path, [text_a_column, label_column])]
    return sorted_labels(values, path, label_column)


def sorted_labels(values, where, label_column):
    """The labels of a train split's label values, sorted (numbers in numeric order): at least two."""
    labels = set(values)
    if not labels:
        raise ValueError(f"{where}: no examples (the file has no rows)")
    if len(labels) == 1:
        raise ValueError(
            f"{where}: the label column {label_column!r} holds one value only "
            f"({next(iter(labels))!r}); a classifier needs at least two labels"
        )
    return tuple(sorted(labels, key=_natural_key))


def _natural_key(label):
    """Numbers in numeric order ('2' before '10'), then text."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _find_file(data_dir, split, required):
    candidates = [
        name for name in (split + ext for ext in FORMATS) if os.path.isfile(os.path.join(data_dir, name))
    ]
    if len(candidates) > 1:
        raise ValueError(f"{data_dir}: several {split} files ({', '.join(candidates)}); keep one")
    if not candidates:
        if required:
            raise FileNotFoundError(
                f"{data_dir}: no {split} file (expected {split}.tsv, {split}.csv or {split}.jsonl)"
            )
        return None
    return candidates[0]


def read_records(path, required, text=None, format=None):
    """(line number, {column: text}) for each row of a TSV, CSV or JSON Lines file, each holding
    the `required` columns as strings. text: the file's content already read (stdin); format then
    defaults to JSON Lines when its first non-blank character is '{', else TSV."""
    if text is None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: data file not found")
        format = format or FORMATS.get(os.path.splitext(path)[1].lower())
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    if format is None:
        format = "jsonl" if text.lstrip().startswith("{") else "tsv"
    if format == "jsonl":  # one object a line: lines end at "\n" alone (a JSON string may hold U+2028)
        yield from _json_records(text.split("\n"), path, required)
        return
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if format == "tsv" else {}
    reader = csv.reader(io.StringIO(text, newline=""), **options)
    header = read_header(reader, required, path)
    for row in reader:
        if not any(field.strip() for field in row):
            continue  # a blank line (a trailing newline in a CSV written by hand)
        if len(row) != len(header):
            raise ValueError(
                f"{path}, line {reader.line_num}: expected {len(header)} columns "
                f"as in the header, found {len(row)}"
            )
        yield reader.line_num, dict(zip(header, row))


def _json_records(lines, path, required):
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}, line {number}: not JSON ({error.msg}); expected one object "
                f"per line with the keys {', '.join(required)}"
            ) from None
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}, line {number}: expected a JSON object with the keys "
                f"{', '.join(required)}, got {type(record).__name__}"
            )
        for key in required:
            if key not in record:
                raise ValueError(f"{path}, line {number}: the object lacks the key {key!r}")
            record[key] = _text(record[key], path, number, key)
        yield number, record


def _text(value, path, number, key):
    """A JSON value as text: a string, or a number (a label) written as a whole number where it
    is one, so that 1 and 1.0 are the same label."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if not isinstance(value, str):
        raise ValueError(f"{path}, line {number}: key {key!r}: expected a string or a number, got {value!r}")
    return value


def read_pairs(path, text=None, columns=("sentence1", "sentence2")):
    """New examples to classify from a TSV, CSV or JSON Lines file (or stdin's text, path
    '-'), with the text column(s) of the model's task."""
    text_a, text_b = columns[0], columns[1] if len(columns) > 1 else None
    examples = [
        InputExample(str(line), record[text_a], record[text_b] if text_b else None, None)
        for line, record in read_records(path, [c for c in columns if c], text)
    ]
    if not examples:
        raise ValueError(f"{path}: no examples to classify")
    return examples
