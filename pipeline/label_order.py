"""Which label each row of a classifier stands for: read from a checkpoint, written into an
export, and the rows put into the task's order. One owner for the label order.

A classifier's row i scores label i. This project keeps the rows in the task's order
(utils_glue.py: MNLI's contradiction, entailment, neutral). A model from elsewhere may keep
them in another (the Hub's roberta-large-mnli: CONTRADICTION, NEUTRAL, ENTAILMENT), and says so
in its config.json's id2label, or in the model config JSON's "label_order"; such rows are
permuted into the task's order when the checkpoint loads. Names that say nothing (LABEL_0,
LABEL_1, ...) are refused: a silent guess would distil a student towards the wrong labels.
"""

import json
import logging
import os
import re

logger = logging.getLogger(__name__)

GENERIC_NAME = re.compile(r"^LABEL_\d+$", re.IGNORECASE)
CLASSIFIER_ROWS = ("classifier.weight", "classifier.bias")


def config_labels(config):
    """The label names of a transformers config (or its dict) in row order."""
    id2label = config.get("id2label") if isinstance(config, dict) else getattr(config, "id2label", None)
    if not id2label:
        return None
    by_row = {int(row): name for row, name in id2label.items()}
    return [by_row[row] for row in sorted(by_row)]


def folder_labels(path):
    """The id2label names of a Hugging Face folder's config.json (None for a file, or a folder
    without one)."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        return None
    with open(config_path, encoding="utf-8") as f:
        try:
            return config_labels(json.load(f))
        except (json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{config_path}: unreadable id2label ({error})") from None


def write_labels(config, labels):
    """Name the rows of a config's classifier after `labels` (an export's config.json)."""
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: row for row, label in enumerate(labels)}


def rows_in_task_order(row_labels, task_labels, source):
    """order[i]: the checkpoint row that scores task label i; None when already in order.

    row_labels: the names of the checkpoint's rows (matched case-insensitively); source names
    where they come from, for the error that refuses names which do not map.
    """
    rows = [str(name).strip().lower() for name in row_labels]
    wanted = [label.lower() for label in task_labels]
    if sorted(rows) != sorted(wanted) or len(set(rows)) != len(rows):
        generic = all(GENERIC_NAME.match(name) for name in rows)
        why = (
            "they are placeholders that do not say which row is which label"
            if generic
            else f"the task's labels are {', '.join(task_labels)}"
        )
        raise ValueError(
            f"{source}: the classifier's rows are named {', '.join(map(str, row_labels))}, which "
            f"do not map onto the task's labels ({why}). Say the order of the rows in the model "
            f'config JSON entry, e.g. "label_order": {json.dumps(list(task_labels))}'
        )
    order = [rows.index(label) for label in wanted]
    return None if order == list(range(len(order))) else order


def put_rows_in_task_order(state_dict, row_labels, task_labels, source, role):
    """Permute the classifier rows of a state_dict (in place) into the task's order, and log
    the mapping. Returns the state_dict."""
    if row_labels is None or not all(key in state_dict for key in CLASSIFIER_ROWS):
        return state_dict
    order = rows_in_task_order(row_labels, task_labels, source)
    mapping = ", ".join(
        f"row {row} {row_labels[row]} -> {label}"
        for label, row in zip(task_labels, order or range(len(task_labels)))
    )
    if order is None:
        logger.info("%s: classifier rows already in the task's order (%s)", role, mapping)
        return state_dict
    logger.info("%s: classifier rows put in the task's order: %s", role, mapping)
    for key in CLASSIFIER_ROWS:
        state_dict[key] = state_dict[key][order]
    return state_dict
