"""GLUE's submission files: the test sets' predictions, one file per test set (MNLI-m.tsv,
MNLI-mm.tsv, RTE.tsv, ...), 'index<TAB>prediction' a line, labels spelled as GLUE spells them and
STS-B's scores clipped to its 0..5 range. A custom task writes predictions.tsv."""

import logging
import os

from distillation import atomic_write_text
from pipeline.data import feature_batches
from pipeline.evaluation import predict_outputs
from utils_glue import convert_examples_to_features

logger = logging.getLogger(__name__)

SCORE_RANGE = (0.0, 5.0)  # STS-B's similarity scores


def read_test_sets(task, data_dir, tokenizer, max_seq_length):
    """{submission name: (examples, features)} of the task's test files."""
    if not task.test_sets:
        raise FileNotFoundError(f"task {task.name} has no test file in {data_dir}")
    test_sets = {}
    for name in task.test_sets:
        examples = task.get_examples(data_dir, name)
        test_sets[name] = (
            examples,
            convert_examples_to_features(
                examples, task.label_list, max_seq_length, tokenizer, labelled=False
            ),
        )
    return test_sets


def prediction_text(row, labels):
    """One prediction as GLUE's file wants it: the label's name, or a clipped score."""
    if labels is None:
        return f"{min(max(float(row[0]), SCORE_RANGE[0]), SCORE_RANGE[1]):.3f}"
    return labels[int(row.argmax())]


def write_submissions(model, test_sets, output_dir, batch_size, device, labels):
    """Write <name>.tsv in output_dir for each test set ('index<TAB>prediction', in file order)."""
    for name, (examples, features) in test_sets.items():
        outputs = predict_outputs(model, feature_batches(features, batch_size), device)
        lines = ["index\tprediction"] + [
            f"{example.guid}\t{prediction_text(row, labels)}" for example, row in zip(examples, outputs)
        ]
        path = os.path.join(output_dir, f"{name}.tsv")
        atomic_write_text(path, "\n".join(lines) + "\n")
        logger.info("wrote %d predictions to %s", len(examples), path)
