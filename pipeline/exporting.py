"""A trained model as a Hugging Face model folder (export.py's command, and main.py's
--export_dir): config.json naming the task's labels, model.safetensors, the tokenizer's files and
vocab.txt, task.json, and README.md, its model card (model_card.py); written beside its
destination and renamed into place."""

import copy
import logging
import os
import shutil
import tempfile

from transformers import BertForSequenceClassification

from pipeline.label_order import write_labels
from pipeline.model_card import write_model_card
from pipeline.tasks import write_task_record

logger = logging.getLogger("export")
REGRESSION_OUTPUT = "score"  # the name of a regressor's one output in id2label


def export_model(trained, output_dir):
    """Write `trained` (a trained_models.TrainedModel) as a Hugging Face folder at output_dir.

    The folder is built beside output_dir and renamed into place, so a failed export leaves no
    half-written folder; an existing export at output_dir is replaced.
    """
    output_dir = os.path.abspath(output_dir)
    check_export_dir(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    building = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        _write_folder(trained, building, os.path.basename(output_dir))
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(building, output_dir)
    finally:
        if os.path.exists(building):
            shutil.rmtree(building)
    logger.info("exported %s to %s", trained.source, output_dir)
    return output_dir


def check_export_dir(output_dir):
    """Refuse a folder holding other files than an earlier export: they would be replaced."""
    if (
        os.path.isdir(output_dir)
        and os.listdir(output_dir)
        and not os.path.isfile(os.path.join(output_dir, "config.json"))
    ):
        raise ValueError(
            f"export folder {output_dir} holds files but no exported model; choose an empty or new folder"
        )
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"export folder {output_dir} is a file")


def _write_folder(trained, folder, name):
    config = copy.deepcopy(trained.bert_config)
    config.architectures = ["BertForSequenceClassification"]
    labels = trained.task.label_list
    write_labels(config, labels if labels is not None else [REGRESSION_OUTPUT])
    config.problem_type = "single_label_classification" if labels is not None else "regression"
    config._attn_implementation = None  # the loader's default (SDPA), not a training choice
    hf_model = BertForSequenceClassification(config)
    # Our BertForGLUESimple and BertForSequenceClassification share their keys ('bert.*',
    # 'classifier.*'): strict loading proves it, tensor for tensor.
    hf_model.load_state_dict(trained.model.state_dict(), strict=True)
    hf_model.save_pretrained(folder, safe_serialization=True)

    tokenizer = copy.deepcopy(trained.tokenizer)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(folder)
    if trained.vocab_file:  # transformers 5 writes tokenizer.json only; keep the plain vocabulary too
        shutil.copyfile(trained.vocab_file, os.path.join(folder, "vocab.txt"))
    write_task_record(folder, trained.task)
    write_model_card(folder, trained, name)
