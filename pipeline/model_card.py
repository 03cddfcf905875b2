"""The model card of an exported folder (README.md, exporting.py): the Hub's metadata header
(library transformers, pipeline tag text-classification, the task, the dev scores as
model-index results) and a short body: the model's shape and size, the teachers it learnt from,
the recipe and its hyper-parameters, the dev scores per set, and the command that produced it.

Every figure is read from the model and from the records of the run that trained it: run.json
(run_record.py), eval_results.jsonl (evaluation.py) and teacher_check.json (teacher_check.py)
in the folder of its checkpoint. What they do not hold is said to be unknown, never guessed:
a checkpoint outside a run folder, or a model evaluated as given (step 0), has no recipe.
"""

import dataclasses
import json
import os

from huggingface_hub import EvalResult, ModelCardData

from distillation import atomic_write_text
from pipeline.evaluation import recorded_results
from pipeline.run_record import read_run_record
from pipeline.teacher_check import CHECK_JSON

CARD = "README.md"
# GLUE's metrics as the Hub's model-index names them, and as people do.
METRIC_TYPES = {"acc": "accuracy", "f1": "f1", "mcc": "matthews_correlation", "pearson": "pearsonr",
                "spearmanr": "spearmanr"}  # fmt: skip
METRIC_NAMES = {"acc": "accuracy", "f1": "F1", "mcc": "Matthews corr.", "pearson": "Pearson's r",
                "spearmanr": "Spearman's rho"}  # fmt: skip
# The options that make the recipe (run.json's), and those that only a distillation uses.
TRAINING_OPTIONS = ("learning_rate", "num_train_epochs", "train_batch_size", "gradient_accumulation_steps",
                    "max_seq_length", "warmup_proportion", "weight_decay_rate", "max_grad_norm", "random_seed",
                    "fp16", "bf16", "group_by_length")  # fmt: skip
DISTILLATION_OPTIONS = ("recipe", "temperature", "hard_label_weight", "kd_loss_weight", "intermediate_weight",
                        "matches", "init_student_from_teacher", "transfer_file", "cache_teacher_logits")  # fmt: skip


@dataclasses.dataclass
class Facts:
    """What the card says, gathered: the export's name, the TrainedModel, its parameters and
    file size, and the run's records (None where there are none)."""

    name: str
    trained: object
    parameters: int
    file_bytes: int
    run: dict | None
    scores: dict | None  # eval_results.jsonl's record at the model's step
    teacher_check: dict | None
    missing: str  # why there is no run record, when there is none


def write_model_card(folder, trained, name):
    """README.md in an exported folder (named `name`), its model.safetensors already written."""
    facts = gather(folder, trained, name)
    text = "---\n" + metadata(facts).to_yaml() + "\n---\n\n" + body(facts)
    atomic_write_text(os.path.join(folder, CARD), text)


def gather(folder, trained, name):
    run_folder, step = trained.run_folder, trained.step
    run, missing = None, f"{trained.source} was not read from a run folder"
    if run_folder and step == 0:
        missing = f"{trained.source} was evaluated as given in {run_folder}, not trained there"
    elif run_folder:
        run = read_run_record(run_folder)
        missing = f"{run_folder} holds no run.json (written when main.py starts training)"
    scores = recorded_results(run_folder).get(step) if run_folder and step is not None else None
    check = os.path.join(run_folder or "", CHECK_JSON)
    teacher_check = _read_json(check) if run is not None and os.path.isfile(check) else None
    parameters = sum(parameter.numel() for parameter in trained.model.parameters())
    weights = os.path.join(folder, "model.safetensors")
    file_bytes = os.path.getsize(weights) if os.path.isfile(weights) else 0
    return Facts(name, trained, parameters, file_bytes, run, scores, teacher_check, missing)


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def metadata(facts):
    """The Hub's metadata: library, pipeline tag, the task, and the dev scores as model-index results."""
    task = facts.trained.task
    results = []
    for dev_set, metrics in (facts.scores or {}).get("metrics", {}).items():
        dataset = dataset_of(facts, dev_set)
        results += [EvalResult(task_type="text-classification", metric_type=METRIC_TYPES.get(metric, metric),
                               metric_value=value, metric_name=f"{METRIC_NAMES.get(metric, metric)} ({dev_set})",
                               **dataset) for metric, value in metrics.items()]  # fmt: skip
    hub = sorted({result.dataset_type for result in results if "/" in result.dataset_type})
    tags = ["bert", task.name] + (["knowledge-distillation"] if facts.run and facts.run["teachers"] else [])
    return ModelCardData(library_name="transformers", pipeline_tag="text-classification", tags=tags,
                         datasets=hub or None, model_name=facts.name, eval_results=results or None)  # fmt: skip


def dataset_of(facts, dev_set):
    """The model-index dataset of a dev set: a Hub dataset's id, configuration and split, or
    the task's files."""
    version = ((facts.run or {}).get("data") or {}).get(dev_set) or {}
    task = facts.trained.task.name
    if "dataset" in version:
        reference = version["dataset"]
        shown = os.path.basename(reference) if os.path.isabs(reference) else reference
        return {"dataset_type": shown, "dataset_name": f"{shown} {version['dataset_config']} {version['dataset_split']}".replace("  ", " "),
                "dataset_config": version["dataset_config"] or None, "dataset_split": version["dataset_split"]}  # fmt: skip
    file = os.path.basename(version["data_file"]) if "data_file" in version else None
    return {"dataset_type": task, "dataset_name": f"{task} {file or 'dev set ' + dev_set}",
            "dataset_split": os.path.splitext(file)[0] if file else dev_set}  # fmt: skip


def body(facts):
    sections = [_summary(facts), _training(facts), _scores(facts), _use(facts)]
    return "\n\n".join(section for section in sections if section) + "\n"


def _summary(facts):
    trained, task = facts.trained, facts.trained.task
    config = trained.bert_config
    outputs = ("one output, a score (regression)" if task.labels is None
               else f"{task.num_labels} labels, in the order of its outputs: {', '.join(task.labels)}")  # fmt: skip
    size = f"; model.safetensors {_bytes(facts.file_bytes)}" if facts.file_bytes else ""
    return (
        f"# {facts.name}\n\n"
        f"A BERT classifier for the task {task.name} ({outputs}).\n\n"
        f"| shape | |\n|---|---|\n| layers | {config.num_hidden_layers} |\n| hidden size | {config.hidden_size} |\n"
        f"| attention heads | {config.num_attention_heads} |\n| intermediate size | {config.intermediate_size} |\n"
        f"| vocabulary | {config.vocab_size} |\n| max positions | {config.max_position_embeddings} |\n"
        f"| parameters | {facts.parameters:,} ({facts.parameters / 1e6:.1f}M){size} |"
    )


def _training(facts):
    run = facts.run
    if run is None:
        return f"## How it was trained\n\nNot recorded: {facts.missing}, so its teachers, recipe and command are unknown."
    teachers, options = run["teachers"], run["options"]
    how = (f"Distilled from {len(teachers)} teacher{'s' * (len(teachers) > 1)} by {run['distiller']}"
           f" (recipe `{options.get('recipe')}`)" if teachers
           else f"Trained on the gold labels alone ({run['distiller']}, no teacher)")  # fmt: skip
    names = TRAINING_OPTIONS + (DISTILLATION_OPTIONS if teachers else ())
    names += tuple(sorted(name for name in options if name.startswith("emd_")))  # main.emd.py's
    rows = [f"| {name} | {_value(options[name])} |" for name in names if name in options]
    parts = [f"## How it was trained\n\n{how}, starting from {_start(run['student'], options)}."]
    if teachers:
        parts.append(_teacher_table(teachers, facts.teacher_check))
    parts.append("Hyper-parameters:\n\n| option | value |\n|---|---|\n" + "\n".join(rows))
    train = (run.get("data") or {}).get("train")
    if train:
        parts.append(f"Training data: {_data(train)}.")
    parts.append(f"The command:\n\n```bash\n{run.get('command')}\n```")
    return "\n\n".join(parts)


def _start(student, options):
    if options.get("init_student_from_teacher"):
        return "the first teacher's weights, projected onto its sizes (--init_student_from_teacher)"
    return f"the checkpoint {student['checkpoint']}" if student.get("checkpoint") else "random weights"


def _teacher_table(teachers, check):
    """The teachers: checkpoint, shape, parameters and their own dev scores (the teacher check)."""
    checked = {t["name"]: t["scores"] for t in (check or {}).get("teachers", [])}
    sets = list((check or {}).get("sizes", {}))
    metric = (check or {}).get("metric", "acc")
    header = "| teacher | checkpoint | layers | hidden size | parameters |" + "".join(
        f" {metric} on the first {check['sizes'][s]} of {s} |" for s in sets)  # fmt: skip
    lines = [header, "|" + "---|" * (5 + len(sets))]
    for teacher in teachers:
        scores = checked.get(teacher["where"], {})
        lines.append(f"| {teacher['where']} | {teacher['checkpoint']} | {teacher['layers']} | {teacher['hidden_size']} "
                     f"| {teacher['parameters']:,} |" + "".join(f" {_number(scores.get(s))} |" for s in sets))  # fmt: skip
    note = (
        ""
        if check
        else "\n\nTheir own dev scores were not checked before they taught (--teacher_check_size 0, or a resumed run)."
    )
    return "\n".join(lines) + note


def _scores(facts):
    step = facts.trained.step
    if not facts.scores:
        where = (
            f"{facts.trained.run_folder}'s eval_results.jsonl"
            if facts.trained.run_folder
            else "any run folder"
        )
        return f"## Dev scores\n\nNot recorded: no evaluation of {'step ' + str(step) if step is not None else 'this checkpoint'} in {where}."
    metrics = facts.scores["metrics"]
    names = list(next(iter(metrics.values())))
    lines = [f"## Dev scores (step {step})\n", "| dev set | " + " | ".join(METRIC_NAMES.get(m, m) for m in names) + " |",
             "|---|" + "---|" * len(names)]  # fmt: skip
    for dev_set, values in metrics.items():
        shown = dataset_of(facts, dev_set).get("dataset_split") or dev_set
        label = dev_set if shown == dev_set else f"{dev_set} ({shown})"
        lines.append(f"| {label} | " + " | ".join(_number(values.get(m)) for m in names) + " |")
    return "\n".join(lines)


def _use(facts):
    pair = len(facts.trained.task.text_columns) > 1
    example = (
        '{"text": "A man is sleeping.", "text_pair": "Nobody sleeps."}' if pair else '"A man is sleeping."'
    )
    return (
        "## Use\n\n```python\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{facts.name}")\n'
        f"classifier({example})\n```"
    )


def _data(version):
    if "dataset" in version:
        config = f" ({version['dataset_config']})" if version.get("dataset_config") else ""
        return f"{version['dataset']}{config} split {version['dataset_split']}, fingerprint {version['data_fingerprint']}"
    return f"{version['data_file']} ({int(version['data_size']):,} bytes)"


def _bytes(count):
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.1f} kB"


def _number(value):
    return "unknown" if value is None else f"{value:.4f}"


def _value(value):
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)
