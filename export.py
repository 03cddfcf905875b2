"""Export a trained student (or teacher) as a Hugging Face model folder.

    python export.py --model_config_json jsons/DistillBertToTiny.json \
        --checkpoint output/T4tiny --output_dir student-hf          # a run folder: its newest gs*.pkl
    python export.py --model_config_json J --which teacher0 --checkpoint teacher/gs747.pkl --output_dir teacher-hf

The folder holds config.json (BertForSequenceClassification with the task's labels as id2label,
or one regression output), model.safetensors, vocab.txt and the tokenizer files, so that
AutoModelForSequenceClassification, AutoTokenizer and pipeline("text-classification") load it
without this repository; and task.json, the task it was trained for (predict.py reads it).
"""

import argparse
import copy
import logging
import os
import shutil
import sys
import tempfile

from transformers import BertForSequenceClassification

from pipeline.label_order import write_labels
from pipeline.tasks import write_task_record
from pipeline.trained_models import add_model_arguments, load_from_args

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
        _write_folder(trained, building)
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


def _write_folder(trained, folder):
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--output_dir", required=True, help="The Hugging Face folder to write.")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        export_model(load_from_args(args), args.output_dir)
    except (ValueError, FileNotFoundError, PermissionError) as error:
        logger.error("%s", error)
        sys.exit(1)


if __name__ == "__main__":
    main()
