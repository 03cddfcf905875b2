"""The run's folder (--output_dir): checked before any work, made only once every check has
passed, so a run that stops before it starts leaves nothing behind."""

import json
import os
import shutil

from distillation import atomic_path, atomic_write_text
from pipeline.run_record import RUN_RECORD, describe_run
from pipeline.tasks import write_task_record


def check_output_dir(path):
    """--output_dir must be a folder that exists and can be written, or one that can be made
    (its nearest existing parent can be written)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise PermissionError(f"--output_dir {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK):
        verb = "written" if existing == os.path.abspath(path) else "created"
        raise PermissionError(f"--output_dir {path} cannot be {verb}: {existing} is not writable")


def make_output_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"--output_dir {path} cannot be created: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(f"--output_dir {path} cannot be written")


def write_run_records(output_dir, task, model_config_json):
    """What a run keeps of its setting: task.json (the task and its labels, read by predict.py
    and export.py) and a copy of the model config JSON it read, <name>.run as the original
    example's scripts kept it."""
    write_task_record(output_dir, task)
    with atomic_path(os.path.join(output_dir, os.path.basename(model_config_json) + ".run")) as copy:
        shutil.copyfile(model_config_json, copy)


def write_training_records(output_dir, options, distiller, setup, models, reader):
    """A training run's records: write_run_records', and run.json, what made its models (the
    model card of an export reads it; run_record.describe_run has its arguments)."""
    write_run_records(output_dir, reader.task, setup.source)
    record = describe_run(options, distiller, setup, models, reader)
    atomic_write_text(os.path.join(output_dir, RUN_RECORD), json.dumps(record, indent=1, default=str) + "\n")
