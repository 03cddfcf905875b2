"""Reading checkpoints into BertForGLUESimple: state_dict files, safetensors files and Hugging
Face folders, their keys mapped into our layout and their classifier rows into the task's order."""

import dataclasses
import logging
import os
import pickle

from safetensors.torch import load_file

from distillation import safe_torch_load
from modeling import BertForGLUESimple
from pipeline.label_order import folder_labels, put_rows_in_task_order

logger = logging.getLogger(__name__)

ENCODER_PREFIX = "bert."
BARE_ENCODER_PARTS = ("embeddings.", "encoder.", "pooler.")  # keys BertModel.save_pretrained writes
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHOWN_KEYS = 8  # how many keys a log line or an error lists before '... (+N more)'


def build_model(entry, labels, role, output_hidden_states=False, output_attentions=False):
    """The classifier of a model_config.ModelEntry for a task's labels (None: regression, one
    output), with its checkpoint loaded when it has one, its rows in the labels' order.

    Teachers come back in eval mode (no dropout in the targets the student learns from).
    """
    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
    model = BertForGLUESimple(
        entry.bert_config,
        len(labels) if labels is not None else 1,
        output_hidden_states=output_hidden_states,
        output_attentions=output_attentions,
    )
    if entry.checkpoint:
        load_checkpoint(
            model, entry.checkpoint, role, labels, entry.label_order, f"{entry.where}.label_order"
        )
    elif role == "teacher":
        raise ValueError(f"{entry.where}: a teacher needs a checkpoint (it is null)")
    else:
        logger.info("student: no checkpoint, starting from random weights")
    if role == "teacher":
        model.eval()
    return model


@dataclasses.dataclass
class LoadReport:
    """Which of the model's tensors a checkpoint filled, and what it held that the model lacks."""

    loaded: list
    missing: list
    unexpected: list
    total: int  # tensors in the model's state_dict


def load_checkpoint(
    model, checkpoint_path, role, labels=None, label_order=None, label_order_source="label_order"
):
    """Load a checkpoint into a BertForGLUESimple and return a LoadReport.

    checkpoint_path: a state_dict file (.pkl, .bin, .pt, read with weights_only=True), a
    .safetensors file, or a Hugging Face model folder. Keys are mapped into our layout first
    (see map_checkpoint_keys). A teacher must load every tensor; a student must load at least
    part of its encoder (a missing classifier is normal when starting from a pre-trained BERT).
    labels: the task's labels (None: regression, or the rows are taken as they are). The
    classifier's rows are named by label_order when given, else by a folder's config.json
    (id2label), else taken to be in the labels' order already (our own checkpoints); named
    rows are permuted into the labels' order (label_order.py).
    """
    state_dict = read_state_dict(checkpoint_path)
    model_state = model.state_dict()
    mapped = map_checkpoint_keys(state_dict, model_state)
    _check_shapes(mapped, model_state, checkpoint_path)
    if labels is not None:
        row_labels, source = _row_labels(checkpoint_path, label_order, label_order_source)
        put_rows_in_task_order(mapped, row_labels, labels, source, role)

    loadable = {key: value for key, value in mapped.items() if key in model_state}
    report = LoadReport(
        loaded=sorted(loadable),
        missing=sorted(set(model_state) - set(loadable)),
        unexpected=sorted(set(mapped) - set(model_state)),
        total=len(model_state),
    )
    logger.info(
        "%s: loaded %d of %d tensors from %s; missing: %s; unexpected: %s",
        role,
        len(report.loaded),
        report.total,
        checkpoint_path,
        _shorten(report.missing),
        _shorten(report.unexpected),
    )

    if role == "teacher" and report.missing:
        raise ValueError(
            f"teacher checkpoint {checkpoint_path} lacks {len(report.missing)} of the "
            f"model's {report.total} tensors: {_shorten(report.missing)}"
        )
    if role == "student" and not any(key.startswith(ENCODER_PREFIX) for key in report.loaded):
        raise ValueError(
            f"student checkpoint {checkpoint_path}: none of its {len(state_dict)} "
            f"tensors matches the encoder (bert.*); its keys look like "
            f"{_shorten(sorted(state_dict))}"
        )
    if role == "student" and any(key.startswith("classifier.") for key in report.missing):
        logger.info("student: the checkpoint has no classifier; it starts from random weights")
    model.load_state_dict(loadable, strict=False)
    return report


def _row_labels(checkpoint_path, label_order, label_order_source):
    """(the labels of the checkpoint's classifier rows or None, where they were read)."""
    if label_order is not None:
        return label_order, label_order_source
    # A Hugging Face folder names its rows in config.json; so does one holding the weight file.
    folder = checkpoint_path if os.path.isdir(checkpoint_path) else os.path.dirname(checkpoint_path)
    named = os.path.isdir(checkpoint_path) or os.path.basename(checkpoint_path) in HF_WEIGHT_FILES
    return folder_labels(folder) if named else None, os.path.join(folder, "config.json")


def read_state_dict(checkpoint_path):
    """The tensors of a state_dict file, a .safetensors file or a Hugging Face model folder."""
    path = checkpoint_path
    if os.path.isdir(path):
        weights = [name for name in HF_WEIGHT_FILES if os.path.isfile(os.path.join(path, name))]
        if not weights:
            raise FileNotFoundError(f"checkpoint folder {path} holds none of {', '.join(HF_WEIGHT_FILES)}")
        path = os.path.join(path, weights[0])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        return load_file(path)
    try:
        state_dict = safe_torch_load(path)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"checkpoint {path} was refused: it holds objects other than tensors "
            f"and weights_only loading never runs pickled code "
            f"({_refusal_reason(error)})"
        ) from None
    except (RuntimeError, KeyError, EOFError) as error:
        raise ValueError(
            f"checkpoint {path} is not a readable torch file ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state_dict, dict):
        raise ValueError(
            f"checkpoint {path}: expected a state_dict (a dict of tensors), got {type(state_dict).__name__}"
        )
    return state_dict


def read_tensor(checkpoint_path, key, what):
    """One tensor of a checkpoint, by its key in our layout (see map_checkpoint_keys); `what`
    names it in the error where the checkpoint lacks it."""
    state = map_checkpoint_keys(read_state_dict(checkpoint_path), {})
    if key not in state:
        raise ValueError(f"{checkpoint_path}: no {key} ({what})")
    return state[key]


def map_checkpoint_keys(state_dict, model_state):
    """Rename checkpoint keys into BertForGLUESimple's layout ('bert.*', 'classifier.*').

    - our own keys ('bert.…', 'classifier.…') stay as they are;
    - TensorFlow-converted names: LayerNorm 'gamma'/'beta' become 'weight'/'bias'
      (their 'cls.*' pre-training heads stay and are reported as unexpected);
    - bare BertModel keys ('embeddings.…', 'encoder.…', 'pooler.…') get the 'bert.' prefix;
    - a 'position_ids' buffer the model does not keep is dropped without a word.
    """
    mapped = {}
    for key, tensor in state_dict.items():
        if key.endswith("LayerNorm.gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith("LayerNorm.beta"):
            key = key[: -len("beta")] + "bias"
        if key.startswith(BARE_ENCODER_PARTS):
            key = ENCODER_PREFIX + key
        if key.endswith("position_ids") and key not in model_state:
            continue
        mapped[key] = tensor
    return mapped


def _check_shapes(mapped, model_state, checkpoint_path):
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(model_state[key].shape)}"
        for key, tensor in mapped.items()
        if key in model_state and tensor.shape != model_state[key].shape
    ]
    if mismatched:
        raise ValueError(
            f"checkpoint {checkpoint_path} does not fit the model's config: "
            f"{len(mismatched)} shape mismatch(es): {'; '.join(mismatched[:SHOWN_KEYS])}"
        )


def _refusal_reason(error):
    """The line of torch's long weights_only message that names what was refused."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unpickler" in line]
    return (named or lines or ["no details"])[0].strip()


def _shorten(keys):
    if not keys:
        return "none"
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown if len(keys) <= SHOWN_KEYS else f"{shown} ... (+{len(keys) - SHOWN_KEYS} more)"
