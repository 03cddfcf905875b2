"""BERT-EMD distillation: main.py's pipeline with the EMD distillers.

The options are main.py's plus the --emd_* options below; the layer mapping is learnt, so
--matches is not used. Without any --emd_* option the distiller is the tutorial's EMDDistiller
(distiller_emd.py); with one, the FullEMDDistiller of distiller_emd_full.py (attention maps,
learnt layer weights, two stages).
"""

import main
from distiller_emd import EMDDistiller
from distiller_emd_full import DEFAULT_INTERMEDIATE_SHARE, FullEMDDistiller, option_problems
from modeling import BertForGLUESimpleAdaptor
from pipeline.options import distillation_config

SWITCHES = ("attention", "update_weights", "separate_weights", "two_stage")


def add_emd_options(parser):
    group = parser.add_argument_group(
        "BERT-EMD in full (see distiller_emd_full.py); all off: the tutorial's method"
    )
    add = group.add_argument
    add(
        "--emd_attention",
        action="store_true",
        help="Add an Earth Mover's Distance over the attention maps (needs the student's and the "
        "teacher's head counts to agree).",
    )
    add(
        "--emd_update_weights",
        action="store_true",
        help="The layer weights learn from the cost each layer carried (the authors' update) "
        "instead of staying uniform.",
    )
    add(
        "--emd_separate_weights",
        action="store_true",
        help="With --emd_attention and --emd_update_weights, keep the attention and hidden-state "
        "layer weights apart instead of averaging them.",
    )
    add(
        "--emd_two_stage",
        action="store_true",
        help="The authors' schedule: the intermediate layers first (EMD terms only), then the "
        "prediction layer (the loss on the logits only).",
    )
    add(
        "--emd_intermediate_share",
        type=float,
        default=DEFAULT_INTERMEDIATE_SHARE,
        help="With --emd_two_stage: the share of the optimizer steps in the first stage "
        f"(default {DEFAULT_INTERMEDIATE_SHARE}: with 2 epochs, one epoch each).",
    )


def emd_settings(args):
    """FullEMDDistiller's keyword arguments from the --emd_* options."""
    return {
        **{name: getattr(args, f"emd_{name}") for name in SWITCHES},
        "intermediate_share": args.emd_intermediate_share,
    }


def check_emd_options(args):
    return [f"--emd_{problem}" for problem in option_problems(**emd_settings(args))]


def build_emd_distiller(args, train_config, teachers, student, matches):
    if len(teachers) != 1:
        raise ValueError(
            f"main.emd.py distills exactly one teacher; {args.model_config_json} enables {len(teachers)}"
        )
    if matches:
        raise ValueError("main.emd.py finds its own layer mapping: drop --matches")
    common = (
        train_config,
        distillation_config(args, student),
        teachers[0],
        student,
        BertForGLUESimpleAdaptor,
        BertForGLUESimpleAdaptor,
    )
    settings = emd_settings(args)
    if not any(settings[name] for name in SWITCHES):
        return EMDDistiller(*common, emd_weight=args.intermediate_weight)
    # Its features_read() asks main.py for attention maps when attention EMD is on.
    return FullEMDDistiller(*common, emd_weight=args.intermediate_weight, **settings)


if __name__ == "__main__":
    main.main(build_emd_distiller, add_options=add_emd_options, check=check_emd_options)
