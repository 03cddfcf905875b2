"""Between the models and the losses: calling a model on a batch, and checking adaptor outputs.

An adaptor is a function adaptor(batch, model_outputs) -> dict whose keys are among ADAPTOR_KEYS:
  logits       (batch, num_classes), or a list of such tensors (several heads)
  logits_mask  masks selecting rows of the logits (sequence labelling), one per logits tensor
  losses       the model's own loss(es): the hard-label term
  labels       gold labels (used by probability_shift)
  inputs_mask  (batch, length) 1 for real tokens: masks the intermediate losses
  hidden       list of hidden states (batch, length, hidden), index 0 the embeddings
  attention    list of attention maps (batch, heads, length, length)
"""

from collections.abc import Mapping

import torch

from .registry import ADAPTOR_KEYS

LIST_KEYS = ("logits", "logits_mask", "losses", "labels")  # a single tensor means a list of one


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def post_adaptor(results):
    """Check the keys of an adaptor's dict and turn the list-valued entries into lists."""
    if not isinstance(results, Mapping):
        raise TypeError(f"an adaptor must return a dict, got {type(results).__name__}")
    unknown = [key for key in results if key not in ADAPTOR_KEYS]
    if unknown:
        raise ValueError(
            f"adaptor returned unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(ADAPTOR_KEYS)}"
        )
    return {key: as_list(value) if key in LIST_KEYS else value for key, value in results.items()}


def move_to_device(batch, device):
    """The tensors of a batch moved to the device, at any depth of its Mappings, tuples and
    lists (a {'teacher': ..., 'student': ...} batch too); other items as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_to_device(item, device) for item in batch)
    return batch


def split_sides(batch):
    """(the teachers' batch, the student's batch): TextBrewer's {'teacher': ..., 'student': ...}
    layout gives each side its own; {'teachers': [...], 'student': ...} gives each teacher its
    own (PerTeacher: teachers with vocabularies of their own); any other batch serves both."""
    if isinstance(batch, Mapping) and "student" in batch:
        if "teachers" in batch:
            return PerTeacher(batch["teachers"]), batch["student"]
        if "teacher" in batch:
            return batch["teacher"], batch["student"]
    return batch, batch


def out_of_inference_mode(results):
    """results with every inference tensor (made under torch.inference_mode) cloned into a normal
    one: a loss may save its inputs for the backward pass, which an inference tensor refuses."""
    if isinstance(results, torch.Tensor):
        return results.clone() if results.is_inference() else results
    if isinstance(results, Mapping):
        return {key: out_of_inference_mode(value) for key, value in results.items()}
    if isinstance(results, (tuple, list)):
        return type(results)(out_of_inference_mode(item) for item in results)
    return results


class PerTeacher(list):
    """One batch per teacher, in the teachers' order (not a list batch, which is model(*batch))."""


def call_model(model, batch, args):
    """model(**batch) for a Mapping (dict, BatchEncoding), model(*batch) for a tuple or list."""
    if isinstance(batch, Mapping):
        return model(**batch, **args)
    if isinstance(batch, (tuple, list)):
        return model(*batch, **args)
    return model(batch, **args)


def forward_models(models, batch, args):
    """One model's outputs, or a list / dict of outputs for a list / dict of models."""
    if isinstance(models, (list, tuple)):
        return [call_model(model, batch, args) for model in models]
    if isinstance(models, Mapping):
        return {name: call_model(model, batch, args) for name, model in models.items()}
    return call_model(models, batch, args)


def get_outputs_from_batch(batch, device, model_T, model_S, args, no_teacher_forward=False):
    """((teacher_batch, teacher outputs), (student_batch, student outputs)), as TextBrewer's.

    The outputs are the models' raw outputs, before the adaptors. The batch goes to the device;
    a dict batch with 'teacher' and 'student' keys gives each side its own batch, and its
    'teacher_cache', if present, stands in for the teachers' outputs. The teachers run without
    gradients; their outputs are None with no_teacher_forward.
    """
    teacher_batch, student_batch = split_sides(move_to_device(batch, device))
    cached = batch.get("teacher_cache") if teacher_batch is not student_batch else None
    if no_teacher_forward:
        outputs_T = None
    elif cached is not None:
        outputs_T = move_to_device(cached, device)
    else:
        with torch.no_grad():
            outputs_T = forward_models(model_T, teacher_batch, args)
    outputs_S = call_model(model_S, student_batch, args)
    return (teacher_batch, outputs_T), (student_batch, outputs_S)


def select_logits_with_mask(logits_list, masks_list):
    """TextBrewer's selection: (batch, length, classes) logits keep the rows their mask marks,
    giving (selected, classes); (batch, classes) logits are left as they are. One mask may
    serve every logits tensor."""
    if len(masks_list) == 1:
        masks_list = masks_list * len(logits_list)
    if len(masks_list) != len(logits_list):
        raise ValueError(
            f"select_logits_with_mask: {len(logits_list)} logits tensors but {len(masks_list)} masks"
        )
    return [
        logits[mask.bool()] if logits.dim() == 3 else logits for logits, mask in zip(logits_list, masks_list)
    ]
