"""The trained classifier a command names, ready for inference.

Either an exported Hugging Face folder (export.py writes one):
    --model FOLDER
or one model of a JSON model config (see model_config.py) with its trained weights:
    --model_config_json J [--which student|teacher0|teacher1...] [--checkpoint gs*.pkl | RUN_FOLDER]
where a run folder stands for its newest gs{step}.pkl, and without --checkpoint the JSON
entry's own checkpoint is used.

The task (and so the labels) is the one the run folder's task.json records (an export keeps it
too), else --task_name (default mnli; tasks.model_task). A folder whose config.json names its labels (id2label)
has its classifier rows put into the task's order (label_order.py).
"""

import dataclasses
import os
import re

from transformers import AutoTokenizer, BertConfig

from distillation import checkpoint_path, checkpoint_steps
from distillation.run_files import CHECKPOINT_NAME
from modeling import BertForGLUESimple
from pipeline.checkpoints import _shorten, load_checkpoint
from pipeline.model_config import parse_model_config
from pipeline.tasks import model_task

WHICH = re.compile(r"^(student|teacher(\d+))$")


@dataclasses.dataclass
class TrainedModel:
    model: BertForGLUESimple  # in eval mode
    tokenizer: object
    bert_config: BertConfig
    vocab_file: str | None  # None for an exported folder (its tokenizer.json holds the vocabulary)
    do_lower_case: bool
    source: str  # what was loaded, for messages and tables
    task: object  # a utils_glue.GlueTask or custom_task.CustomTask: the labels of the rows
    run_folder: str | None = None  # the folder of the run that made it (its records: model_card.py)
    step: int | None = None  # the step of its checkpoint in that run, when known


def load_trained(model=None, model_config_json=None, which="student", checkpoint=None, task_name=None):
    """The TrainedModel the model options name (options.add_model_options): an exported folder
    (model), or an entry of a model config JSON with its checkpoint."""
    if model and model_config_json:
        raise ValueError(
            "--model and --model_config_json exclude each other: an exported folder carries its own config"
        )
    if model:
        return load_exported(model, task_name)
    if model_config_json:
        return load_from_json(model_config_json, which, checkpoint, task_name)
    raise ValueError(
        "name a model: --model EXPORTED_FOLDER, or --model_config_json JSON [--which ...] [--checkpoint ...]"
    )


def load_from_json(model_config_json, which="student", checkpoint=None, task_name=None):
    setup = parse_model_config(model_config_json)
    entry = select_entry(setup, which)
    checkpoint = newest_checkpoint(checkpoint) if checkpoint else entry.checkpoint
    if not checkpoint:
        raise ValueError(
            f"{setup.source}: {entry.where}.checkpoint is null; name the trained "
            "weights with --checkpoint (a gs*.pkl or a run folder)"
        )
    folder = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    task = model_task(folder, task_name)
    model = load_trained_entry(entry, task, checkpoint)
    step = CHECKPOINT_NAME.match(os.path.basename(checkpoint))
    return TrainedModel(
        model,
        entry.tokenizer,
        entry.bert_config,
        entry.vocab_file,
        entry.do_lower_case,
        f"{entry.where} {checkpoint}",
        task,
        folder,
        int(step.group(1)) if step else None,
    )


def load_exported(folder, task_name=None):
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{folder}: not an exported model folder (no config.json)")
    config = BertConfig.from_pretrained(folder)
    task = model_task(folder, task_name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_complete(BertForGLUESimple(config, task.num_labels), folder, "exported model", task)
    return TrainedModel(
        model, tokenizer, config, None, bool(getattr(tokenizer, "do_lower_case", True)), folder, task
    )


def select_entry(setup, which):
    match = WHICH.match(which)
    if not match:
        raise ValueError(f"--which {which!r}: expected student or teacherN (teacher0, teacher1...)")
    if match.group(2) is None:
        return setup.student
    index = int(match.group(2))
    if index >= len(setup.teachers):
        raise ValueError(f"--which {which}: {setup.source} has {len(setup.teachers)} teacher(s)")
    entry = setup.teachers[index]
    if entry.disable:
        raise ValueError(f"--which {which}: {setup.source}: teachers[{index}] is disabled")
    return entry


def newest_checkpoint(path):
    """path itself, or for a run folder (one without config.json) its newest gs{step}.pkl."""
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "config.json")):
        return path
    steps = checkpoint_steps(path)
    if not steps:
        raise FileNotFoundError(f"{path}: no gs{{step}}.pkl checkpoint in this run folder")
    return checkpoint_path(path, steps[-1])


def load_trained_entry(entry, task, checkpoint=None):
    """The trained classifier of a model_config entry (its own checkpoint, or `checkpoint`),
    every tensor loaded and its rows in the task's order."""
    model = BertForGLUESimple(entry.bert_config, task.num_labels)
    return load_complete(model, checkpoint or entry.checkpoint, entry.where, task, entry.label_order,
                         f"{entry.where}.label_order")  # fmt: skip


def load_complete(model, checkpoint, where, task, label_order=None, label_order_source=None):
    """Load every tensor of model from checkpoint, its rows in the task's order: a trained
    model missing one would predict from random weights without a word."""
    report = load_checkpoint(model, checkpoint, "student", task.label_list, label_order, label_order_source)
    if report.missing:
        raise ValueError(
            f"{checkpoint}: lacks {len(report.missing)} of the {report.total} tensors "
            f"of {where}: {_shorten(report.missing)}"
        )
    return model.eval()
