"""What made a run's models, kept in its folder as run.json when training starts (beside
task.json; run_folder.write_training_records writes it): the command and its options, the
distiller, each teacher and the student (their model config entries' checkpoints, sizes and
parameters) and which version of the data was read. The model card of an export
(model_card.py) reads it."""

import json
import os

RUN_RECORD = "run.json"


def describe_run(options, distiller, setup, models, reader):
    """run.json's record of a training run (run_folder.write_training_records writes it).
    options: the options as a dict (with the 'command', options.parse_args); models: the enabled
    teachers' models and the student's, in setup's order; reader: the run's data.FeatureReader."""
    entries = [*setup.enabled_teachers, setup.student]
    described = [model_record(entry, model) for entry, model in zip(entries, models, strict=True)]
    sets = ["train", *reader.task.dev_sets]
    return {
        "command": options.get("command"),
        "options": options,
        "distiller": type(distiller).__name__,
        "teachers": described[:-1],
        "student": described[-1],
        "data": {name: data_version(reader.task, reader.data_dir, name) for name in sets},
    }


def model_record(entry, model):
    """A model config entry's model: where it was read from, its sizes and its parameters."""
    config = entry.bert_config
    return {
        "where": entry.where,
        "checkpoint": entry.checkpoint,
        "config_file": entry.config_file,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }


def data_version(task, data_dir, split):
    """The task's data_version of a split; None when it cannot be read (a dev set not given)."""
    try:
        return task.data_version(data_dir, split)
    except (ValueError, FileNotFoundError):
        return None


def read_run_record(folder):
    """A run folder's run.json, or None when it has none."""
    path = os.path.join(folder, RUN_RECORD) if folder else None
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a run record ({error})") from None
