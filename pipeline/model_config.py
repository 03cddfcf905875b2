"""The JSON that names the teachers and the student: parsed, checked, with tokenizers and configs.

Layout (one entry per model):

    {"teachers": [{"model_type": "bert", "prefix": "bert", "vocab_file": "...",
                   "config_file": "...", "checkpoint": "...",
                   "tokenizer_kwargs": {"do_lower_case": true}, "disable": false}],
     "student":  {"model_type": "bert", "prefix": "bert", "vocab_file": "...",
                  "config_file": "...", "checkpoint": null, "num_hidden_layers": 4}}

`prefix` is a free label (the original example's "bertuncased" is fine); the student may say
"disable": false. "label_order" (optional) names the labels of the checkpoint's classifier
rows in order, when they are not the task's order (label_order.py). Paths may use ${VAR} or $VAR; a relative path is relative to the JSON file's folder.
Every mistake is reported with the key it sits under (for example `teachers[0].disable`).
A teacher with "disable": true is checked for its keys and types only; its files are not read.
"""

import dataclasses
import inspect
import json
import os
import re

from transformers import BertConfig, BertTokenizer

from distillation import file_sha256

SUPPORTED_MODEL_TYPES = ("bert",)
PATH_KEYS = ("vocab_file", "config_file", "checkpoint")
REQUIRED_KEYS = ("model_type", "prefix", "vocab_file", "config_file", "checkpoint")
OPTIONAL_KEYS = ("tokenizer_kwargs", "disable", "num_hidden_layers", "label_order")
TOP_LEVEL_KEYS = ("teachers", "student")
ENV_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
# Options BertTokenizer really uses; anything else would vanish silently into its **kwargs.
TOKENIZER_OPTIONS = tuple(
    name
    for name in inspect.signature(BertTokenizer.__init__).parameters
    if name not in ("self", "vocab", "kwargs")
)
DEFAULT_DO_LOWER_CASE = inspect.signature(BertTokenizer.__init__).parameters["do_lower_case"].default


@dataclasses.dataclass
class ModelEntry:
    """One model of the JSON, its paths resolved, with its tokenizer and BertConfig.

    A disabled teacher keeps its paths as written and has no tokenizer or BertConfig.
    """

    where: str  # 'student' or 'teachers[i]', to name the entry in messages
    model_type: str
    prefix: str
    vocab_file: str
    config_file: str
    checkpoint: str | None
    tokenizer_kwargs: dict = dataclasses.field(default_factory=dict)
    disable: bool = False
    num_hidden_layers: int | None = None
    label_order: list | None = None  # the labels of the checkpoint's classifier rows, in order
    own_features: bool = False  # a teacher with another vocabulary than the student's
    tokenizer: BertTokenizer | None = dataclasses.field(default=None, repr=False)
    bert_config: BertConfig | None = dataclasses.field(default=None, repr=False)

    @property
    def do_lower_case(self):
        return self.tokenizer_kwargs.get("do_lower_case", DEFAULT_DO_LOWER_CASE)


@dataclasses.dataclass
class ModelSetup:
    teachers: list  # every teacher entry, disabled ones included
    student: ModelEntry
    source: str  # the JSON's path, or '<dict>'

    @property
    def enabled_teachers(self):
        return [teacher for teacher in self.teachers if not teacher.disable]

    @property
    def teachers_with_own_features(self):
        return [teacher for teacher in self.enabled_teachers if teacher.own_features]

    def check_token_by_token(self, uses):
        """A teacher with a vocabulary of its own sees other tokens than the student: only its
        logits can teach. uses: what the run compares token by token (matches, EMD, the
        student's start from the teacher); an error names them."""
        own = self.teachers_with_own_features
        if not own or not uses:
            return
        teacher, student = own[0], self.student
        raise ValueError(
            f"{self.source}: {teacher.where} reads another vocabulary than the student "
            f"({teacher.vocab_file}, do_lower_case={teacher.do_lower_case}, against "
            f"{student.vocab_file}, do_lower_case={student.do_lower_case}): "
            f"only its logits can teach, but {' and '.join(uses)} compare the models "
            "token by token (drop them, or give the teacher the student's vocabulary)"
        )


def parse_model_config(path_or_dict):
    """Read and check the JSON (a path, or the already-loaded dict) and return a ModelSetup."""
    if isinstance(path_or_dict, dict):
        content, source, base_dir = path_or_dict, "<dict>", os.getcwd()
    else:
        source = os.fspath(path_or_dict)
        content = _read_json(source)
        base_dir = os.path.dirname(os.path.abspath(source))
    if not isinstance(content, dict):
        raise ValueError(
            f"{source}: expected a JSON object with 'teachers' and 'student', got {type(content).__name__}"
        )
    _reject_unknown_keys(content, TOP_LEVEL_KEYS, source, "top level")
    if "student" not in content:
        raise ValueError(f"{source}: the 'student' entry is missing")
    raw_teachers = content.get("teachers") or []
    if not isinstance(raw_teachers, list):
        raise ValueError(f"{source}: teachers: expected a list of entries, got {raw_teachers!r}")

    teachers = [_parse_entry(raw, f"teachers[{i}]", source, base_dir) for i, raw in enumerate(raw_teachers)]
    student = _parse_entry(content["student"], "student", source, base_dir)
    if student.disable:
        raise ValueError(f"{source}: student.disable: only a teacher can be disabled")
    setup = ModelSetup(teachers=teachers, student=student, source=source)
    _mark_own_vocabularies(setup)
    return setup


def _read_json(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model config JSON not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
            ) from None


def _reject_unknown_keys(raw, allowed, source, where):
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ValueError(
            f"{source}: {where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )


def _parse_entry(raw, where, source, base_dir):
    _check_entry_keys(raw, where, source)
    tokenizer_kwargs = dict(raw.get("tokenizer_kwargs", {}))
    _check_tokenizer_kwargs(tokenizer_kwargs, source, where)
    disable = raw.get("disable", False)
    if disable:  # left out of the run: its paths (and their variables) need not exist
        paths = {key: raw[key] for key in PATH_KEYS}
    else:
        paths = {
            key: _resolve_path(raw[key], key, where, source, base_dir)
            for key in PATH_KEYS
            if raw[key] is not None
        }
    entry = ModelEntry(
        where=where,
        model_type=raw["model_type"],
        prefix=raw["prefix"],
        vocab_file=paths["vocab_file"],
        config_file=paths["config_file"],
        checkpoint=paths.get("checkpoint"),
        tokenizer_kwargs=tokenizer_kwargs,
        disable=disable,
        num_hidden_layers=raw.get("num_hidden_layers"),
        label_order=raw.get("label_order"),
    )
    if disable:
        return entry
    entry.tokenizer = BertTokenizer(vocab=entry.vocab_file, **tokenizer_kwargs)
    entry.bert_config = _read_bert_config(entry, source)
    return entry


def _check_entry_keys(raw, where, source):
    """The entry's keys and the types of their values, before any file is read."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: {where}: expected an object, got {raw!r}")
    _reject_unknown_keys(raw, REQUIRED_KEYS + OPTIONAL_KEYS, source, where)
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise ValueError(f"{source}: {where}: missing key(s) {', '.join(missing)}")

    def check(key, expected_type, description, allow_null=False):
        value = raw[key]
        if value is None and allow_null:
            return
        # bool is an int in Python; a layer count of `true` must not pass.
        if not isinstance(value, expected_type) or (isinstance(value, bool) and expected_type is not bool):
            raise ValueError(f"{source}: {where}.{key}: expected {description}, got {value!r}")

    for key in ("model_type", "prefix", "vocab_file", "config_file"):
        check(key, str, "a string")
    check("checkpoint", str, "a path string or null", allow_null=True)
    if "disable" in raw:
        check("disable", bool, "true/false")
    if "tokenizer_kwargs" in raw:
        check("tokenizer_kwargs", dict, "an object")
    if "num_hidden_layers" in raw:
        check("num_hidden_layers", int, "a positive integer")
        if raw["num_hidden_layers"] < 1:
            raise ValueError(
                f"{source}: {where}.num_hidden_layers: expected a positive integer, "
                f"got {raw['num_hidden_layers']}"
            )
    _check_entry_values(raw, where, source)


def _check_entry_values(raw, where, source):
    label_order = raw.get("label_order")
    if label_order is not None and (
        not isinstance(label_order, list)
        or len(label_order) < 1
        or not all(isinstance(x, str) and x.strip() for x in label_order)
    ):
        raise ValueError(
            f"{source}: {where}.label_order: expected a list of label names (the "
            f"labels of the classifier's rows, in order), got {label_order!r}"
        )
    if raw["model_type"] not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{source}: {where}.model_type: {raw['model_type']!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    # As in the original example, prefix is only a label (it named the feature cache there):
    # "bertuncased" and "bert" load alike.
    if not raw["prefix"].strip():
        raise ValueError(f"{source}: {where}.prefix: expected a non-empty label, got {raw['prefix']!r}")


def _check_tokenizer_kwargs(kwargs, source, where):
    unknown = sorted(set(kwargs) - set(TOKENIZER_OPTIONS))
    if unknown:
        raise ValueError(
            f"{source}: {where}.tokenizer_kwargs: unknown option(s) "
            f"{', '.join(map(repr, unknown))} (the vocabulary comes from vocab_file); "
            f"allowed: {', '.join(TOKENIZER_OPTIONS)}"
        )
    if "do_lower_case" in kwargs and not isinstance(kwargs["do_lower_case"], bool):
        raise ValueError(
            f"{source}: {where}.tokenizer_kwargs.do_lower_case: expected true/false, "
            f"got {kwargs['do_lower_case']!r}"
        )


def _resolve_path(value, key, where, source, base_dir):
    """Expand environment variables, make relative paths relative to base_dir, check existence."""

    def substitute(match):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise ValueError(
                f"{source}: {where}.{key}: environment variable ${name} is not set (in {value!r})"
            )
        return os.environ[name]

    expanded = os.path.expanduser(ENV_VARIABLE.sub(substitute, value))
    if not expanded:
        raise FileNotFoundError(f"{source}: {where}.{key}: the path is empty (from {value!r})")
    path = os.path.normpath(os.path.join(base_dir, expanded))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{source}: {where}.{key}: no such file or directory: {path}")
    if key != "checkpoint" and not os.path.isfile(path):
        raise FileNotFoundError(f"{source}: {where}.{key}: not a file: {path}")
    return path


def _read_bert_config(entry, source):
    try:
        config = BertConfig.from_json_file(entry.config_file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{source}: {entry.where}.config_file: {entry.config_file} is not valid JSON ({error})"
        ) from None
    if entry.num_hidden_layers is not None:
        config.num_hidden_layers = entry.num_hidden_layers
    with open(entry.vocab_file, encoding="utf-8") as f:
        vocab_lines = len(f.read().splitlines())
    if config.vocab_size < vocab_lines:
        raise ValueError(
            f"{source}: {entry.where}: vocab_file {entry.vocab_file} has "
            f"{vocab_lines} tokens but config_file {entry.config_file} has "
            f"vocab_size {config.vocab_size}; the embeddings would be too small"
        )
    return config


def _mark_own_vocabularies(setup):
    """A teacher whose vocabulary file or casing differs from the student's cannot read the
    student's token ids: it gets features of its own from the same text (data.py)."""
    student_digest = file_sha256(setup.student.vocab_file)
    for teacher in setup.enabled_teachers:
        teacher.own_features = (
            file_sha256(teacher.vocab_file) != student_digest
            or teacher.do_lower_case != setup.student.do_lower_case
        )
