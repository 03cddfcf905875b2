"""Train a BERT teacher on a task, or distill one or several teachers into a student.

One pipeline: options -> task -> model config -> features -> models -> teacher check ->
distiller -> train -> evaluate. The JSON given by --model_config_json decides the distiller:
  no enabled teacher  -> BasicTrainer (the student learns from the hard labels: teacher training)
  one teacher         -> GeneralDistiller with the --matches intermediate matches
  several teachers    -> MultiTeacherDistiller (the student learns from the averaged logits)
main.emd.py runs this same pipeline and swaps in the EMDDistiller through `run(build_distiller=...)`.
Launched by torchrun, each process trains on its share of every batch (see processes.py).
"""

import logging
import math
import os
import random
import signal
import sys

import numpy as np
import torch
import torch.distributed as dist

from checkpoints import build_model
from compiling import compile_training, log_compilation
from data import batch_loader, load_split, loader_workers, with_transfer_set
from distillation import (
    BasicTrainer,
    DistillationConfig,
    GeneralDistiller,
    MultiTeacherDistiller,
    TrainingConfig,
    TrainingInterrupted,
    checkpoint_path,
    checkpoint_steps,
    latest_state,
    safe_torch_load,
)
from evaluation import record_evaluation, recorded_results
from export import check_export_dir, export_model
from feature_cache import TRANSFER
from matches import fit_matches, read_matches
from model_config import parse_model_config
from modeling import BertForGLUESimpleAdaptor, check_max_seq_length
from options import parse_args
from processes import from_rank_zero, init_distributed, rank_zero_first
from student_init import init_student_from_teacher
from submission import read_test_sets, write_submissions
from tasks import task_from_args, write_task_record
from teacher_check import check_teachers
from trained_models import TrainedModel, load_trained_entry

logger = logging.getLogger("main")

INIT_SAMPLE = (
    256  # training examples whose teacher hidden states give --init_student_from_teacher its directions
)


def build_distiller(args, train_config, teachers, student, matches):
    """The distiller the JSON asks for: trainer, GeneralDistiller or MultiTeacherDistiller."""
    adaptor = BertForGLUESimpleAdaptor
    if not teachers:
        if matches:
            raise ValueError("--matches needs a teacher, but the model config enables none")
        return BasicTrainer(train_config, student, adaptor)
    if len(teachers) == 1:
        teacher = teachers[0]
        fitted = fit_matches(
            matches,
            student.config.hidden_size,
            teacher.config.hidden_size,
            student.config.num_hidden_layers,
            teacher.config.num_hidden_layers,
            weight=args.intermediate_weight,
            num_heads_S=student.config.num_attention_heads,
            num_heads_T=teacher.config.num_attention_heads,
        )
        return GeneralDistiller(
            train_config, distillation_config(args, student, fitted), teacher, student, adaptor, adaptor
        )
    if matches:
        raise ValueError("--matches is for one teacher; the multi-teacher distiller uses logits only")
    return MultiTeacherDistiller(
        train_config, distillation_config(args, student), teachers, student, adaptor, adaptor
    )


def run(argv=None, build_distiller=build_distiller, add_options=None, check=None):
    """main.py's run; an entry point with a distiller of its own passes build_distiller, and
    its own options through add_options(parser) and check(args) (see options.parse_args)."""
    args = parse_args(argv, add_options, check)
    use_cuda = not args.no_cuda and torch.cuda.is_available()
    rank, world_size, device = init_distributed(use_cuda)
    try:
        _run(args, build_distiller, rank, world_size, device or ("cuda" if use_cuda else "cpu"))
    finally:
        if world_size > 1:
            dist.destroy_process_group()


def _run(args, build_distiller, rank, world_size, device):
    set_seed(args.random_seed)
    task, data_dir = task_from_args(args)
    setup = parse_model_config(args.model_config_json)
    matches = read_matches(args.matches)
    check_setup(args, setup, world_size)
    if task.output_mode == "regression":
        logger.info(
            "%s is a regression task: one output, the MSE as the hard-label loss, KD as "
            "the MSE between the outputs (kd_mse), no temperature",
            task.name,
        )

    # 1. Features first: a data error stops the run before anything is written to output_dir.
    evaluates = args.do_eval or args.do_predict
    # A resumed run's teachers were checked when it started (its teacher_check.txt).
    checks_teachers = (
        args.do_train and setup.enabled_teachers and args.teacher_check_size > 0 and not args.resume
    )
    dev_features = {}
    if (evaluates or checks_teachers) and rank == 0:  # rank 0 alone evaluates
        dev_features = {name: load_split(args, task, data_dir, name, setup.student) for name in task.dev_sets}
    dev_loaders = {}
    if evaluates:
        dev_loaders = {
            name: batch_loader(
                features, args.predict_batch_size, shuffle=False, pad_to_multiple_of=args.pad_to_multiple_of
            )
            for name, features in dev_features.items()
        }
    # The test files too are read before the run: a mistake in them must not wait for its end.
    test_sets = (
        read_test_sets(task, data_dir, setup.student.tokenizer, args.max_seq_length)
        if args.do_test and rank == 0
        else None
    )
    if not args.do_train:
        if rank == 0:
            # A trained model: every tensor must load (a missing classifier would score at chance).
            student = load_trained_entry(setup.student, task).to(device)
            _make_output_dir(args.output_dir)
            write_task_record(args.output_dir, task)
            if dev_loaders:
                record_evaluation(args.output_dir, 0, student, dev_loaders, device, task)
            use_final_student(args, student, setup.student, task, test_sets, device)
        return
    with rank_zero_first(world_size, rank):
        labelled = load_split(args, task, data_dir, "train", setup.student)
        train_features = add_transfer_set(args, task, data_dir, setup.student, labelled)
        # A teacher with a vocabulary of its own reads the same examples encoded by its tokenizer.
        teacher_features = [
            add_transfer_set(args, task, data_dir, entry, load_split(args, task, data_dir, "train", entry))
            if entry.own_features
            else None
            for entry in setup.enabled_teachers
        ]
    # train_batch_size is the global batch of one optimizer step: split over processes and micro-batches.
    per_step_batch = args.train_batch_size // (args.gradient_accumulation_steps * world_size)
    train_loader = batch_loader(
        train_features,
        per_step_batch,
        shuffle=True,
        seed=args.random_seed,
        num_replicas=world_size,
        rank=rank,
        with_index=args.cache_teacher_logits,
        num_workers=loader_workers(args, device),
        teacher_features=teacher_features if any(teacher_features) else None,
        group_by_length=args.group_by_length,
        pad_to_multiple_of=args.pad_to_multiple_of,
    )

    # 2. Models: the teachers (frozen) and the student, then the distiller; the models return
    # the features it reads (hidden states, attention maps).
    teachers = [build_model(entry, task.label_list, "teacher").to(device) for entry in setup.enabled_teachers]
    student = build_model(setup.student, task.label_list, "student").to(device)
    steps_per_epoch, total_steps, length, ckpt_steps = training_length(args, len(train_loader))
    train_config = training_config(args, device, data_parallel=world_size > 1, ckpt_steps=ckpt_steps)
    distiller = build_distiller(args, train_config, teachers, student, matches)
    features = request_features(distiller, teachers, student)
    if args.cache_teacher_logits and not distiller.caches_logits():
        raise ValueError(
            f"--cache_teacher_logits keeps the teachers' logits only, but "
            f"{type(distiller).__name__} here "
            f"{'has no teacher' if not teachers else 'distills intermediate features'}"
        )
    distiller.log_every_steps = args.PRINT_EVERY  # steps; print_freq is TextBrewer's per-epoch count
    check_own_vocabularies(args, setup, features)

    # 3. The teachers' own scores, before they teach; the student's start from the teacher.
    check, failure = None, None
    if checks_teachers and rank == 0:  # rank 0 alone evaluates; every process stops, or none
        teacher_dev_features = [
            {name: load_split(args, task, data_dir, name, entry) for name in task.dev_sets}
            if entry.own_features
            else dev_features
            for entry in setup.enabled_teachers
        ]
        try:
            check = check_teachers(
                teachers,
                setup.enabled_teachers,
                task,
                teacher_dev_features,
                labelled["labels"],
                args,
                device,
            )
        except ValueError as error:
            failure = str(error)
    if checks_teachers and (failure := from_rank_zero(failure, world_size)):
        raise ValueError(failure)
    if args.init_student_from_teacher:
        # A resumed run then gets the student's weights from its resume state.
        sample = {
            key: tensor[:INIT_SAMPLE].long().to(device) for key, tensor in labelled.items() if key != "labels"
        }
        init_student_from_teacher(student, teachers[0], sample)
    if args.resume:
        distiller.resume_from(latest_state(args.output_dir))
    _make_output_dir(args.output_dir)  # only now: every check above has passed
    if rank == 0:  # rank 0 alone writes the run's records
        write_task_record(args.output_dir, task)
    if check is not None:
        check.write(args.output_dir)
    if args.resume and dev_loaders:
        evaluate_missed_checkpoints(
            args.output_dir, distiller.resume_step, student, dev_loaders, device, task
        )

    # 4. Train, evaluating each checkpoint on the dev sets.
    optimizer = build_optimizer(student, args.learning_rate, args.weight_decay_rate)
    # Built by the distiller once the projections have joined the optimizer.
    schedule = {
        "scheduler_class": linear_warmup_decay,
        "scheduler_args": {
            "warmup_steps": int(args.warmup_proportion * total_steps),
            "total_steps": total_steps,
        },
    }
    _log_training_summary(
        args,
        len(labelled["input_ids"]),
        len(train_loader.dataset),
        steps_per_epoch,
        total_steps,
        distiller,
        world_size,
    )
    if args.compile:  # after the teacher check and the student's start: those run once, eagerly
        compile_training(distiller, device, args.gradient_accumulation_steps)

    def evaluate_checkpoint(model, step):
        if dev_loaders:
            record_evaluation(args.output_dir, step, model, dev_loaders, device, task)
        if args.compile:
            log_compilation(step)

    with distiller:
        distiller.train(
            optimizer,
            train_loader,
            max_grad_norm=args.max_grad_norm,
            callback=evaluate_checkpoint,
            **schedule,
            **length,
        )
    if rank == 0:
        use_final_student(args, student, setup.student, task, test_sets, device)


def request_features(distiller, teachers, student):
    """Ask each model for the features the distiller reads (the per-layer ones, relations and
    attention scores, at the layers its matches name on that side only); returns features_read()."""
    features = distiller.features_read()
    layers = distiller.layers_read()
    for model, side in [(teacher, "teacher") for teacher in teachers] + [(student, "student")]:
        model.return_features(
            hidden="hidden" in features, attention="attention" in features, **layers.get(side, {})
        )
    return features


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parameter_groups(model, weight_decay_rate):
    """The optimizer's two groups: weight decay on every weight but biases and LayerNorm's, as
    BERT was trained."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay_rate}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model, learning_rate, weight_decay_rate):
    """AdamW over parameter_groups, fused where the parameters' device allows it."""
    # The fused AdamW updates every tensor in one pass: on a CPU its step is about 4 times
    # faster than the default loop's (tools/benchmark.py), and on a GPU it lets the fp16
    # GradScaler skip a step without waiting for the host.
    fusable = all(param.device.type in ("cpu", "cuda") for param in model.parameters())
    return torch.optim.AdamW(
        parameter_groups(model, weight_decay_rate), lr=learning_rate, fused=fusable or None
    )


def linear_warmup_decay(optimizer, warmup_steps, total_steps):
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def use_final_student(args, student, student_entry, task, test_sets, device):
    """--do_test: GLUE submission files in output_dir; --export_dir: a Hugging Face folder."""
    if test_sets:
        write_submissions(
            student, test_sets, args.output_dir, args.predict_batch_size, device, task.label_list
        )
    if args.export_dir:
        export_model(
            TrainedModel(
                student,
                student_entry.tokenizer,
                student_entry.bert_config,
                student_entry.vocab_file,
                student_entry.do_lower_case,
                f"the final student of {args.output_dir}",
                task,
            ),
            args.export_dir,
        )


def training_length(args, num_batches):
    """(steps per epoch, total steps, train()'s length argument, ckpt_steps or None).

    A whole number of epochs trains by epochs (ckpt_frequency checkpoints in each); a fraction
    trains by steps, where the same frequency becomes a checkpoint every ckpt_steps steps.
    """
    steps_per_epoch = num_batches // args.gradient_accumulation_steps
    total_steps = max(1, math.ceil(steps_per_epoch * args.num_train_epochs))
    epochs = args.num_train_epochs
    if epochs == int(epochs):
        return steps_per_epoch, total_steps, {"num_epochs": int(epochs)}, None
    ckpt_steps = max(1, steps_per_epoch // args.ckpt_frequency)
    return steps_per_epoch, total_steps, {"num_steps": total_steps}, ckpt_steps


def check_setup(args, setup, world_size):
    """The options against the model config and the output folder: every check that needs no
    features or models, so that a mistake costs no encoding (options.check_args has checked
    the options alone)."""
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


def add_transfer_set(args, task, data_dir, entry, features):
    """The training features followed by --transfer_file's, as the model of `entry` reads them;
    the features as they are without one."""
    if not args.transfer_file:
        return features
    return with_transfer_set(features, load_split(args, task, data_dir, TRANSFER, entry))


def check_own_vocabularies(args, setup, features_read):
    """A teacher with a vocabulary of its own sees other tokens than the student: only its
    logits can teach, nothing that is compared token by token."""
    own = setup.teachers_with_own_features
    if not own:
        return
    uses = [
        what
        for what, used in (
            ("intermediate matches or BERT-EMD", features_read),
            ("--init_student_from_teacher", args.init_student_from_teacher),
        )
        if used
    ]
    if uses:
        teacher = own[0]
        raise ValueError(
            f"{setup.source}: {teacher.where} reads another vocabulary than the student "
            f"({teacher.vocab_file}, do_lower_case={teacher.do_lower_case}, against "
            f"{setup.student.vocab_file}, do_lower_case={setup.student.do_lower_case}): "
            f"only its logits can teach, but {' and '.join(uses)} compare the models "
            "token by token (drop them, or give the teacher the student's vocabulary)"
        )


def evaluate_missed_checkpoints(output_dir, up_to_step, student, dev_loaders, device, task):
    """Evaluate the checkpoints an interrupted run saved but did not evaluate (a kill during
    the evaluation). The student's own weights come back from the resume state afterwards."""
    evaluated = recorded_results(output_dir)
    for step in checkpoint_steps(output_dir):
        if step <= up_to_step and step not in evaluated:
            student.load_state_dict(safe_torch_load(checkpoint_path(output_dir, step)))
            record_evaluation(output_dir, step, student, dev_loaders, device, task)


def check_output_dir(path):
    """--output_dir must be a folder that exists and can be written, or one that can be made
    (its nearest existing parent can be written); checked before any work, made after."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise PermissionError(f"--output_dir {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK):
        verb = "written" if existing == os.path.abspath(path) else "created"
        raise PermissionError(f"--output_dir {path} cannot be {verb}: {existing} is not writable")


def _make_output_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"--output_dir {path} cannot be created: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(f"--output_dir {path} cannot be written")


def _log_training_summary(
    args, num_labelled, num_examples, steps_per_epoch, total_steps, distiller, world_size
):
    logger.info("***** Running training: %s *****", type(distiller).__name__)
    transfer = f" ({num_labelled} labelled, {num_examples - num_labelled} of the transfer set)"
    logger.info("  Examples = %d%s, epochs = %s", num_examples, transfer if args.transfer_file else "",
                args.num_train_epochs)  # fmt: skip
    logger.info(
        "  Batch size = %d (accumulation %d, processes %d), optimizer steps = %d (%d per epoch)",
        args.train_batch_size,
        args.gradient_accumulation_steps,
        world_size,
        total_steps,
        steps_per_epoch,
    )
    sampling = "grouped by length" if args.group_by_length else "random"
    padding = (
        f", lengths padded to a multiple of {args.pad_to_multiple_of}" if args.pad_to_multiple_of else ""
    )
    logger.info("  Batches: %s%s", sampling, padding)
    if distiller.t_config.teacher_dtype is not None:
        logger.info("  Teachers: %s, under torch.inference_mode", distiller.t_config.teacher_dtype)


def main(build=build_distiller, add_options=None, check=None):
    # Under torchrun, rank 0 alone logs progress; the others report warnings and errors.
    quiet = int(os.environ.get("RANK", "0")) != 0
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=logging.WARNING if quiet else logging.INFO,
    )
    try:
        run(build_distiller=build, add_options=add_options, check=check)
    except TrainingInterrupted as stop:
        logger.error(
            "Stopped by %s at step %d. To continue, run the same command with --resume (state: %s)",
            signal.Signals(stop.signal_number).name,
            stop.step,
            stop.state_path,
        )
        sys.exit(128 + stop.signal_number)
    except (ValueError, FileNotFoundError, PermissionError, FloatingPointError) as error:
        # A user's mistake (a path, a key, an option) or a diverged run: one clear line.
        logger.error("%s", error)
        sys.exit(1)


if __name__ == "__main__":
    main()
