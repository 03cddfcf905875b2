"""The task of a run, chosen by --task_name: one of GLUE's (utils_glue.py) or your own files
(custom_task.py), and its record in the run folder, task.json, from which predict.py and
export.py learn the task and its labels."""

import json
import os

from distillation import atomic_write_text
from pipeline.custom_task import NAME as CUSTOM
from pipeline.custom_task import CustomTask
from utils_glue import TASKS, get_task, task_data_dir

TASK_NAMES = list(TASKS) + [CUSTOM]
TASK_RECORD = "task.json"


def task_from_args(args):
    """(task, the folder of its files) from --task_name, --data_dir and the custom columns."""
    if args.task_name == CUSTOM:
        if not os.path.isdir(args.data_dir):
            raise FileNotFoundError(f"--data_dir {args.data_dir}: no such folder")
        return CustomTask.from_files(
            args.data_dir, args.text_a_column, args.label_column, args.text_b_column
        ), args.data_dir
    task = get_task(args.task_name)
    return task, task_data_dir(args.data_dir, task)


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
        if record["task_name"] == CUSTOM:
            return CustomTask.from_record(record)
        task = get_task(record["task_name"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a task record ({type(error).__name__}: {error})") from None
    if record.get("labels") != task.label_list:
        raise ValueError(f"{path}: records the labels {record.get('labels')} for {task.name}, whose "
                         f"classifier rows are {task.label_list}: a record of another version?")  # fmt: skip
    return task
