"""Train a BERT teacher on a task, or distill one or several teachers into a student.

The pipeline, one step a function, as run() reads:
  options -> task -> model config -> features -> models -> distiller -> teacher check -> train
The JSON given by --model_config_json decides the distiller:
  no enabled teacher  -> BasicTrainer (the student learns from the hard labels: teacher training)
  one teacher         -> GeneralDistiller with the --matches intermediate matches
  several teachers    -> MultiTeacherDistiller (the student learns from the averaged logits)
main.emd.py runs this same pipeline and swaps in the EMDDistiller through `run(build_distiller=...)`.
Each step's machinery is in pipeline/ (see the README's file map). Under torchrun each process
trains on its share of every batch, and rank 0 alone evaluates (pipeline/processes.py).
"""

import logging
import os
import random
import signal
import sys

import numpy as np
import torch

from distillation import (
    BasicTrainer,
    GeneralDistiller,
    MultiTeacherDistiller,
    TrainingInterrupted,
    latest_state,
)
from matches import fit_matches, read_matches
from modeling import BertForGLUESimpleAdaptor
from pipeline import options, student_check
from pipeline.checkpoints import build_model
from pipeline.commands import TRAINING_ERRORS, errors_in_one_line, start_logging
from pipeline.compiling import compile_training, log_compilation
from pipeline.data import FeatureReader, batch_loader, loader_workers
from pipeline.distiller_features import request_features
from pipeline.evaluation import evaluate_missed_checkpoints, record_evaluation
from pipeline.final_student import evaluate_trained_student, use_final_student
from pipeline.model_config import parse_model_config
from pipeline.optimization import build_optimizer, schedule, training_length
from pipeline.processes import launched
from pipeline.run_folder import make_output_dir, write_training_records
from pipeline.student_init import init_student_from_teacher
from pipeline.submission import read_test_sets
from pipeline.tasks import open_task
from pipeline.teacher_check import check_teachers

logger = logging.getLogger("main")
# The training examples whose teacher hidden states give --init_student_from_teacher its directions.
INIT_SAMPLE = 256


def build_distiller(args, train_config, teachers, student, matches):
    """The distiller the JSON asks for: trainer, GeneralDistiller or MultiTeacherDistiller."""
    adaptor = BertForGLUESimpleAdaptor
    if not teachers:
        if matches:
            raise ValueError("--matches needs a teacher, but the model config enables none")
        return BasicTrainer(train_config, student, adaptor)
    if len(teachers) == 1:
        teacher = teachers[0]
        fitted = fit_matches(matches, student.config.hidden_size, teacher.config.hidden_size,
                             student.config.num_hidden_layers, teacher.config.num_hidden_layers,
                             weight=args.intermediate_weight, num_heads_S=student.config.num_attention_heads,
                             num_heads_T=teacher.config.num_attention_heads)  # fmt: skip
        distill_config = options.distillation_config(args, student, fitted)
        return GeneralDistiller(train_config, distill_config, teacher, student, adaptor, adaptor)
    if matches:
        raise ValueError("--matches is for one teacher; the multi-teacher distiller uses logits only")
    distill_config = options.distillation_config(args, student)
    return MultiTeacherDistiller(train_config, distill_config, teachers, student, adaptor, adaptor)


def run(argv=None, build_distiller=build_distiller, add_options=None, check=None):
    """main.py's run; an entry point with a distiller of its own passes build_distiller, and
    its own options through add_options(parser) and check(args) (see pipeline/options.py)."""
    args = options.parse_args(argv, add_options, check)
    with launched(args.no_cuda) as processes:
        set_seed(args.random_seed)
        task, data_dir = open_task(args.task_name, args.data_dir, options.custom_columns(args), args.dataset)
        options.check_data_files(args, task, data_dir)
        setup = parse_model_config(args.model_config_json)
        matches = read_matches(args.matches)
        options.check_setup(args, setup, processes.world_size)
        if task.output_mode == "regression":
            logger.info("%s is a regression task: one output, the MSE as the hard-label loss, KD as the "
                        "MSE between the outputs (kd_mse), no temperature", task.name)  # fmt: skip
        reader = FeatureReader(
            task, data_dir, args.max_seq_length, options.cache_dir(args, data_dir), args.transfer_file
        )
        dev = read_dev_and_test_sets(args, setup, reader, processes)
        if args.do_train:
            train_and_evaluate(args, build_distiller, setup, matches, reader, dev, processes)
        elif processes.is_main:  # a trained student, evaluated and used, not trained
            evaluate_trained_student(setup, task, dev["loaders"], args.output_dir, dev["test_sets"],
                                     args.export_dir, args.predict_batch_size, processes.device)  # fmt: skip


def read_dev_and_test_sets(args, setup, reader, processes):
    """{'features', 'loaders', 'test_sets'} of the dev and test sets, on rank 0 (which alone
    evaluates). Read first: a mistake in these files stops the run before anything is written."""
    evaluates = args.do_eval or args.do_predict
    dev = {"features": {}, "loaders": {}, "test_sets": None}
    if processes.is_main and (evaluates or checks_teachers(args, setup)):
        dev["features"] = reader.dev_sets(setup.student)
    for name, features in dev["features"].items() if evaluates else ():
        dev["loaders"][name] = batch_loader(features, args.predict_batch_size, shuffle=False,
                                            pad_to_multiple_of=args.pad_to_multiple_of)  # fmt: skip
    if args.do_test and processes.is_main:
        tokenizer = setup.student.tokenizer
        dev["test_sets"] = read_test_sets(reader.task, reader.data_dir, tokenizer, args.max_seq_length)
    return dev


def checks_teachers(args, setup):
    """Whether the teachers are checked before they teach."""
    return options.teacher_check_asked(args) and bool(setup.enabled_teachers)


def train_and_evaluate(args, build_distiller, setup, matches, reader, dev, processes):
    """The models, the distiller, the teachers' check and the student's start; then training,
    each checkpoint evaluated on the dev sets; then the final student's submissions and export."""
    task, device = reader.task, processes.device
    # train_batch_size is the global batch of one optimizer step: split over processes and micro-batches.
    per_step_batch = args.train_batch_size // (args.gradient_accumulation_steps * processes.world_size)
    labelled, train_loader = reader.training_batches(
        setup.student, setup.enabled_teachers, per_step_batch, processes, seed=args.random_seed,
        with_index=args.cache_teacher_logits, num_workers=loader_workers(args.num_workers, device),
        group_by_length=args.group_by_length, pad_to_multiple_of=args.pad_to_multiple_of)  # fmt: skip
    teachers = [build_model(entry, task.label_list, "teacher").to(device) for entry in setup.enabled_teachers]
    student = build_model(setup.student, task.label_list, "student").to(device)
    length = training_length(args.num_train_epochs, args.gradient_accumulation_steps, args.ckpt_frequency,
                             len(train_loader))  # fmt: skip
    distiller = make_distiller(args, build_distiller, setup, teachers, student, matches, length, processes)
    warn = student_check.watch_student(task, distiller, labelled["labels"], dev["features"])
    check = None
    if checks_teachers(args, setup):  # rank 0 checks; every process stops on a weak teacher, or none
        teachers_dev_sets = reader.teachers_dev_sets(setup.enabled_teachers, dev["features"])
        check = processes.on_main(lambda: check_teachers(
            teachers, setup.enabled_teachers, task, teachers_dev_sets, labelled["labels"],
            args.teacher_check_size, args.allow_weak_teacher, args.predict_batch_size, device))  # fmt: skip
    if args.init_student_from_teacher:  # a resumed run then gets the student's weights from its state
        sample = {
            key: tensor[:INIT_SAMPLE].long().to(device) for key, tensor in labelled.items() if key != "labels"
        }
        init_student_from_teacher(student, teachers[0], sample)
    if args.resume:
        distiller.resume_from(latest_state(args.output_dir))
    make_output_dir(args.output_dir)  # only now: every check above has passed
    if processes.is_main:  # rank 0 alone writes the run's records, and run.json: what made its models
        write_training_records(args.output_dir, vars(args), distiller, setup, [*teachers, student], reader)
    if check is not None:
        check.write(args.output_dir)
    if args.resume and dev["loaders"]:
        evaluate_missed_checkpoints(args.output_dir, distiller.resume_step, student, dev["loaders"], device,
                                    task, warn)  # fmt: skip
    log_training_summary(
        args, len(labelled["input_ids"]), len(train_loader.dataset), length, distiller, processes
    )
    train(args, distiller, student, train_loader, length, dev["loaders"], task, device, warn)
    if processes.is_main:
        use_final_student(student, setup.student, task, args.output_dir, dev["test_sets"], args.export_dir,
                          args.predict_batch_size, device)  # fmt: skip


def make_distiller(args, build_distiller, setup, teachers, student, matches, length, processes):
    """The distiller, its models returning the features it reads (hidden states, attention maps,
    relations and attention scores at the layers its matches name)."""
    parallel = processes.world_size > 1
    train_config = options.training_config(args, processes.device, parallel, length.ckpt_steps)
    distiller = build_distiller(args, train_config, teachers, student, matches)
    features = request_features(distiller, teachers, student)
    if args.cache_teacher_logits and not distiller.caches_logits():
        raise ValueError(
            f"--cache_teacher_logits keeps the teachers' logits only, but {type(distiller).__name__} here "
            f"{'has no teacher' if not teachers else 'distills intermediate features'}"
        )
    distiller.log_every_steps = args.PRINT_EVERY  # steps; print_freq is TextBrewer's per-epoch count
    compared = {
        "intermediate matches or BERT-EMD": features,
        "--init_student_from_teacher": args.init_student_from_teacher,
    }
    setup.check_token_by_token([what for what, used in compared.items() if used])
    return distiller


def train(args, distiller, student, train_loader, length, dev_loaders, task, device, warn):
    """distiller.train with the optimizer and its schedule, evaluating each checkpoint (and `warn`)."""
    optimizer = build_optimizer(student, args.learning_rate, args.weight_decay_rate)
    if args.compile:  # after the teacher check and the student's start: those run once, eagerly
        compile_training(distiller, device, args.gradient_accumulation_steps)

    def evaluate_checkpoint(model, step):
        if dev_loaders:
            record_evaluation(args.output_dir, step, model, dev_loaders, device, task, warn=warn)
        if args.compile:
            log_compilation(step)

    with distiller:
        distiller.train(optimizer, train_loader, max_grad_norm=args.max_grad_norm, callback=evaluate_checkpoint,
                        **schedule(args.warmup_proportion, length.total_steps), **length.train_arguments)  # fmt: skip


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def log_training_summary(args, num_labelled, num_examples, length, distiller, processes):
    transfer = f" ({num_labelled} labelled, {num_examples - num_labelled} of the transfer set)"
    padding = (
        f", lengths padded to a multiple of {args.pad_to_multiple_of}" if args.pad_to_multiple_of else ""
    )
    lines = [
        f"***** Running training: {type(distiller).__name__} *****",
        f"  Examples = {num_examples}{transfer if args.transfer_file else ''}, epochs = {args.num_train_epochs}",
        f"  Batch size = {args.train_batch_size} (accumulation {args.gradient_accumulation_steps}, processes "
        f"{processes.world_size}), optimizer steps = {length.total_steps} ({length.steps_per_epoch} per epoch)",
        f"  Batches: {'grouped by length' if args.group_by_length else 'random'}{padding}",
    ]
    if distiller.t_config.teacher_dtype is not None:
        lines.append(f"  Teachers: {distiller.t_config.teacher_dtype}, under torch.inference_mode")
    for line in lines:
        logger.info("%s", line)


def main(build=build_distiller, add_options=None, check=None):
    # Under torchrun, rank 0 alone logs progress; the others report warnings and errors.
    start_logging(logging.WARNING if int(os.environ.get("RANK", "0")) != 0 else logging.INFO)
    try:
        with errors_in_one_line(logger, also=TRAINING_ERRORS):
            run(build_distiller=build, add_options=add_options, check=check)
    except TrainingInterrupted as stop:
        logger.error(
            "Stopped by %s at step %d. To continue, run the same command with --resume (state: %s)",
            signal.Signals(stop.signal_number).name,
            stop.step,
            stop.state_path,
        )
        sys.exit(128 + stop.signal_number)


if __name__ == "__main__":
    main()
