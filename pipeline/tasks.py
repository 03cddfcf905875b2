"""The task of a run, named by --task_name: one of GLUE's nine (utils_glue.py) or your own files
(custom_task.py), and its record in the run folder, task.json, from which predict.py and
export.py learn the task and its labels.

Both kinds answer the same questions (Task, below), so no other module asks which kind a task
is: a GLUE task is a utils_glue.GlueTask, your files a custom_task.CustomTask. Either reads a
Hugging Face dataset's splits instead of files as a hub_dataset.DatasetTask (--dataset).
"""

import json
import os
import typing

from distillation import atomic_write_text
from pipeline.custom_task import NAME as CUSTOM
from pipeline.custom_task import CustomTask
from pipeline.hub_dataset import open_dataset, read_dataset
from utils_glue import TASKS

DEFAULT_TASK = "mnli"
# What each --task_name names: a GLUE task, or the custom task's class (its files make the task).
TASK_KINDS = {**TASKS, CUSTOM: CustomTask}
TASK_NAMES = list(TASK_KINDS)
TASK_RECORD = "task.json"


class Task(typing.Protocol):
    """What every task answers, whatever its kind."""

    name: str
    labels: tuple | None  # the label names in the order of the classifier's rows; None: regression
    metrics: tuple  # computed on each dev set (utils_glue.METRICS)
    dev_sets: dict  # {dev set name: file}, evaluated after each checkpoint
    test_sets: dict  # {submission name: file}
    output_mode: str  # "classification" or "regression"
    num_labels: int
    label_list: list | None
    text_columns: tuple  # the column(s) new examples to classify hold
    train_columns: tuple  # (text_a, text_b or None, label) of the training file's layout
    where_files_go: str  # for messages: where --data_dir should hold the task's files

    def locate(self, data_dir): ...  # (the task reading the files under data_dir, their folder)
    def from_dataset(self, source, columns=None): ...  # the task of a dataset's splits (hub_dataset)
    def data_file(self, data_dir, split): ...  # the path of 'train', a dev set or a test set
    def data_version(self, data_dir, split): ...  # {str: str}: which version of it is read
    def is_test_set(self, split): ...
    def get_examples(self, data_dir, split): ...  # utils_glue.InputExamples
    def read_file(self, path, labelled=True): ...
    def read_transfer_file(self, path): ...  # unlabelled examples in the training layout
    def read_table(self, path): ...  # a utils_glue.Table of a file in the training layout
    def table_text(self, table): ...  # a Table as the text of such a file
    def record(self): ...  # what task.json keeps


def task_kind(name=None):
    """What --task_name names (MNLI when it is not given): a GLUE task, or CustomTask."""
    name = (name or DEFAULT_TASK).lower()
    if name not in TASK_KINDS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
    return TASK_KINDS[name]


def open_task(name, data_dir, columns=None, dataset=None):
    """(task, where its data is: the folder of its files, or the dataset) from --task_name,
    --data_dir or --dataset, and a custom task's columns ({option name: column or None})."""
    if dataset is not None:
        return open_dataset(task_kind(name), dataset, columns)
    return task_kind(name).open(data_dir, columns)


def with_data(task, data_dir=None, dataset=None):
    """(a known task (a trained model's) reading --data_dir's files or --dataset's splits, where)."""
    return read_dataset(task, dataset) if dataset is not None else task.locate(data_dir)


def check_data_files(task, data_dir, splits, data_root):
    """Each file the run will read of `splits`, before anything else is read or written: a
    missing one is named, with where the task's files go. data_root: --data_dir as given."""
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"--data_dir {data_root}: no such folder ({task.where_files_go})")
    missing = [task.data_file(data_dir, split) for split in splits]
    missing = [path for path in missing if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"--data_dir {data_root}: no {', '.join(missing)} ({task.where_files_go})")


def write_task_record(output_dir, task):
    atomic_write_text(os.path.join(output_dir, TASK_RECORD), json.dumps(task.record(), indent=1) + "\n")


def recorded_task(folder):
    """The task a run folder's task.json names, or None when it has none."""
    path = os.path.join(folder, TASK_RECORD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        return task_kind(record["task_name"]).from_record(record, path)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a task record ({type(error).__name__}: {error})") from None


def model_task(folder, task_name=None):
    """The task a model folder (a run's or an export's) records, else --task_name's (MNLI when
    not given). A --task_name that contradicts the record is an error."""
    recorded = recorded_task(folder) if folder else None
    if recorded is None:
        return task_kind(task_name).without_record(folder)
    if task_name is not None and task_name != recorded.name:
        raise ValueError(f"--task_name {task_name}: {folder} records task {recorded.name}")
    return recorded
