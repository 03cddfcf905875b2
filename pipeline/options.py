"""Every command-line option of the programs, declared once, in groups the programs share, and
checked in one place before any work:

    main.py / main.emd.py   build_parser (main.emd.py adds its --emd_* options: add_options)
    predict.py, export.py   add_model_options, and the shared declarations below
    augment.py              add_data_source, add_task_options, add_model_config_json, add_which, add_seed

check_args finds the mistakes in the options alone; check_setup, those against the model config
JSON and the folders. Library modules never see the namespace: main.py passes them values.
"""

import argparse
import os
import shlex
import sys

from distillation import DistillationConfig, TrainingConfig, latest_state
from distillation.configs import TEACHER_DTYPES
from modeling import check_max_seq_length
from pipeline.custom_task import COLUMN_DEFAULTS
from pipeline.data import MEGA_BATCH
from pipeline.exporting import check_export_dir
from pipeline.recipes import RECIPES
from pipeline.run_folder import check_output_dir
from pipeline.tasks import DEFAULT_TASK, TASK_NAMES, task_kind
from pipeline.tasks import check_data_files as check_task_files

DEFAULT_MAX_SEQ_LENGTH = 128
DEFAULT_TEACHER_CHECK_SIZE = 2000
COMPILE_PAD_MULTIPLE = 8  # --pad_to_multiple_of with --compile
# Options that must be at least 1.
POSITIVE = ("max_seq_length", "train_batch_size", "predict_batch_size", "gradient_accumulation_steps",
            "PRINT_EVERY", "ckpt_frequency", "keep_resume_states")  # fmt: skip


DATA_DIR_HELP = (
    "The task's folder (MNLI: train.tsv, dev_matched.tsv, dev_mismatched.tsv), or the folder above "
    "GLUE's task folders (MNLI/, RTE/, ...)."
)


# The declarations shared by several programs.
def add_data_dir(parser, help=DATA_DIR_HELP, required=True):
    parser.add_argument("--data_dir", required=required, help=help)


def add_data_source(parser, help=DATA_DIR_HELP):
    """--data_dir (its files; help: what they are) or --dataset (a Hugging Face dataset), one of them."""
    group = parser.add_mutually_exclusive_group(required=True)
    add_data_dir(group, help, required=False)
    group.add_argument(
        "--dataset",
        default=None,
        help="Or a Hugging Face dataset (needs `pip install datasets`): a Hub id whose configuration is "
        "the task (nyu-mll/glue), a folder written by save_to_disk, or a folder of the Hub's parquet "
        "files (docs/tasks.md, From the Hub).",
    )


def add_output_dir(parser, help):
    parser.add_argument("--output_dir", required=True, help=help)


def add_model_config_json(
    parser, required=True, help="JSON naming the teachers and the student (see jsons/)."
):
    parser.add_argument("--model_config_json", required=required, help=help)


def add_task_name(parser, help=None):
    parser.add_argument(
        "--task_name",
        type=str.lower,
        choices=TASK_NAMES,
        default=None,  # DEFAULT_TASK, applied by tasks.task_kind: a model's task.json may name another
        help=help
        or f"A GLUE task (default {DEFAULT_TASK}; mnli is evaluated on dev_matched and "
        "dev_mismatched), or custom: your own train/dev/test files in data_dir (.tsv, .csv or .jsonl) "
        "with the columns below.",
    )


def add_task_options(parser):
    """--task_name and a custom task's columns."""
    add_task_name(parser)
    for name, what in (
        ("text_a_column", "the (first) text"),
        ("text_b_column", "the second text of a pair (none: single texts)"),
        ("label_column", "the labels"),
    ):
        default = f"default {COLUMN_DEFAULTS[name]}" if COLUMN_DEFAULTS[name] else "default none"
        parser.add_argument(f"--{name}", default=None, help=f"custom: the column of {what} ({default}).")


def custom_columns(args):
    """The custom task's columns the options name ({option name: column or None})."""
    return {name: getattr(args, name) for name in COLUMN_DEFAULTS}


def add_which(parser, default, help):
    parser.add_argument("--which", default=default, help=help)


def add_model_options(parser):
    """The trained model a command reads (pipeline/trained_models.py): an exported folder, or an
    entry of a model config JSON and its checkpoint."""
    group = parser.add_argument_group("the model")
    group.add_argument("--model", help="An exported Hugging Face model folder (export.py).")
    add_model_config_json(group, required=False, help="The JSON naming the teachers and the student.")
    add_which(group, "student", "student (default), or teacherN: the N-th entry of 'teachers'.")
    group.add_argument(
        "--checkpoint",
        help="A gs{step}.pkl, or a run folder (its newest gs*.pkl); default: the JSON entry's checkpoint.",
    )
    add_task_name(group, help=f"The model's task when its folder has no task.json (default {DEFAULT_TASK}).")


def model_choice(args):
    """pipeline.trained_models.load_trained's arguments from add_model_options' options."""
    return {
        name: getattr(args, name)
        for name in ("model", "model_config_json", "which", "checkpoint", "task_name")
    }


def add_max_seq_length(parser, default, help="Examples are truncated and padded to this length."):
    parser.add_argument("--max_seq_length", type=int, default=default, help=help)


def add_predict_batch_size(parser, default, aliases=()):
    parser.add_argument("--predict_batch_size", *aliases, type=int, default=default,
                        help="Examples per evaluation or prediction batch.")  # fmt: skip


def add_no_cuda(parser):
    parser.add_argument("--no_cuda", action="store_true", help="Run on the CPU even when CUDA is available.")


def add_seed(parser, default):
    parser.add_argument("--random_seed", "--seed", type=int, default=default, help="The random seed.")


# main.py's options, by group.
def build_parser(
    description="Train a BERT teacher on a GLUE task or your own data, or distill teachers into a student.",
):
    parser = argparse.ArgumentParser(description=description)
    _add_files(parser.add_argument_group("data and files"))
    _add_actions(parser.add_argument_group("what to do"))
    _add_training(parser.add_argument_group("training"))
    _add_speed_levers(parser.add_argument_group("speed levers (docs/speed.md)"))
    _add_distillation(parser.add_argument_group("distillation"))
    _add_teacher_check(parser.add_argument_group("the teachers' own score, before they teach"))
    return parser


def _add_files(group):
    add_data_source(group)
    add_output_dir(group, "Checkpoints gs{step}.pkl, logs and eval_results.txt go here.")
    add_model_config_json(group)
    add_task_options(group)
    group.add_argument(
        "--cache_dir",
        default=None,
        help="Where encoded features are cached (default: <data_dir>/cache, or feature_cache beside "
        "output_dir with --dataset or when data_dir is read-only).",
    )


def _add_actions(group):
    add = group.add_argument
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


def _add_training(group):
    add = group.add_argument
    add_max_seq_length(group, DEFAULT_MAX_SEQ_LENGTH)
    add(
        "--train_batch_size",
        type=int,
        default=32,
        help="Examples per optimizer step (over all accumulation).",
    )
    add_predict_batch_size(group, 128)
    add("--learning_rate", type=float, default=3e-5)
    add("--num_train_epochs", type=float, default=3.0)
    add("--warmup_proportion", type=float, default=0.1, help="Share of the steps with a linear warmup.")
    add("--weight_decay_rate", type=float, default=0.01, help="AdamW decay; never on biases and LayerNorm.")
    add("--gradient_accumulation_steps", type=int, default=1)
    add("--max_grad_norm", type=float, default=-1.0, help="Clip gradients to this norm; <= 0 disables.")
    add_seed(group, 9580)
    add_no_cuda(group)
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
    add("--PRINT_EVERY", type=int, default=200, help="Log the losses every this many optimizer steps.")
    add(
        "--ckpt_frequency",
        type=int,
        default=1,
        help="Checkpoints (and evaluations) per epoch; with a fractional --num_train_epochs, one every "
        "(steps per epoch // ckpt_frequency) steps, and one at the last step.",
    )
    add("--resume", action="store_true",
        help="Continue the interrupted run in --output_dir from its newest resume_gs*.pt.")  # fmt: skip
    add("--keep_resume_states", type=int, default=2,
        help="How many resume states (saved beside the checkpoints) to keep.")  # fmt: skip


def _add_speed_levers(group):
    add = group.add_argument
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


def _add_distillation(group):
    add = group.add_argument
    add(
        "--recipe",
        choices=sorted(RECIPES),
        default="published",
        help="A named set of the distillation options below (see pipeline/recipes.py); options given "
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
        "sizes (see pipeline/student_init.py).",
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


def _add_teacher_check(group):
    group.add_argument(
        "--teacher_check_size",
        type=int,
        default=DEFAULT_TEACHER_CHECK_SIZE,
        help="Before training, evaluate each teacher on the first this many examples of each dev "
        "set and stop if it is no better than always answering the most frequent label plus 2 "
        "points (pipeline/teacher_check.py); 0 turns it off.",
    )
    group.add_argument(
        "--allow_weak_teacher",
        action="store_true",
        help="Report a teacher that fails the check above, and distill from it all the same.",
    )


def parse_args(argv=None, add_options=None, check=None):
    """main.py's options; add_options(parser) declares an entry point's own options and
    check(args) returns the problems with them (main.emd.py's)."""
    parser = build_parser()
    if add_options is not None:
        add_options(parser)
    # The recipe first: its values become the defaults, so explicit options still win.
    recipe, _ = parser.parse_known_args(argv)
    parser.set_defaults(**RECIPES[recipe.recipe])
    args = parser.parse_args(argv)
    # The command, for the run's record (run.json) and its model card.
    args.command = shlex.join(["python", parser.prog, *(sys.argv[1:] if argv is None else argv)])
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
    problems += [f"--{name} must be at least 1, got {getattr(args, name)}" for name in POSITIVE
                 if getattr(args, name) < 1]  # fmt: skip
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
    return problems + _rate_problems(args) + _task_problems(args)


def _rate_problems(args):
    problems = []
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
    return problems


def _task_problems(args):
    """Column options are for a task whose columns you name (the custom task)."""
    given = [f"--{name}" for name, column in custom_columns(args).items() if column is not None]
    if given and not task_kind(args.task_name).takes_columns:
        task = args.task_name or DEFAULT_TASK
        return [f"{', '.join(given)}: for --task_name custom only (task {task} reads GLUE's columns)"]
    return []


def teacher_check_asked(args):
    """Whether the teachers, if any, are checked before they teach: at the start of a training
    run (a resumed run's were checked when it started)."""
    return args.do_train and args.teacher_check_size > 0 and not args.resume


def check_data_files(args, task, data_dir):
    """The data files (or a dataset's splits) the actions will read, before the model config:
    the first thing wrong, in the task's terms."""
    splits = ["train"] if args.do_train else []
    # The dev sets are read to evaluate, and to check the teachers (where there are any).
    splits += list(task.dev_sets) if args.do_eval or args.do_predict or teacher_check_asked(args) else []
    splits += list(task.test_sets) if args.do_test else []
    if args.dataset is not None:  # hub_dataset.DatasetTask: the splits were listed as it opened
        task.check_splits(splits)
    else:
        check_task_files(task, data_dir, splits, args.data_dir)
    if args.transfer_file and not os.path.isfile(args.transfer_file):
        raise FileNotFoundError(f"--transfer_file {args.transfer_file}: no such file")


def check_setup(args, setup, world_size):
    """The options against the model config and the folders: every check that needs no
    features or models, so that a mistake costs no encoding."""
    if args.export_dir:
        check_export_dir(args.export_dir)
    for role, entry in [("student", setup.student)] + [("teacher", t) for t in setup.enabled_teachers]:
        check_max_seq_length(args.max_seq_length, entry.bert_config, role, entry.config_file)
    check_output_dir(args.output_dir)
    if args.transfer_file and not setup.enabled_teachers:
        raise ValueError(f"--transfer_file {args.transfer_file}: a transfer set is learnt from the "
                         f"teachers' outputs alone, but {setup.source} enables none")  # fmt: skip
    if not args.do_train:
        if not setup.student.checkpoint:
            raise ValueError(
                f"{setup.source}: --do_predict without --do_train evaluates the "
                "student's checkpoint, but student.checkpoint is not set"
            )
        return
    _check_training_setup(args, setup, world_size)


def _check_training_setup(args, setup, world_size):
    if args.init_student_from_teacher:
        if not setup.enabled_teachers:
            raise ValueError("--init_student_from_teacher needs a teacher, but the model config enables none")
        if setup.student.checkpoint:
            raise ValueError(
                f"{setup.source}: --init_student_from_teacher (recipe {args.recipe}) "
                f"would replace the student's checkpoint {setup.student.checkpoint}; "
                "set student.checkpoint to null, or use --recipe published"
            )
    if world_size > 1 and args.train_batch_size % (args.gradient_accumulation_steps * world_size):
        raise ValueError(
            f"--train_batch_size {args.train_batch_size} (the batch of one optimizer "
            f"step) is not divisible by --gradient_accumulation_steps "
            f"{args.gradient_accumulation_steps} x {world_size} processes"
        )
    if args.resume and latest_state(args.output_dir) is None:
        raise FileNotFoundError(f"--resume: no resume state (resume_gs*.pt) in {args.output_dir}")


# What the options make of TextBrewer's configs.
def training_config(args, device, data_parallel=False, ckpt_steps=None):
    mixed_precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "no"
    return TrainingConfig(
        teacher_dtype=args.teacher_dtype,  # None: the teachers run as the original's did
        data_parallel=data_parallel,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        ckpt_frequency=args.ckpt_frequency,
        ckpt_steps=ckpt_steps,
        log_dir=args.output_dir,
        output_dir=args.output_dir,
        device=device,
        mixed_precision=mixed_precision,
        keep_resume_states=args.keep_resume_states,
    )


def distillation_config(args, student, intermediate_matches=None):
    """The DistillationConfig of the options; for a regressor (a student with one output, as
    for STS-B) KD is the MSE between the outputs, with no temperature."""
    regression = student.num_labels == 1
    return DistillationConfig(
        temperature=1 if regression else args.temperature,
        kd_loss_type="mse" if regression else "ce",
        hard_label_weight=args.hard_label_weight,
        kd_loss_weight=args.kd_loss_weight,
        intermediate_matches=intermediate_matches,
        is_caching_logits=args.cache_teacher_logits,
        # batches are cut to their longest example (FeatureDataset)
        padded_length=args.max_seq_length,
    )


def cache_dir(args, data_dir):
    """--cache_dir, or by default beside the data; beside the output folder for a dataset, or
    when the data's folder is read-only."""
    if args.cache_dir:
        return args.cache_dir
    if not args.dataset and os.access(data_dir, os.W_OK):
        return os.path.join(data_dir, "cache")
    return os.path.join(os.path.dirname(os.path.abspath(args.output_dir)), "feature_cache")
