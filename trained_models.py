"""The trained classifier a command names, ready for inference.

Either an exported Hugging Face folder (export.py writes one):
    --model FOLDER
or one model of a JSON model config (see model_config.py) with its trained weights:
    --model_config_json J [--which student|teacher0|teacher1...] [--checkpoint gs*.pkl | RUN_FOLDER]
where a run folder stands for its newest gs{step}.pkl, and without --checkpoint the JSON
entry's own checkpoint is used.
"""
import dataclasses
import os
import re

from transformers import AutoTokenizer, BertConfig

from model_config import parse_model_config
from modeling import BertForGLUESimple, load_checkpoint, _shorten
from utils_glue import LABELS

CHECKPOINT_NAME = re.compile(r"^gs(\d+)\.pkl$")
WHICH = re.compile(r"^(student|teacher(\d+))$")


@dataclasses.dataclass
class TrainedModel:
    model: BertForGLUESimple  # in eval mode
    tokenizer: object
    bert_config: BertConfig
    vocab_file: str | None  # None for an exported folder (its tokenizer.json holds the vocabulary)
    do_lower_case: bool
    source: str  # what was loaded, for messages and tables


def add_model_arguments(parser):
    """The options above, on an argparse parser."""
    group = parser.add_argument_group("the model")
    group.add_argument("--model", help="An exported Hugging Face model folder (export.py).")
    group.add_argument("--model_config_json", help="The JSON naming the teachers and the student.")
    group.add_argument("--which", default="student",
                       help="student (default), or teacherN: the N-th entry of 'teachers'.")
    group.add_argument("--checkpoint",
                       help="A gs{step}.pkl, or a run folder (its newest gs*.pkl); default: the "
                            "JSON entry's checkpoint.")


def load_from_args(args):
    """The TrainedModel the options of add_model_arguments name."""
    if args.model and args.model_config_json:
        raise ValueError("--model and --model_config_json exclude each other: an exported folder "
                         "carries its own config")
    if args.model:
        return load_exported(args.model)
    if args.model_config_json:
        return load_from_json(args.model_config_json, args.which, args.checkpoint)
    raise ValueError("name a model: --model EXPORTED_FOLDER, or --model_config_json JSON "
                     "[--which ...] [--checkpoint ...]")


def load_from_json(model_config_json, which="student", checkpoint=None):
    setup = parse_model_config(model_config_json)
    entry = select_entry(setup, which)
    checkpoint = newest_checkpoint(checkpoint) if checkpoint else entry.checkpoint
    if not checkpoint:
        raise ValueError(f"{setup.source}: {entry.where}.checkpoint is null; name the trained "
                         "weights with --checkpoint (a gs*.pkl or a run folder)")
    model = load_complete(BertForGLUESimple(entry.bert_config, len(LABELS)), checkpoint, entry.where)
    return TrainedModel(model, entry.tokenizer, entry.bert_config, entry.vocab_file,
                        entry.do_lower_case, f"{entry.where} {checkpoint}")


def load_exported(folder):
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{folder}: not an exported model folder (no config.json)")
    config = BertConfig.from_pretrained(folder)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if labels != LABELS:
        raise ValueError(f"{config_path}: id2label is {labels}, expected MNLI's {LABELS}")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_complete(BertForGLUESimple(config, len(LABELS)), folder, "exported model")
    return TrainedModel(model, tokenizer, config, None,
                        bool(getattr(tokenizer, "do_lower_case", True)), folder)


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


def checkpoint_steps(run_folder):
    """The steps of the gs{step}.pkl checkpoints in a run folder."""
    return [int(m.group(1)) for m in map(CHECKPOINT_NAME.match, os.listdir(run_folder)) if m]


def newest_checkpoint(path):
    """path itself, or for a run folder (one without config.json) its newest gs{step}.pkl."""
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "config.json")):
        return path
    steps = checkpoint_steps(path)
    if not steps:
        raise FileNotFoundError(f"{path}: no gs{{step}}.pkl checkpoint in this run folder")
    return os.path.join(path, f"gs{max(steps)}.pkl")


def load_complete(model, checkpoint, where):
    """Load every tensor of model from checkpoint: a trained model missing one would predict
    from random weights without a word."""
    report = load_checkpoint(model, checkpoint, "student")
    if report.missing:
        raise ValueError(f"{checkpoint}: lacks {len(report.missing)} of the {report.total} tensors "
                         f"of {where}: {_shorten(report.missing)}")
    return model.eval()
