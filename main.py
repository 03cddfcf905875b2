"""Train a BERT teacher on MNLI, or distill one or several teachers into a student.

One pipeline: options -> model config -> features -> models -> distiller -> train -> evaluate.
The JSON given by --model_config_json decides the distiller:
  no enabled teacher  -> BasicTrainer (the student learns from the hard labels: teacher training)
  one teacher         -> GeneralDistiller with the --matches intermediate matches
  several teachers    -> MultiTeacherDistiller (the student learns from the averaged logits)
main.emd.py runs this same pipeline and swaps in the EMDDistiller through `run(build_distiller=...)`.
Launched by torchrun, each process trains on its share of every batch (see init_distributed).
"""
import contextlib
import logging
import math
import os
import random
import signal
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler

from distillation import (BasicTrainer, DistillationConfig, GeneralDistiller,
                          MultiTeacherDistiller, TrainingConfig)
from distillation.io import safe_torch_load
from distillation.logit_cache import EXAMPLE_INDEX_KEY
from distillation.resume import TrainingInterrupted, latest_state
from feature_cache import load_features
from matches import fit_matches, read_matches, uses_attention
from model_config import parse_model_config
from modeling import BertForGLUESimpleAdaptor, build_model
from options import emd_options_given, parse_args
from predict import evaluate, record_results, recorded_results
from student_init import init_student_from_teacher
from utils_glue import processors

logger = logging.getLogger("main")

DEV_TASKS = ("mnli", "mnli-mm")  # dev_matched.tsv and dev_mismatched.tsv
INIT_SAMPLE = 256  # training examples whose teacher hidden states give --init_student_from_teacher its directions


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded features indexed by a whole list of example indices at once.

    Used with a BatchSampler, a batch is one tensor slice per key instead of `batch_size`
    single-row lookups stacked by the collate function. with_index: each batch also holds the
    examples' indices under 'index' (batch,), the key of the distillers' logit cache.
    """

    def __init__(self, features, with_index=False):
        self.features = features
        self.with_index = with_index

    def __len__(self):
        return len(self.features["labels"])

    def __getitem__(self, indices):
        batch = {key: tensor[indices] for key, tensor in self.features.items()}
        # Cut the padding all the batch's examples share (features are padded on the right):
        # masked positions change no output, and every layer's cost grows with the length.
        longest = int(batch["attention_mask"].sum(dim=1).max())
        for key, tensor in batch.items():
            if tensor.dim() == 2:
                batch[key] = tensor[:, :longest].contiguous()  # a compact copy, cheap to pin and move
        if self.with_index:
            batch[EXAMPLE_INDEX_KEY] = torch.as_tensor(indices, dtype=torch.long)
        return batch


def batch_loader(features, batch_size, shuffle, seed=0, num_replicas=1, rank=0, with_index=False,
                 num_workers=0):
    """Batches of batch_size examples; when shuffling, process `rank` of num_replicas gets every
    num_replicas-th example of the epoch's permutation, so the processes' k-th batches together
    hold the examples a single process would see in its k-th batch of num_replicas * batch_size.
    num_workers > 0 slices the batches in worker processes, ahead of the training step."""
    dataset = FeatureDataset(features, with_index)
    if shuffle:
        # The order of epoch e depends on (seed, e) alone: the distiller calls set_epoch, so a
        # resumed run sees the same batches as an uninterrupted one.
        order = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True,
                                   seed=seed)
    else:
        order = SequentialSampler(dataset)
    sampler = BatchSampler(order, batch_size=batch_size, drop_last=False)
    # Each iteration draws the workers' base seed from `generator`: without one it would come
    # from the global generator, and an evaluation or a resume would move the dropout masks.
    generator = torch.Generator().manual_seed(seed)
    # batch_size=None: each item the sampler yields is already a whole batch of indices.
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(),
                      generator=generator)


def loader_workers(args, device):
    """--num_workers, or by default 2 on a GPU (batches ready while it computes), 0 on CPUs
    (where a worker would take a core from the model)."""
    if args.num_workers is not None:
        return args.num_workers
    return 2 if torch.device(device).type == "cuda" else 0


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def init_distributed(use_cuda):
    """(rank, world_size, device) under torchrun (WORLD_SIZE > 1), else (0, 1, None).

    Joins the process group: NCCL with one GPU per process (cuda:LOCAL_RANK), or gloo on CPUs.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, None
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return dist.get_rank(), world_size, torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return dist.get_rank(), world_size, torch.device("cpu")


@contextlib.contextmanager
def rank_zero_first(world_size, rank):
    """Rank 0 runs the block first (e.g. builds the feature cache), the others then read its result."""
    if world_size > 1 and rank != 0:
        dist.barrier()
    yield
    if world_size > 1 and rank == 0:
        dist.barrier()


def default_cache_dir(args):
    """Cache features beside the data; when that folder is read-only, beside the output folder."""
    if os.access(args.data_dir, os.W_OK):
        return os.path.join(args.data_dir, "cache")
    return os.path.join(os.path.dirname(os.path.abspath(args.output_dir)), "feature_cache")


def load_split(args, task_name, split, student_entry, label_list):
    return load_features(processors[task_name](), args.data_dir, split, student_entry.tokenizer,
                         student_entry.vocab_file, args.max_seq_length,
                         args.cache_dir or default_cache_dir(args), label_list)


def build_optimizer(model, learning_rate, weight_decay_rate):
    """AdamW without weight decay on biases and LayerNorm weights, as BERT was trained."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay_rate},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate)


def linear_warmup_decay(optimizer, warmup_steps, total_steps):
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_config(args, device, data_parallel=False):
    mixed_precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "no"
    return TrainingConfig(data_parallel=data_parallel,
                          gradient_accumulation_steps=args.gradient_accumulation_steps,
                          ckpt_frequency=args.ckpt_frequency, log_dir=args.output_dir,
                          output_dir=args.output_dir, device=device,
                          mixed_precision=mixed_precision,
                          keep_resume_states=args.keep_resume_states)


def distillation_config(args, intermediate_matches=None):
    return DistillationConfig(temperature=args.temperature,
                              hard_label_weight=args.hard_label_weight,
                              kd_loss_weight=args.kd_loss_weight,
                              intermediate_matches=intermediate_matches,
                              is_caching_logits=args.cache_teacher_logits,
                              # batches are cut to their longest example (FeatureDataset)
                              padded_length=args.max_seq_length)


def reads_hidden_states(distiller):
    """Whether the distiller's losses use hidden states (a distiller not known here: assume so)."""
    if type(distiller) in (BasicTrainer, MultiTeacherDistiller):
        return False
    if type(distiller) is GeneralDistiller:
        return any(match.feature == "hidden" for match in distiller.d_config.intermediate_matches)
    return True


def build_distiller(args, train_config, teachers, student, matches):
    """The distiller the JSON asks for: trainer, GeneralDistiller or MultiTeacherDistiller."""
    adaptor = BertForGLUESimpleAdaptor
    if emd_options_given(args):
        raise ValueError(f"{', '.join(emd_options_given(args))}: for main.emd.py (BERT-EMD) only")
    if not teachers:
        if matches:
            raise ValueError("--matches needs a teacher, but the model config enables none")
        return BasicTrainer(train_config, student, adaptor)
    if len(teachers) == 1:
        teacher = teachers[0]
        fitted = fit_matches(matches, student.config.hidden_size, teacher.config.hidden_size,
                             student.config.num_hidden_layers, teacher.config.num_hidden_layers)
        for match in fitted:
            match["weight"] = match.get("weight", 1) * args.intermediate_weight
        return GeneralDistiller(train_config, distillation_config(args, fitted),
                                teacher, student, adaptor, adaptor)
    if matches:
        raise ValueError("--matches is for one teacher; the multi-teacher distiller uses logits only")
    return MultiTeacherDistiller(train_config, distillation_config(args), teachers, student,
                                 adaptor, adaptor)


def run(argv=None, build_distiller=build_distiller):
    args = parse_args(argv)
    use_cuda = not args.no_cuda and torch.cuda.is_available()
    rank, world_size, device = init_distributed(use_cuda)
    try:
        _run(args, build_distiller, rank, world_size, device or ("cuda" if use_cuda else "cpu"))
    finally:
        if world_size > 1:
            dist.destroy_process_group()


def _run(args, build_distiller, rank, world_size, device):
    set_seed(args.random_seed)

    setup = parse_model_config(args.model_config_json)
    student_entry = setup.student
    matches = read_matches(args.matches)
    label_list = processors[args.task_name]().get_labels()
    _check_lengths(args, setup)
    if args.init_student_from_teacher and args.do_train:  # checked before any feature is encoded
        if not setup.enabled_teachers:
            raise ValueError("--init_student_from_teacher needs a teacher, but the model config "
                             "enables none")
        if student_entry.checkpoint:
            raise ValueError(f"{setup.source}: --init_student_from_teacher (recipe {args.recipe}) "
                             f"would replace the student's checkpoint {student_entry.checkpoint}; "
                             "set student.checkpoint to null, or use --recipe published")

    # Features first: a data error must stop the run before anything is written to output_dir.
    dev_loaders = {}
    if world_size > 1 and args.train_batch_size % (args.gradient_accumulation_steps * world_size):
        raise ValueError(f"--train_batch_size {args.train_batch_size} (the batch of one optimizer "
                         f"step) is not divisible by --gradient_accumulation_steps "
                         f"{args.gradient_accumulation_steps} x {world_size} processes")
    if (args.do_eval or args.do_predict) and rank == 0:  # rank 0 alone evaluates
        dev_loaders = {task: batch_loader(load_split(args, task, "dev", student_entry, label_list),
                                          args.predict_batch_size, shuffle=False)
                       for task in DEV_TASKS}
    if not args.do_train:
        if rank != 0:
            return
        if not student_entry.checkpoint:
            raise ValueError(f"{setup.source}: --do_predict without --do_train evaluates the "
                             "student's checkpoint, but student.checkpoint is not set")
        student = build_model(student_entry, len(label_list), "student",
                              output_hidden_states=False, output_attentions=False).to(device)
        _make_output_dir(args.output_dir)
        record_results(args.output_dir, 0, evaluate(student, dev_loaders, device))
        return

    with rank_zero_first(world_size, rank):
        train_features = load_split(args, args.task_name, "train", student_entry, label_list)
    # train_batch_size is the global batch of one optimizer step: split over processes and micro-batches.
    per_step_batch = args.train_batch_size // (args.gradient_accumulation_steps * world_size)
    train_loader = batch_loader(train_features, per_step_batch, shuffle=True, seed=args.random_seed,
                                num_replicas=world_size, rank=rank,
                                with_index=args.cache_teacher_logits,
                                num_workers=loader_workers(args, device))

    distilling = bool(setup.enabled_teachers)
    needs_attention = uses_attention(matches) or args.emd_attention  # main.emd.py's attention EMD
    teachers = [build_model(entry, len(label_list), "teacher", output_hidden_states=distilling,
                            output_attentions=needs_attention).to(device)
                for entry in setup.enabled_teachers]
    student = build_model(student_entry, len(label_list), "student",
                          output_hidden_states=distilling,
                          output_attentions=needs_attention).to(device)

    if args.init_student_from_teacher:
        # A resumed run then gets the student's weights from its resume state.
        sample = {key: tensor[:INIT_SAMPLE].to(device) for key, tensor in train_features.items()
                  if key != "labels"}
        init_student_from_teacher(student, teachers[0], sample)

    steps_per_epoch = len(train_loader) // args.gradient_accumulation_steps
    total_steps = max(1, math.ceil(steps_per_epoch * args.num_train_epochs))
    train_config = training_config(args, device, data_parallel=world_size > 1)
    distiller = build_distiller(args, train_config, teachers, student, matches)
    if not reads_hidden_states(distiller):  # logits alone: do not keep every layer's output
        for model in teachers + [student]:
            model.output_hidden_states = False
    if args.cache_teacher_logits and (not teachers or reads_hidden_states(distiller) or needs_attention):
        raise ValueError(f"--cache_teacher_logits keeps the teachers' logits only, but "
                         f"{type(distiller).__name__} here "
                         f"{'has no teacher' if not teachers else 'distills intermediate features'}")
    distiller.log_every_steps = args.PRINT_EVERY  # steps; print_freq is TextBrewer's per-epoch count
    if args.resume:
        state = latest_state(args.output_dir)
        if state is None:
            raise FileNotFoundError(f"--resume: no resume state (resume_gs*.pt) in {args.output_dir}")
        distiller.resume_from(state)
    _make_output_dir(args.output_dir)  # only now: every check above has passed
    if args.resume and dev_loaders:
        evaluate_missed_checkpoints(args.output_dir, distiller.resume_step, student, dev_loaders, device)

    optimizer = build_optimizer(student, args.learning_rate, args.weight_decay_rate)
    # Built by the distiller once the projections have joined the optimizer.
    schedule = {"scheduler_class": linear_warmup_decay,
                "scheduler_args": {"warmup_steps": int(args.warmup_proportion * total_steps),
                                   "total_steps": total_steps}}
    _log_training_summary(args, len(train_features["labels"]), steps_per_epoch, total_steps,
                          distiller, world_size)

    def evaluate_checkpoint(model, step):
        if dev_loaders:
            record_results(args.output_dir, step, evaluate(model, dev_loaders, device))

    epochs = args.num_train_epochs
    length = {"num_epochs": int(epochs)} if epochs == int(epochs) else {"num_steps": total_steps}
    with distiller:
        distiller.train(optimizer, train_loader, max_grad_norm=args.max_grad_norm,
                        callback=evaluate_checkpoint, **schedule, **length)


def evaluate_missed_checkpoints(output_dir, up_to_step, student, dev_loaders, device):
    """Evaluate the checkpoints an interrupted run saved but did not evaluate (a kill during
    the evaluation). The student's own weights come back from the resume state afterwards."""
    evaluated = recorded_results(output_dir)
    for step in sorted(saved_checkpoint_steps(output_dir)):
        if step <= up_to_step and step not in evaluated:
            student.load_state_dict(safe_torch_load(os.path.join(output_dir, f"gs{step}.pkl")))
            record_results(output_dir, step, evaluate(student, dev_loaders, device))


def saved_checkpoint_steps(output_dir):
    names = (name[2:-4] for name in os.listdir(output_dir) if name.startswith("gs") and name.endswith(".pkl"))
    return [int(step) for step in names if step.isdigit()]


def _check_lengths(args, setup):
    for role, entry in [("student", setup.student)] + [("teacher", t) for t in setup.enabled_teachers]:
        limit = entry.bert_config.max_position_embeddings
        if args.max_seq_length > limit:
            raise ValueError(f"--max_seq_length {args.max_seq_length} exceeds the {role}'s "
                             f"max_position_embeddings {limit} ({entry.config_file})")


def _make_output_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"--output_dir {path} cannot be created: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(f"--output_dir {path} cannot be written")


def _log_training_summary(args, num_examples, steps_per_epoch, total_steps, distiller, world_size):
    logger.info("***** Running training: %s *****", type(distiller).__name__)
    logger.info("  Examples = %d, epochs = %s", num_examples, args.num_train_epochs)
    logger.info("  Batch size = %d (accumulation %d, processes %d), optimizer steps = %d (%d per epoch)",
                args.train_batch_size, args.gradient_accumulation_steps, world_size, total_steps,
                steps_per_epoch)


def main(build=build_distiller):
    # Under torchrun, rank 0 alone logs progress; the others report warnings and errors.
    quiet = int(os.environ.get("RANK", "0")) != 0
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", level=logging.WARNING if quiet else logging.INFO)
    try:
        run(build_distiller=build)
    except TrainingInterrupted as stop:
        logger.error("Stopped by %s at step %d. To continue, run the same command with --resume "
                     "(state: %s)", signal.Signals(stop.signal_number).name, stop.step, stop.state_path)
        sys.exit(128 + stop.signal_number)
    except (ValueError, FileNotFoundError, PermissionError, FloatingPointError) as error:
        # A user's mistake (a path, a key, an option) or a diverged run: one clear line.
        logger.error("%s", error)
        sys.exit(1)


if __name__ == "__main__":
    main()
