"""Export a trained student (or teacher) as a Hugging Face model folder.

    python export.py --model_config_json jsons/DistillBertToTiny.json \
        --checkpoint output/T4tiny --output_dir student-hf          # a run folder: its newest gs*.pkl
    python export.py --model_config_json J --which teacher0 --checkpoint teacher/gs747.pkl --output_dir teacher-hf

The folder holds config.json (BertForSequenceClassification with the task's labels as id2label,
or one regression output), model.safetensors, vocab.txt and the tokenizer files, so that
AutoModelForSequenceClassification, AutoTokenizer and pipeline("text-classification") load it
without this repository; task.json, the task it was trained for (predict.py reads it); and
README.md, its model card: what the model is, its teachers, recipe, dev scores and command, read
from the records of the run folder of its checkpoint (pipeline/model_card.py).
"""

import argparse
import logging

from pipeline.commands import errors_in_one_line, start_logging
from pipeline.exporting import export_model
from pipeline.options import add_model_options, add_output_dir, model_choice
from pipeline.trained_models import load_trained

logger = logging.getLogger("export")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    add_output_dir(parser, "The Hugging Face folder to write.")
    args = parser.parse_args(argv)
    start_logging()
    with errors_in_one_line(logger):
        export_model(load_trained(**model_choice(args)), args.output_dir)


if __name__ == "__main__":
    main()
