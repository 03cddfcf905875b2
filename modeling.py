"""The BERT sentence-pair classifier, its adaptor for the distillers, and checkpoint loading."""
import copy
import dataclasses
import logging
import os
import pickle

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import BertModel

from distillation.io import safe_torch_load

logger = logging.getLogger(__name__)

ENCODER_PREFIX = "bert."
BARE_ENCODER_PARTS = ("embeddings.", "encoder.", "pooler.")  # keys BertModel.save_pretrained writes
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHOWN_KEYS = 8  # how many keys a log line or an error lists before '... (+N more)'


class BertForGLUESimple(nn.Module):
    """BERT encoder + dropout + linear classifier on the pooled [CLS] vector.

    What forward returns beyond the logits is fixed here, at construction, so a model that is
    only trained or evaluated never keeps the per-layer tensors:
      output_hidden_states: also return the embeddings output and every layer's output;
      output_attentions: also return every layer's attention probabilities (this needs the eager
        attention: SDPA computes no attention maps, so it is used only when they are not asked for).
    """

    def __init__(self, config, num_labels, output_hidden_states=False, output_attentions=False):
        super().__init__()
        config = copy.deepcopy(config)  # the caller's config stays as it was
        if output_attentions:
            config._attn_implementation = "eager"
        self.bert = BertModel(config, add_pooling_layer=True)
        self.config = self.bert.config
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.output_hidden_states = output_hidden_states
        self.output_attentions = output_attentions

    def return_features(self, hidden, attention):
        """Choose what forward returns beyond the logits (see the class docstring)."""
        self.output_hidden_states = hidden
        self.output_attentions = attention
        if attention and self.bert.config._attn_implementation != "eager":
            self.bert.set_attn_implementation("eager")  # SDPA computes no attention maps

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """input_ids, attention_mask, token_type_ids: (B, L) integer tensors; labels: (B,).

        Returns a dict:
          'logits': (B, num_labels);
          'hidden_states' (if built with them): num_hidden_layers + 1 tensors (B, L, H),
            the embeddings output first;
          'attentions' (if built with them): num_hidden_layers tensors (B, heads, L, L), the
            softmax probabilities (in training mode, after attention dropout as BERT uses them);
          'loss' (if labels are given): mean cross-entropy, a scalar.
        """
        if attention_mask is not None and attention_mask.is_cuda:
            attention_mask = expanded_attention_mask(attention_mask, self.bert.config._attn_implementation)
        encoded = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids,
                            output_hidden_states=self.output_hidden_states,
                            output_attentions=self.output_attentions, return_dict=True)
        logits = self.classifier(self.dropout(encoded.pooler_output))
        outputs = {"logits": logits}
        if self.output_hidden_states:
            outputs["hidden_states"] = encoded.hidden_states
        if self.output_attentions:
            outputs["attentions"] = encoded.attentions
        if labels is not None:
            outputs["loss"] = nn.functional.cross_entropy(logits, labels)
        return outputs


def expanded_attention_mask(attention_mask, attn_implementation):
    """The (B, 1, 1, L) mask BERT's attention applies, made from the (B, L) one as transformers
    makes it: additive float32 for eager attention, boolean for SDPA.

    Given a 2-D mask, transformers first checks on the host whether it pads anything at all (to
    skip it), so every forward on a GPU would wait for the GPU. A 4-D mask is used as given.
    """
    if attn_implementation not in ("eager", "sdpa"):
        return attention_mask  # other kernels take the 2-D mask itself
    keep = attention_mask[:, None, None, :].bool()
    if attn_implementation == "sdpa":
        return keep
    return torch.zeros(keep.shape, device=keep.device).masked_fill_(~keep, torch.finfo(torch.float32).min)


def BertForGLUESimpleAdaptor(batch, model_outputs):
    """Translate a batch and BertForGLUESimple's outputs into the names the distillers read."""
    adapted = {"logits": model_outputs["logits"], "inputs_mask": batch["attention_mask"]}
    if "hidden_states" in model_outputs:
        adapted["hidden"] = model_outputs["hidden_states"]
    if "attentions" in model_outputs:
        adapted["attention"] = model_outputs["attentions"]
    if "loss" in model_outputs:
        adapted["losses"] = model_outputs["loss"]
    if "labels" in batch:
        adapted["labels"] = batch["labels"]
    return adapted


def build_model(entry, num_labels, role, output_hidden_states=False, output_attentions=False):
    """The classifier of a model_config.ModelEntry, with its checkpoint loaded when it has one.

    Teachers come back in eval mode (no dropout in the targets the student learns from).
    """
    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
    model = BertForGLUESimple(entry.bert_config, num_labels,
                              output_hidden_states=output_hidden_states,
                              output_attentions=output_attentions)
    if entry.checkpoint:
        load_checkpoint(model, entry.checkpoint, role)
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


def load_checkpoint(model, checkpoint_path, role):
    """Load a checkpoint into a BertForGLUESimple and return a LoadReport.

    checkpoint_path: a state_dict file (.pkl, .bin, .pt, read with weights_only=True), a
    .safetensors file, or a Hugging Face model folder. Keys are mapped into our layout first
    (see map_checkpoint_keys). A teacher must load every tensor; a student must load at least
    part of its encoder (a missing classifier is normal when starting from a pre-trained BERT).
    """
    state_dict = read_state_dict(checkpoint_path)
    model_state = model.state_dict()
    mapped = map_checkpoint_keys(state_dict, model_state)
    _check_shapes(mapped, model_state, checkpoint_path)

    loadable = {key: value for key, value in mapped.items() if key in model_state}
    report = LoadReport(loaded=sorted(loadable),
                        missing=sorted(set(model_state) - set(loadable)),
                        unexpected=sorted(set(mapped) - set(model_state)), total=len(model_state))
    logger.info("%s: loaded %d of %d tensors from %s; missing: %s; unexpected: %s", role,
                len(report.loaded), report.total, checkpoint_path, _shorten(report.missing),
                _shorten(report.unexpected))

    if role == "teacher" and report.missing:
        raise ValueError(f"teacher checkpoint {checkpoint_path} lacks {len(report.missing)} of the "
                         f"model's {report.total} tensors: {_shorten(report.missing)}")
    if role == "student" and not any(key.startswith(ENCODER_PREFIX) for key in report.loaded):
        raise ValueError(f"student checkpoint {checkpoint_path}: none of its {len(state_dict)} "
                         f"tensors matches the encoder (bert.*); its keys look like "
                         f"{_shorten(sorted(state_dict))}")
    if role == "student" and any(key.startswith("classifier.") for key in report.missing):
        logger.info("student: the checkpoint has no classifier; it starts from random weights")
    model.load_state_dict(loadable, strict=False)
    return report


def read_state_dict(checkpoint_path):
    """The tensors of a state_dict file, a .safetensors file or a Hugging Face model folder."""
    path = checkpoint_path
    if os.path.isdir(path):
        weights = [name for name in HF_WEIGHT_FILES if os.path.isfile(os.path.join(path, name))]
        if not weights:
            raise FileNotFoundError(f"checkpoint folder {path} holds none of "
                                    f"{', '.join(HF_WEIGHT_FILES)}")
        path = os.path.join(path, weights[0])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        return load_file(path)
    try:
        state_dict = safe_torch_load(path)
    except pickle.UnpicklingError as error:
        raise ValueError(f"checkpoint {path} was refused: it holds objects other than tensors "
                         f"and weights_only loading never runs pickled code "
                         f"({_refusal_reason(error)})") from None
    except (RuntimeError, KeyError, EOFError) as error:
        raise ValueError(f"checkpoint {path} is not a readable torch file "
                         f"({type(error).__name__}: {error})") from None
    if not isinstance(state_dict, dict):
        raise ValueError(f"checkpoint {path}: expected a state_dict (a dict of tensors), "
                         f"got {type(state_dict).__name__}")
    return state_dict


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
            key = key[:-len("gamma")] + "weight"
        elif key.endswith("LayerNorm.beta"):
            key = key[:-len("beta")] + "bias"
        if key.startswith(BARE_ENCODER_PARTS):
            key = ENCODER_PREFIX + key
        if key.endswith("position_ids") and key not in model_state:
            continue
        mapped[key] = tensor
    return mapped


def _check_shapes(mapped, model_state, checkpoint_path):
    mismatched = [f"{key}: checkpoint {tuple(tensor.shape)} vs model "
                  f"{tuple(model_state[key].shape)}"
                  for key, tensor in mapped.items()
                  if key in model_state and tensor.shape != model_state[key].shape]
    if mismatched:
        raise ValueError(f"checkpoint {checkpoint_path} does not fit the model's config: "
                         f"{len(mismatched)} shape mismatch(es): {'; '.join(mismatched[:SHOWN_KEYS])}")


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
