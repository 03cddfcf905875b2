"""Named sets of distillation hyper-parameters, chosen with one option: --recipe NAME.

A recipe sets the defaults of the options it names; an option given on the command line still
wins. 'published' changes nothing: main.py's own defaults are TextBrewer's published MNLI recipe
(temperature 8, KD on the logits alone, every intermediate match at weight 1).
On a regression task (STS-B) a recipe's temperature is not used: KD there is the mean squared
error between the student's and the teacher's outputs (main.distillation_config); the rest applies.
"""

RECIPES = {
    "published": {},
    # For a student smaller than the teacher that would otherwise start from random weights
    # (T4-tiny). Measured on SICK with a MiniLM-L6 teacher, 3 epochs (README, "Which recipe"):
    # the student starts from the teacher's projected weights, learns from the gold labels
    # beside the teacher's, at a temperature that keeps the teacher's preferences sharp, and
    # at a learning rate high enough for the intermediate matches to be learnt in a short run.
    "recommended": {
        "init_student_from_teacher": True,
        "hard_label_weight": 1.0,
        "temperature": 2.0,
        "learning_rate": 5e-4,
    },
}
