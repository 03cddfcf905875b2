"""Command-line options of main.py, declared once and checked up front (check_args: the options
alone; main.check_setup then checks them against the model config and the output folder).
main.emd.py adds its own options to this parser (add_options)."""

import argparse

from data import MEGA_BATCH
from distillation.configs import TEACHER_DTYPES
from recipes import RECIPES
from tasks import TASK_NAMES

DEFAULT_MAX_SEQ_LENGTH = 128
DEFAULT_TEACHER_CHECK_SIZE = 2000
COMPILE_PAD_MULTIPLE = 8  # --pad_to_multiple_of with --compile
CUSTOM_COLUMN_DEFAULTS = {"text_a_column": "text", "text_b_column": None, "label_column": "label"}


def build_parser(
    description="Train a BERT teacher on a GLUE task or your own data, or distill teachers into a student.",
):
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    # Data and files
    add(
        "--data_dir",
        required=True,
        help="The task's folder (MNLI: train.tsv, dev_matched.tsv, dev_mismatched.tsv), or the "
        "folder above GLUE's task folders (MNLI/, RTE/, ...).",
    )
    add("--output_dir", required=True, help="Checkpoints gs{step}.pkl, logs and eval_results.txt go here.")
    add("--model_config_json", required=True, help="JSON naming the teachers and the student (see jsons/).")
    add_task_arguments(parser)
    add(
        "--cache_dir",
        default=None,
        help="Where encoded features are cached (default: <data_dir>/cache, or feature_cache beside "
        "output_dir when data_dir is read-only).",
    )
    # What to do
    add("--do_train", action="store_true", help="Train (or distill) the student.")
    add("--do_eval", action="store_true", help="Evaluate on the task's dev sets after every checkpoint.")
    add(
        "--do_predict",
        action="store_true",
        help="Evaluate on the dev sets; without --do_train, the student checkpoint named in the JSON.",
    )
    add(
        "--do_test",
        action="store_true",
        help="At the end, write GLUE submission files into output_dir from the task's test files "
        "(MNLI: MNLI-m.tsv and MNLI-mm.tsv from test_matched.tsv and test_mismatched.tsv).",
    )
    add(
        "--export_dir",
        default=None,
        help="At the end, export the student as a Hugging Face model folder here (see export.py).",
    )
    # Training
    add(
        "--max_seq_length",
        type=int,
        default=DEFAULT_MAX_SEQ_LENGTH,
        help="Examples are truncated and padded to this length.",
    )
    add(
        "--train_batch_size",
        type=int,
        default=32,
        help="Examples per optimizer step (over all accumulation).",
    )
    add("--predict_batch_size", type=int, default=128, help="Examples per evaluation batch.")
    add("--learning_rate", type=float, default=3e-5)
    add("--num_train_epochs", type=float, default=3.0)
    add("--warmup_proportion", type=float, default=0.1, help="Share of the steps with a linear warmup.")
    add("--weight_decay_rate", type=float, default=0.01, help="AdamW decay; never on biases and LayerNorm.")
    add("--gradient_accumulation_steps", type=int, default=1)
    add("--max_grad_norm", type=float, default=-1.0, help="Clip gradients to this norm; <= 0 disables.")
    add("--random_seed", type=int, default=9580)
    add("--no_cuda", action="store_true", help="Run on the CPU even when CUDA is available.")
    add(
        "--fp16",
        action="store_true",
        help="fp16 autocast with a GradScaler on CUDA; on a CPU it runs in float32 with a warning.",
    )
    add("--bf16", action="store_true", help="bf16 autocast (on CPUs without native bf16 it is slow).")
    add(
        "--num_workers",
        type=int,
        default=None,
        help="Worker processes preparing training batches (default: 2 on a GPU, 0 on CPUs).",
    )
    add(
        "--group_by_length",
        action="store_true",
        help="Batches of similar lengths: each epoch's shuffled examples are sorted by length in "
        f"mega-batches of {MEGA_BATCH} batches, and the batches shuffled (seeded by --random_seed and "
        "the epoch). Less padding, faster epochs; a change of the sampling, off in the published recipe.",
    )
    add(
        "--compile",
        action="store_true",
        help="torch.compile the models' forward passes and the losses (on a GPU with CUDA graphs, "
        "mode reduce-overhead, unless gradients are accumulated). A GPU lever: on a CPU the compiled step is not faster and the "
        "compilation takes minutes (docs/speed.md).",
    )
    add(
        "--pad_to_multiple_of",
        type=int,
        default=None,
        help="Round each batch's length up to a multiple of this, so a compiled model sees a few "
        f"shapes (default: {COMPILE_PAD_MULTIPLE} with --compile, else none).",
    )
    add(
        "--teacher_dtype",
        choices=sorted(TEACHER_DTYPES),
        default=None,
        help="Cast the teachers' weights once to this type and run them under torch.inference_mode, "
        "a GPU lever beside --fp16 / --bf16 (default: none, the teachers run as the student does; "
        "bf16 is many times slower on CPUs without native support). The teacher check scores "
        "the teachers before the cast.",
    )
    add("--PRINT_EVERY", type=int, default=200, help="Log the losses every this many optimizer steps.")
    add(
        "--ckpt_frequency",
        type=int,
        default=1,
        help="Checkpoints (and evaluations) per epoch; with a fractional --num_train_epochs, one every "
        "(steps per epoch // ckpt_frequency) steps, and one at the last step.",
    )
    add(
        "--resume",
        action="store_true",
        help="Continue the interrupted run in --output_dir from its newest resume_gs*.pt.",
    )
    add(
        "--keep_resume_states",
        type=int,
        default=2,
        help="How many resume states (saved beside the checkpoints) to keep.",
    )
    # Distillation
    add(
        "--recipe",
        choices=sorted(RECIPES),
        default="published",
        help="A named set of the distillation options below (see recipes.py); options given "
        "on the command line override it.",
    )
    add("--temperature", type=float, default=8.0, help="Temperature of the KD loss on the logits.")
    add(
        "--cache_teacher_logits",
        action="store_true",
        help="Compute each training example's teacher logits once (first epoch) and reuse them, "
        "keyed by example index; for distillation on logits alone.",
    )
    add(
        "--hard_label_weight",
        type=float,
        default=0.0,
        help="Weight of the hard-label loss on the gold labels (cross-entropy; a regression task's "
        "mean squared error), beside the KD term.",
    )
    add("--kd_loss_weight", type=float, default=1.0, help="Weight of the KD term on the logits.")
    add(
        "--intermediate_weight",
        type=float,
        default=1.0,
        help="Multiplies the weight of every intermediate match (and of EMD's hidden-state term).",
    )
    add(
        "--init_student_from_teacher",
        action="store_true",
        help="Start the student from the (first) teacher's weights, projected onto the student's "
        "sizes (see student_init.py).",
    )
    add(
        "--transfer_file",
        default=None,
        help="Extra examples in the train file's layout (labels empty, '-', or ignored), learnt "
        "from the teachers' outputs alone: no hard-label term (augment.py writes such a file).",
    )
    add(
        "--matches",
        nargs="*",
        default=[],
        help="Intermediate-match presets (see matches.py) and/or paths of JSON lists of matches.",
    )
    # The teachers' own score, before they teach (teacher_check.py)
    add(
        "--teacher_check_size",
        type=int,
        default=DEFAULT_TEACHER_CHECK_SIZE,
        help="Before training, evaluate each teacher on the first this many examples of each dev "
        "set and stop if it is no better than always answering the most frequent label plus 2 "
        "points (teacher_check.py); 0 turns it off.",
    )
    add(
        "--allow_weak_teacher",
        action="store_true",
        help="Report a teacher that fails the check above, and distill from it all the same.",
    )
    return parser


def add_task_arguments(parser):
    """--task_name and a custom task's columns (main.py's, and augment.py's)."""
    parser.add_argument(
        "--task_name",
        default="mnli",
        type=str.lower,
        choices=TASK_NAMES,
        help="A GLUE task (mnli is evaluated on dev_matched and dev_mismatched), or custom: your "
        "own train/dev/test files in data_dir (.tsv, .csv or .jsonl) with the columns below.",
    )
    for name, what in (
        ("text_a_column", "the (first) text"),
        ("text_b_column", "the second text of a pair (none: single texts)"),
        ("label_column", "the labels"),
    ):
        parser.add_argument(
            f"--{name}", default=CUSTOM_COLUMN_DEFAULTS[name], help=f"custom: the column of {what}."
        )


def parse_args(argv=None, add_options=None, check=None):
    """The options of main.py; add_options(parser) declares an entry point's own options and
    check(args) returns the problems with them (main.emd.py's)."""
    parser = build_parser()
    if add_options is not None:
        add_options(parser)
    # The recipe first: its values become the defaults, so explicit options still win.
    recipe, _ = parser.parse_known_args(argv)
    parser.set_defaults(**RECIPES[recipe.recipe])
    args = parser.parse_args(argv)
    if args.pad_to_multiple_of is None and args.compile:
        args.pad_to_multiple_of = COMPILE_PAD_MULTIPLE
    problems = check_args(args) + (check(args) if check is not None else [])
    if problems:  # one line, without the usage: the options themselves parsed fine
        parser.exit(2, f"{parser.prog}: error: {'; '.join(problems)}\n")
    return args


def check_args(args):
    """Mistakes in the options themselves, found before any file is read."""
    problems = []
    if not (args.do_train or args.do_predict or args.do_test or args.export_dir):
        problems.append("nothing to do: pass --do_train, --do_predict, --do_test or --export_dir")
    for name in (
        "max_seq_length",
        "train_batch_size",
        "predict_batch_size",
        "gradient_accumulation_steps",
        "PRINT_EVERY",
        "ckpt_frequency",
        "keep_resume_states",
    ):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.train_batch_size % max(args.gradient_accumulation_steps, 1):
        problems.append(
            f"--train_batch_size {args.train_batch_size} is not divisible by "
            f"--gradient_accumulation_steps {args.gradient_accumulation_steps}"
        )
    if args.pad_to_multiple_of is not None and args.pad_to_multiple_of < 1:
        problems.append(f"--pad_to_multiple_of must be at least 1, got {args.pad_to_multiple_of}")
    if args.num_workers is not None and args.num_workers < 0:
        problems.append(f"--num_workers must be at least 0, got {args.num_workers}")
    if args.num_train_epochs <= 0:
        problems.append(f"--num_train_epochs must be positive, got {args.num_train_epochs}")
    if args.learning_rate <= 0:
        problems.append(f"--learning_rate must be positive, got {args.learning_rate}")
    elif args.learning_rate > 1:  # the original scripts' lr=2 meant 2e-5
        problems.append(
            f"--learning_rate {args.learning_rate:g} is above 1: a rate in the original "
            f"scripts' units of 1e-5? Write --learning_rate {args.learning_rate:g}e-5"
        )
    if not 0 <= args.warmup_proportion < 1:
        problems.append(f"--warmup_proportion must be in [0, 1), got {args.warmup_proportion}")
    if args.temperature <= 0:
        problems.append(f"--temperature must be positive, got {args.temperature}")
    if args.fp16 and args.bf16:
        problems.append("--fp16 and --bf16 exclude each other")
    if args.teacher_check_size < 0:
        problems.append(
            f"--teacher_check_size must be at least 0 (0: no check), got {args.teacher_check_size}"
        )
    if args.task_name != "custom":
        given = [
            f"--{name}" for name, default in CUSTOM_COLUMN_DEFAULTS.items() if getattr(args, name) != default
        ]
        if given:
            problems.append(
                f"{', '.join(given)}: for --task_name custom only (task "
                f"{args.task_name} reads GLUE's columns)"
            )
    return problems
