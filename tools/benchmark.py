"""How fast the pipeline runs: feature encoding, training steps of each distiller, evaluation.

    python -m tools.benchmark                # about two minutes on 2 CPU cores
    python -m tools.benchmark --device cuda --bf16 --batch 32 --length 128
    python -m tools.benchmark --levers --batch 32 --lengths_from MNLI/train.tsv --vocab_file vocab.txt
    python -m tools.benchmark --checkpoints_only   # about 10 minutes on 2 CPU cores

Everything is generated: a synthetic MNLI-layout train file with MNLI-like sentence lengths (and
a vocabulary built from its words) for the encoding, random token ids for the models. A training
step is timed through the distillers' own loop (AbstractDistiller.train with num_steps, on the
DataLoader main.py builds) with checkpoint writing switched off, and compared with a bare step:
teacher forward under no_grad, student forward and backward on the hard-label cross-entropy,
optimizer step. Every configuration runs once per round, the rounds interleave the
configurations (so a slowdown of the machine hits them all alike), and the table shows medians.
Where TextBrewer 0.2.1 is installed, its GeneralDistiller runs beside ours in the same process,
on the same models and batches, in interleaved rounds, and the ratio ours/TextBrewer is printed:
once with the same optimizer on both sides (the libraries alone), once with the optimizer each
project's MNLI example builds (main.py's fused AdamW; TextBrewer's AdamW with torch's defaults).

--checkpoints adds a table of what a checkpoint costs (--checkpoints_only prints it alone): epochs
with one checkpoint each, several epochs per train() call, of the GeneralDistiller writing its
checkpoints and resume states in the background (as it does), of the same writing them in the
training step (the writer before the background one: WritesInTheStep) and of TextBrewer
0.2.1's (the student alone, in the step), with the same optimizer, in interleaved rounds: the
time of an epoch after the first of its call (the previous checkpoint's write goes on beside
it), and how long training waited at a checkpoint and at the end of train().

--levers adds a second table: whole epochs of the GeneralDistiller over examples with the
lengths of a generated MNLI-like histogram (and of a real MNLI-layout train file, with
--lengths_from), eager against compiled (--compile) and random against grouped batches
(--group_by_length), side by side in interleaved rounds, with the padded token positions of
each epoch and what the compilation cost.
"""

import argparse
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import platform
import random
import resource
import statistics
import tempfile
import time

import torch
from torch._dynamo.utils import calculate_time_spent, counters
from transformers import BertConfig, BertTokenizer

from distillation import (
    DistillationConfig,
    GeneralDistiller,
    MultiTeacherDistiller,
    TrainingConfig,
    atomic_torch_save,
    move_to_device,
)
from distillation.checkpoint_writer import BackgroundWriter
from distiller_emd import EMDDistiller
from matches import PRESETS, fit_matches
from modeling import BertForGLUESimple, BertForGLUESimpleAdaptor
from pipeline import optimization
from pipeline.compiling import BACKEND, compile_training
from pipeline.data import batch_loader
from pipeline.distiller_features import request_features
from pipeline.evaluation import evaluate
from pipeline.feature_cache import load_features
from pipeline.options import COMPILE_PAD_MULTIPLE
from utils_glue import LABELS, MNLI_TRAIN_COLUMNS, TASKS, read_mnli_tsv

MNLI_TRAIN_PAIRS = 392_702
# Toy sizes for a quick check of every path (the tests, gpu_report --tiny): the presets need 12
# teacher and 4 student layers; everything else is tiny.
TINY_SIZES = ["--teacher_layers", "12", "--teacher_hidden", "64", "--student_layers", "4",
              "--student_hidden", "32", "--student_heads", "2", "--student_intermediate", "64",
              "--batch", "4", "--length", "16"]  # fmt: skip
VOCAB_SIZE = 30522  # bert-base-uncased's, so the embedding tables have their real size
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "du", "an", "el", "or", "is"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for add_options in (add_model_options, add_textbrewer_options, add_checkpoint_options, add_lever_options):
        add_options(parser.add_argument)
    args = parser.parse_args(argv)
    if args.checkpoint_epochs < 2:
        parser.error("--checkpoint_epochs must be at least 2: the first epoch of a call is not timed")
    if args.lengths_from and not args.vocab_file:
        parser.error("--lengths_from needs --vocab_file: the vocabulary whose word pieces are counted")
    if args.lever_examples < args.batch:
        parser.error(f"--lever_examples must be at least --batch ({args.batch}), got {args.lever_examples}")
    return args


def add_model_options(add):
    """The models' sizes, the batches, the rounds of the step table, the device."""
    add("--teacher_layers", type=int, default=12)
    add("--teacher_hidden", type=int, default=256)
    add(
        "--student_layers",
        type=int,
        default=4,
        help="T4-tiny: 4 layers, 312 hidden, 12 heads, 1200 intermediate.",
    )
    add("--student_hidden", type=int, default=312)
    add("--student_heads", type=int, default=12)
    add("--student_intermediate", type=int, default=1200)
    add("--batch", type=int, default=16)
    add("--length", type=int, default=64)
    add("--steps", type=int, default=4, help="Timed optimizer steps per configuration and round.")
    add("--rounds", type=int, default=3, help="Timed rounds; the table shows medians.")
    add("--warmup", type=int, default=2, help="Untimed steps per configuration before the rounds.")
    add("--encode_pairs", type=int, default=20_000, help="Pairs in the generated train file.")
    add("--eval_examples", type=int, default=2048)
    add("--threads", type=int, default=2, help="torch.set_num_threads for the whole run.")
    add("--device", choices=["cpu", "cuda"], default="cpu")
    add("--bf16", action="store_true", help="bf16 autocast in every configuration.")
    add(
        "--fp16", action="store_true", help="fp16 autocast (and a GradScaler on CUDA) in every configuration."
    )
    add("--seed", type=int, default=0)


def add_textbrewer_options(add):
    add(
        "--textbrewer_rounds",
        type=int,
        default=3,
        help="Rounds of GeneralDistiller against TextBrewer 0.2.1's, when it is installed (0: skip).",
    )
    add("--textbrewer_epoch_steps", type=int, default=72, help="Steps of one epoch in those rounds.")
    add("--textbrewer_only", action="store_true", help="Run only the TextBrewer comparison.")


def add_checkpoint_options(add):
    add(
        "--checkpoints",
        action="store_true",
        help="Also time epochs with one checkpoint each: ours written in the background, ours "
        "written in the step (before), TextBrewer 0.2.1's.",
    )
    add("--checkpoints_only", action="store_true", help="Run only the --checkpoints table.")
    add(
        "--checkpoint_epoch_steps",
        type=int,
        nargs="+",
        default=[24, 72],
        help="--checkpoints: epoch lengths.",
    )
    add(
        "--checkpoint_epochs",
        type=int,
        default=2,
        help="--checkpoints: epochs per train() call; the first of each is not timed.",
    )
    add("--checkpoint_rounds", type=int, default=3, help="--checkpoints: interleaved rounds.")


def add_lever_options(add):
    add(
        "--levers",
        action="store_true",
        help="Also time whole epochs eager against compiled and random against grouped batches.",
    )
    add(
        "--lever_examples",
        type=int,
        default=1600,
        help="Examples of a --levers epoch, drawn from each length histogram (a real file: all of "
        "its pairs when it has fewer).",
    )
    add("--lever_rounds", type=int, default=2, help="Timed epochs of each --levers configuration.")
    add(
        "--lengths_from",
        default=None,
        help="--levers: also the lengths of this MNLI-layout train file (sentence1, sentence2), as "
        "--vocab_file's word pieces count them, cut to --length.",
    )
    add("--vocab_file", default=None, help="The vocabulary of --lengths_from (a BERT vocab.txt).")
    add(
        "--compile_backend",
        default=BACKEND,
        help=f"torch.compile's backend in --levers (default {BACKEND}; 'eager' checks the path quickly).",
    )


# ----- feature encoding --------------------------------------------------------------------------


def make_lexicon(rng, size=4000):
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def sentence(rng, lexicon, mean_words):
    """A sentence with about mean_words words (MNLI: premises ~22, hypotheses ~11)."""
    num_words = max(2, int(rng.gauss(mean_words, mean_words / 2.5)))
    return " ".join(rng.choice(lexicon) for _ in range(num_words)) + " ."


def write_train_file(path, num_pairs, lexicon, rng):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(MNLI_TRAIN_COLUMNS) + "\n")
        for index in range(num_pairs):
            premise, hypothesis = sentence(rng, lexicon, 22), sentence(rng, lexicon, 11)
            label = rng.choice(LABELS)
            f.write(
                "\t".join(
                    [
                        str(index),
                        str(index),
                        f"{index}e",
                        "fiction",
                        premise,
                        hypothesis,
                        premise,
                        hypothesis,
                        premise,
                        hypothesis,
                        label,
                        label,
                    ]
                )
                + "\n"
            )


def time_encoding(args, workdir):
    """(pairs per second when encoding, seconds to load the cache) on a generated train file."""
    rng = random.Random(args.seed)
    lexicon = make_lexicon(rng)
    data_dir = os.path.join(workdir, "MNLI")
    os.makedirs(data_dir)
    write_train_file(os.path.join(data_dir, "train.tsv"), args.encode_pairs, lexicon, rng)
    vocab_file = os.path.join(workdir, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + lexicon) + "\n")
    tokenizer = BertTokenizer(vocab=vocab_file, do_lower_case=True)
    cache_dir = os.path.join(workdir, "cache")

    def load():
        start = time.perf_counter()
        load_features(TASKS["mnli"], data_dir, "train", tokenizer, vocab_file, 128, cache_dir)
        return time.perf_counter() - start

    encode_seconds = load()  # reads, encodes and writes the cache
    cached_seconds = statistics.median(load() for _ in range(3))
    return args.encode_pairs / encode_seconds, cached_seconds


# ----- models and batches ------------------------------------------------------------------------


def bert_config(layers, hidden, heads, intermediate, length):
    return BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max(512, length),
    )


def synthetic_features(num_examples, length, generator, real=None):
    """Random ids with MNLI-like padding: each row holds between half and all of `length` tokens
    (or real[i] tokens)."""
    if real is None:
        real = torch.randint(length // 2, length + 1, (num_examples,), generator=generator)
    positions = torch.arange(length)
    attention_mask = (positions < real[:, None]).long()
    first_segment = (real * 2) // 3
    token_type_ids = ((positions >= first_segment[:, None]) & attention_mask.bool()).long()
    input_ids = torch.randint(1000, VOCAB_SIZE, (num_examples, length), generator=generator)
    input_ids = input_ids * attention_mask
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "labels": torch.randint(0, len(LABELS), (num_examples,), generator=generator),
    }


class NoCheckpoints:
    """Mixin: the distiller trains as usual but writes no checkpoint or resume state."""

    def _save_checkpoint(self, run, callback):
        pass

    def _save_resume_state(self, run):
        return None


def without_checkpoints(distiller_class):
    return type(f"Timed{distiller_class.__name__}", (NoCheckpoints, distiller_class), {})


class Setup:
    """Builds the models and loaders of one benchmark run."""

    def __init__(self, args, workdir):
        self.args = args
        self.device = torch.device(args.device)
        self.workdir = workdir
        self.teacher_config = bert_config(
            args.teacher_layers,
            args.teacher_hidden,
            max(1, args.teacher_hidden // 64),
            4 * args.teacher_hidden,
            args.length,
        )
        self.student_config = bert_config(
            args.student_layers,
            args.student_hidden,
            args.student_heads,
            args.student_intermediate,
            args.length,
        )
        generator = torch.Generator().manual_seed(args.seed)
        num_batches = args.warmup + args.steps
        self.features = synthetic_features(num_batches * args.batch, args.length, generator)

    def model(self, config, hidden_states, seed):
        torch.manual_seed(seed)
        return BertForGLUESimple(config, len(LABELS), output_hidden_states=hidden_states).to(self.device)

    def published_matches(self):
        """The example's matches (L4t_hidden_mse + L4_hidden_smmd) fitted to these sizes."""
        return fit_matches(
            PRESETS["L4t_hidden_mse"] + PRESETS["L4_hidden_smmd"],
            self.student_config.hidden_size,
            self.teacher_config.hidden_size,
            self.student_config.num_hidden_layers,
            self.teacher_config.num_hidden_layers,
        )

    def relation_matches(self):
        """L4_relation_last (MiniLMv2's relations of the last layers) fitted to these sizes, with
        the most relation heads, up to the preset's 12, that divide both hidden sizes."""
        common = math.gcd(self.student_config.hidden_size, self.teacher_config.hidden_size)
        heads = max(h for h in range(1, 13) if common % h == 0)
        return fit_matches(
            [{**match, "relation_heads": heads} for match in PRESETS["L4_relation_last"]],
            self.student_config.hidden_size,
            self.teacher_config.hidden_size,
            self.student_config.num_hidden_layers,
            self.teacher_config.num_hidden_layers,
        )

    def teacher(self, hidden_states, seed=1):
        return self.model(self.teacher_config, hidden_states, seed).eval().requires_grad_(False)

    def student(self, hidden_states):
        return self.model(self.student_config, hidden_states, seed=0)

    def loader(self, with_index=False):
        return batch_loader(
            self.features, self.args.batch, shuffle=True, seed=self.args.seed, with_index=with_index
        )

    def train_config(self, name, teacher_dtype=None):
        return TrainingConfig(
            output_dir=os.path.join(self.workdir, name),
            device=self.device,
            mixed_precision=precision(self.args),
            teacher_dtype=teacher_dtype,
        )


class BareStep:
    """The reference: what any training step does, without distillation."""

    def __init__(self, setup):
        self.setup = setup
        self.teacher = setup.teacher(hidden_states=False)
        self.student = setup.student(hidden_states=False)
        self.optimizer = optimization.build_optimizer(self.student, 1e-4, 0.01)
        self.loader = setup.loader()

    def run(self, num_steps):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision(self.setup.args))
        autocast = (
            torch.autocast(self.setup.device.type, dtype=dtype)
            if dtype is not None and (dtype is torch.bfloat16 or self.setup.device.type == "cuda")
            else contextlib.nullcontext()
        )
        scaler = torch.amp.GradScaler(
            self.setup.device.type, enabled=dtype is torch.float16 and self.setup.device.type == "cuda"
        )
        self.student.train()
        for step, batch in enumerate(self.loader):
            if step == num_steps:
                break
            batch = move_to_device(batch, self.setup.device)
            with torch.no_grad(), autocast:
                self.teacher(**{k: v for k, v in batch.items() if k != "labels"})
            with autocast:
                loss = self.student(**batch)["loss"]
            scaler.scale(loss).backward()
            scaler.step(self.optimizer)
            scaler.update()
            self.optimizer.zero_grad(set_to_none=True)


class DistillerStep:
    """num_steps optimizer steps of a distiller's own train() loop."""

    def __init__(self, setup, distiller, with_index=False):
        self.distiller = distiller
        self.distiller.log_every_steps = 10**9  # one log line, at the last step
        self.optimizer = optimization.build_optimizer(distiller.model_S, 1e-4, 0.01)
        self.loader = setup.loader(with_index)  # with_index: the logit cache is keyed by example

    def run(self, num_steps):
        self.distiller.train(self.optimizer, self.loader, num_steps=num_steps)


def build_steps(setup):
    """{configuration name: object with run(num_steps)}, in the table's order."""
    temperature = 8
    matches = setup.published_matches()
    adaptor = BertForGLUESimpleAdaptor
    general = without_checkpoints(GeneralDistiller)(
        setup.train_config("general"),
        DistillationConfig(temperature=temperature, intermediate_matches=matches),
        setup.teacher(hidden_states=True),
        setup.student(hidden_states=True),
        adaptor,
        adaptor,
    )
    relation = without_checkpoints(GeneralDistiller)(
        setup.train_config("relation"),
        DistillationConfig(temperature=temperature, intermediate_matches=setup.relation_matches()),
        setup.teacher(hidden_states=False),
        setup.student(hidden_states=False),
        adaptor,
        adaptor,
    )
    request_features(relation, [relation.model_T], relation.model_S)  # the matched layers only
    emd = without_checkpoints(EMDDistiller)(
        setup.train_config("emd"),
        DistillationConfig(temperature=temperature),
        setup.teacher(hidden_states=True),
        setup.student(hidden_states=True),
        adaptor,
        adaptor,
    )

    def multi(caching):
        return without_checkpoints(MultiTeacherDistiller)(
            setup.train_config(f"multi{caching}"),
            DistillationConfig(temperature=temperature, is_caching_logits=caching),
            [setup.teacher(False, seed=1), setup.teacher(False, seed=2)],
            setup.student(hidden_states=False),
            adaptor,
            adaptor,
        )

    return {
        "bare step": BareStep(setup),
        "GeneralDistiller L4t_hidden_mse + L4_hidden_smmd": DistillerStep(setup, general),
        "GeneralDistiller L4_relation_last (SDPA kept)": DistillerStep(setup, relation),
        "EMDDistiller": DistillerStep(setup, emd),
        "MultiTeacherDistiller, 2 teachers": DistillerStep(setup, multi(False)),
        "MultiTeacherDistiller, 2 teachers, cached logits (epoch >= 2)": DistillerStep(
            setup, multi(True), with_index=True
        ),
    }


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(setup, steps):
    """{name: median seconds per step}, and {name: peak GPU bytes} on CUDA."""
    args = setup.args
    for step in steps.values():  # warm-up; a logit cache is filled here (one whole epoch)
        step.run(args.warmup + args.steps if isinstance(step, DistillerStep) else args.warmup)
    times, peaks = {name: [] for name in steps}, {}
    for _ in range(args.rounds):
        for name, step in steps.items():
            if setup.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            synchronize(setup.device)
            start = time.perf_counter()
            step.run(args.steps)
            synchronize(setup.device)
            times[name].append((time.perf_counter() - start) / args.steps)
            if setup.device.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated()
    return {name: statistics.median(values) for name, values in times.items()}, peaks


def time_evaluation(setup):
    """Examples per second of predict.evaluate on the student, batches of 128."""
    generator = torch.Generator().manual_seed(setup.args.seed + 1)
    features = synthetic_features(setup.args.eval_examples, setup.args.length, generator)
    loaders = {"mnli": batch_loader(features, 128, shuffle=False)}
    student = setup.student(hidden_states=False)
    evaluate(student, loaders, setup.device, TASKS["mnli"])  # warm-up
    synchronize(setup.device)
    start = time.perf_counter()
    evaluate(student, loaders, setup.device, TASKS["mnli"])
    return setup.args.eval_examples / (time.perf_counter() - start)


# ----- the levers: compiled steps, grouped lengths, a half-precision teacher ----------------------


def mnli_like_lengths(num_examples, max_length, generator):
    """Word pieces per pair with MNLI's mean (about 40) and a long right tail (log-normal, standard
    deviation 15), cut to [8, max_length]: a random batch of 32 is about twice as long as its
    average example, as MNLI's are (issue 27)."""
    sigma = math.sqrt(math.log(1 + (15 / 40) ** 2))
    normal = torch.randn(num_examples, generator=generator, dtype=torch.float64)
    return (normal * sigma + math.log(40) - sigma**2 / 2).exp().round().long().clamp(8, max_length)


def lengths_from_tsv(path, vocab_file, max_length):
    """Word pieces of each pair of an MNLI-layout file, [CLS] and [SEP] included, cut to max_length."""
    examples = read_mnli_tsv(path)
    tokenizer = BertTokenizer(vocab=vocab_file, do_lower_case=True)
    encoded = tokenizer(
        [e.text_a for e in examples], [e.text_b for e in examples], truncation=True, max_length=max_length
    )
    return torch.tensor([len(ids) for ids in encoded["input_ids"]])


def length_histograms(args, generator):
    """{name: the real tokens of each example of a --levers epoch}."""
    histograms = {"MNLI-like lengths": mnli_like_lengths(args.lever_examples, args.length, generator)}
    if args.lengths_from:
        lengths = lengths_from_tsv(args.lengths_from, args.vocab_file, args.length)
        if len(lengths) > args.lever_examples:
            lengths = lengths[torch.randperm(len(lengths), generator=generator)[: args.lever_examples]]
        histograms["lengths of --lengths_from"] = lengths
    return histograms


@dataclasses.dataclass
class Lever:
    """One configuration of the --levers table."""

    name: str
    compiled: bool = False
    grouped: bool = False
    teacher_dtype: str = None  # TrainingConfig.teacher_dtype


CPU_LEVERS = [
    Lever("eager, random batches"),
    Lever("eager, grouped lengths", grouped=True),
    Lever("compiled, random batches", compiled=True),
    Lever("compiled, grouped lengths", compiled=True, grouped=True),
]


class LeverEpoch:
    """One epoch of the GeneralDistiller (the published matches) over examples of given lengths."""

    def __init__(self, setup, lever, lengths):
        args = setup.args
        generator = torch.Generator().manual_seed(args.seed + 3)
        features = synthetic_features(len(lengths), args.length, generator, real=lengths)
        self.loader = batch_loader(
            features,
            args.batch,
            shuffle=True,
            seed=args.seed,
            group_by_length=lever.grouped,
            pad_to_multiple_of=COMPILE_PAD_MULTIPLE if lever.compiled else None,
        )
        self.steps = len(self.loader)
        # The token positions the models see in the epoch, padding included.
        self.positions = sum(batch["input_ids"].numel() for batch in self.loader)
        matches = setup.published_matches()
        self.distiller = without_checkpoints(GeneralDistiller)(
            setup.train_config(f"lever-{id(self)}", teacher_dtype=lever.teacher_dtype),
            DistillationConfig(temperature=8, intermediate_matches=matches, padded_length=args.length),
            setup.teacher(hidden_states=True),
            setup.student(hidden_states=True),
            BertForGLUESimpleAdaptor,
            BertForGLUESimpleAdaptor,
        )
        self.distiller.log_every_steps = 10**9
        if lever.compiled:
            compile_training(self.distiller, setup.device, 1, backend=args.compile_backend)
        self.optimizer = optimization.build_optimizer(self.distiller.model_S, 1e-4, 0.01)

    def run(self, num_steps=None):
        """One epoch, or its first num_steps steps."""
        length = {"num_steps": num_steps} if num_steps else {"num_epochs": 1}
        self.distiller.train(self.optimizer, self.loader, **length)


def time_levers(setup, configurations, histograms):
    """{(histogram, lever name): (median seconds per epoch, LeverEpoch)} for each (histogram
    name, Lever) of configurations; the compilation: (seconds, graphs) after the warm-up
    epochs; and the graphs compiled during the timed epochs."""
    epochs = {
        (histogram, lever.name): LeverEpoch(setup, lever, histograms[histogram])
        for histogram, lever in configurations
    }
    compile_seconds = calculate_time_spent().get("total_wall_time", 0.0)
    for epoch in epochs.values():  # warm-up: compiles every shape of the epoch
        epoch.run()
    compile_seconds = calculate_time_spent().get("total_wall_time", 0.0) - compile_seconds
    graphs = counters["stats"]["unique_graphs"]
    times = {key: [] for key in epochs}
    for _ in range(setup.args.lever_rounds):
        for key, epoch in epochs.items():
            synchronize(setup.device)
            start = time.perf_counter()
            epoch.run()
            synchronize(setup.device)
            times[key].append(time.perf_counter() - start)
    medians = {key: (statistics.median(values), epochs[key]) for key, values in times.items()}
    return medians, (compile_seconds, graphs), counters["stats"]["unique_graphs"] - graphs


def levers_report(args, result):
    times, (compile_seconds, graphs), recompiled = result
    first = {}  # the first configuration of each histogram: eager, random batches
    lines = [
        f"Whole epochs of the GeneralDistiller (L4t_hidden_mse + L4_hidden_smmd), batch {args.batch}, "
        f"lengths up to {args.length}, median of {args.lever_rounds} interleaved rounds after a warm-up "
        f"epoch each; compiled: torch.compile backend {args.compile_backend}, dynamic shapes, lengths "
        f"padded to a multiple of {COMPILE_PAD_MULTIPLE}",
        "",
        "| lengths | configuration | examples | epoch | per step | ratio to eager, random | "
        "token positions (real) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for histogram, lever in times:
        seconds, epoch = times[histogram, lever]
        reference = first.setdefault(histogram, seconds)
        real = int(epoch.loader.dataset.features["attention_mask"].sum())
        lines.append(
            f"| {histogram} | {lever} | {len(epoch.loader.dataset):,} | {seconds:.2f} s | "
            f"{seconds / epoch.steps * 1000:.0f} ms | {seconds / reference:.3f}x | "
            f"{epoch.positions:,} ({real:,}) |"
        )
    lines.append("")
    lines.append(
        f"Compilation: {compile_seconds:.1f} s in the warm-up epochs, {graphs} graphs; "
        f"graphs compiled during the timed epochs: {recompiled}"
    )
    return "\n".join(lines)


# ----- against TextBrewer 0.2.1 ---------------------------------------------------------------


def third_half_padded(num_examples, length, generator):
    """Random ids where every third row holds half of `length` tokens and the others all of it."""
    features = synthetic_features(num_examples, length, generator)
    real = torch.where(torch.arange(num_examples) % 3 == 0, length // 2, length)
    mask = (torch.arange(length) < real[:, None]).long()
    features["attention_mask"] = mask
    features["input_ids"] = features["input_ids"] * mask
    features["token_type_ids"] = features["token_type_ids"] * mask
    return features


def time_against_textbrewer(setup):
    """{name: median seconds per step} of GeneralDistiller with the example's matches (five
    hidden_mse pairs through linear projections, five mmd pairs): ours with main.py's optimizer,
    TextBrewer's with the same optimizer, and TextBrewer's with the optimizer its MNLI example
    builds (AdamW with torch's defaults, a loop over the tensors on a CPU). The same models and
    batches, one epoch each per round, the order turning every round. None when TextBrewer is
    not installed."""
    try:
        import textbrewer
    except ImportError:
        return None
    args = setup.args
    generator = torch.Generator().manual_seed(args.seed + 2)
    features = third_half_padded(args.textbrewer_epoch_steps * args.batch, args.length, generator)
    ours, theirs = side_by_side_distillers(setup, textbrewer)
    loader = batch_loader(features, args.batch, shuffle=True, seed=args.seed)

    def example_optimizer(model, learning_rate, weight_decay_rate):  # TextBrewer's example's
        return torch.optim.AdamW(optimization.parameter_groups(model, weight_decay_rate), lr=learning_rate)

    runs = {}
    for name, distiller, build in (
        ("ours", ours, optimization.build_optimizer),
        ("textbrewer", theirs, optimization.build_optimizer),
        ("textbrewer, its example's optimizer", theirs, example_optimizer),
    ):
        # A new optimizer per epoch on every side: TextBrewer adds the projections to the
        # optimizer at every train() call, which a reused one refuses.
        runs[name] = lambda d=distiller, b=build: d.train(b(d.model_S, 1e-4, 0.01), loader, num_epochs=1)
    for run_epoch in runs.values():  # warm-up
        run_epoch()
    times = {name: [] for name in runs}
    for order in turning_orders(list(runs), args.textbrewer_rounds):
        for name in order:
            synchronize(setup.device)
            start = time.perf_counter()
            runs[name]()
            synchronize(setup.device)
            times[name].append((time.perf_counter() - start) / args.textbrewer_epoch_steps)
    return {name: statistics.median(values) for name, values in times.items()}


def turning_orders(names, rounds):
    """Each round's order of the names, turned by one every round, so that no side always runs
    first (or after the same neighbour)."""
    return [names[i % len(names) :] + names[: i % len(names)] for i in range(rounds)]


def side_by_side_distillers(setup, textbrewer):
    """(ours, TextBrewer's) GeneralDistiller with the example's matches on the same teacher and
    the same student's initial weights, neither writing checkpoints."""
    matches = setup.published_matches()
    adaptor = BertForGLUESimpleAdaptor
    teacher = setup.teacher(hidden_states=True)

    class TimedTextBrewer(textbrewer.GeneralDistiller):
        def save_and_callback(self, *unused):  # no checkpoints, as on our side
            pass

    ours = without_checkpoints(GeneralDistiller)(
        setup.train_config("ours"),
        DistillationConfig(temperature=8, intermediate_matches=matches, padded_length=setup.args.length),
        teacher,
        setup.student(hidden_states=True),
        adaptor,
        adaptor,
    )
    ours.log_every_steps = 10**9
    theirs = TimedTextBrewer(
        textbrewer.TrainingConfig(output_dir=os.path.join(setup.workdir, "textbrewer"), device=setup.device),
        textbrewer.DistillationConfig(temperature=8, intermediate_matches=[m.as_dict() for m in matches]),
        teacher,
        setup.student(hidden_states=True),
        adaptor,
        adaptor,
    )
    return ours, theirs


def textbrewer_report(args, result):
    if result is None:
        return "TextBrewer is not installed: no side-by-side comparison."
    ours = result["ours"]
    lines = [
        f"GeneralDistiller (five hidden_mse pairs with linear projections, five mmd pairs), "
        f"a third of the rows half padded, epochs of {args.textbrewer_epoch_steps} steps, "
        f"median of {args.textbrewer_rounds} interleaved rounds: ours {ours * 1000:.0f} ms/step"
    ]
    for name, label in (
        ("textbrewer", "TextBrewer 0.2.1, the same optimizer"),
        ("textbrewer, its example's optimizer", "TextBrewer 0.2.1, the optimizer of its MNLI example"),
    ):
        lines.append(
            f"  {label}: {result[name] * 1000:.0f} ms/step, ours/TextBrewer {ours / result[name]:.3f}x"
        )
    return "\n".join(lines)


# ----- the cost of a checkpoint -----------------------------------------------------------------


class WritesInTheStep:
    """Checkpoints and resume states written as before the background writer: in the training
    thread, while training waits, without a copy (a checkpoint_writer for the "before" row)."""

    failed = False

    def write(self, files, then=None):
        for path, state in files:
            atomic_torch_save(state, path)
        if then is not None:
            then()

    def check(self):
        pass

    def wait(self):
        pass

    def close(self):
        pass


class CheckpointTimes:
    """When each checkpoint of a train() call ended (the epoch boundaries), how long training
    waited at each, and how long train() waited after the last (for the last write)."""

    def __init__(self):
        self.ends, self.waits, self.final_waits = [], [], []

    def timed_save(self, save):
        start = time.perf_counter()
        save()
        self.ends.append(time.perf_counter())
        self.waits.append(self.ends[-1] - start)

    def timed_train(self, train):
        self.ends.clear()
        train()
        self.final_waits.append(time.perf_counter() - self.ends[-1])
        return [later - earlier for earlier, later in itertools.pairwise(self.ends)]


def checkpoint_timed(distiller_class, writer):
    """distiller_class writing its checkpoints with writer, timed (its `times`)."""

    def _save_checkpoint(self, run, callback):
        self.times.timed_save(lambda: distiller_class._save_checkpoint(self, run, callback))

    return type(
        f"Checkpointed{distiller_class.__name__}",
        (distiller_class,),
        {"checkpoint_writer": writer, "_save_checkpoint": _save_checkpoint},
    )


def checkpoint_distillers(setup):
    """{name: distiller with `times`} for the checkpoint table: the GeneralDistiller with the
    example's matches writing in the background, the same writing in the step, TextBrewer's
    (when installed) writing the student alone; the same teacher, students alike."""
    matches = setup.published_matches()
    teacher = setup.teacher(hidden_states=True)
    adaptor = BertForGLUESimpleAdaptor
    distillers = {}
    for name, writer in (("ours, written in the background", BackgroundWriter),
                         ("ours, written in the step (before)", WritesInTheStep)):  # fmt: skip
        distillers[name] = checkpoint_timed(GeneralDistiller, writer)(
            setup.train_config(f"checkpoints-{len(distillers)}"),
            DistillationConfig(temperature=8, intermediate_matches=matches, padded_length=setup.args.length),
            teacher,
            setup.student(hidden_states=True),
            adaptor,
            adaptor,
        )
        distillers[name].log_every_steps = 10**9
    with contextlib.suppress(ImportError):
        import textbrewer

        class TimedTextBrewer(textbrewer.GeneralDistiller):
            def save_and_callback(self, *arguments):
                self.times.timed_save(lambda: super(TimedTextBrewer, self).save_and_callback(*arguments))

        distillers["TextBrewer 0.2.1"] = TimedTextBrewer(
            textbrewer.TrainingConfig(output_dir=os.path.join(setup.workdir, "checkpoints-textbrewer"),
                                      device=setup.device),
            textbrewer.DistillationConfig(temperature=8, intermediate_matches=[m.as_dict() for m in matches]),
            teacher,
            setup.student(hidden_states=True),
            adaptor,
            adaptor,
        )  # fmt: skip
    for distiller in distillers.values():
        distiller.times = CheckpointTimes()
    return distillers


def time_checkpoints(setup, epoch_steps):
    """{name: (median seconds per epoch, median wait at a checkpoint, median wait at the end of
    train(), bytes written per checkpoint)} of epochs of epoch_steps steps, each with its
    checkpoint, for checkpoint_distillers: the same models, batches and optimizer (main.py's),
    --checkpoint_epochs epochs per train() call, in interleaved rounds."""
    args = setup.args
    generator = torch.Generator().manual_seed(args.seed + 2)
    features = third_half_padded(epoch_steps * args.batch, args.length, generator)
    loader = batch_loader(features, args.batch, shuffle=True, seed=args.seed)
    warm_loader = batch_loader(
        {k: v[: 2 * args.batch] for k, v in features.items()}, args.batch, shuffle=False
    )
    distillers = checkpoint_distillers(setup)
    for distiller in distillers.values():
        # A new optimizer per call: TextBrewer adds the projections to it at every train().
        distiller.train(
            optimization.build_optimizer(distiller.model_S, 1e-4, 0.01), warm_loader, num_epochs=1
        )
        distiller.times = CheckpointTimes()  # the warm-up made the host buffers: not timed
    epochs = {name: [] for name in distillers}
    for order in turning_orders(list(distillers), args.checkpoint_rounds):
        for name in order:
            distiller = distillers[name]
            synchronize(setup.device)
            epochs[name] += distiller.times.timed_train(
                lambda d=distiller: d.train(
                    optimization.build_optimizer(d.model_S, 1e-4, 0.01),
                    loader,
                    num_epochs=args.checkpoint_epochs,
                )
            )
    last = epoch_steps * args.checkpoint_epochs
    return {
        name: (statistics.median(epochs[name]), statistics.median(distiller.times.waits),
               statistics.median(distiller.times.final_waits), bytes_written(distiller.t_config.output_dir, last))
        for name, distiller in distillers.items()
    }  # fmt: skip


def bytes_written(output_dir, step):
    """The sizes of gs{step}.pkl and resume_gs{step}.pt (those there) in output_dir."""
    paths = [os.path.join(output_dir, file) for file in (f"gs{step}.pkl", f"resume_gs{step}.pt")]
    return sum(os.path.getsize(path) for path in paths if os.path.exists(path))


def checkpoints_report(args, results):
    """results: {epoch steps: time_checkpoints' result}."""
    lines = [
        f"Checkpoints: the GeneralDistiller (five hidden_mse pairs with linear projections, five mmd pairs), "
        f"one checkpoint an epoch, {args.checkpoint_epochs} epochs per train() call (the first not timed), "
        f"the same optimizer (main.py's) on every side, median of {args.checkpoint_rounds} interleaved rounds",
        "",
        "| epoch | writes | MiB a checkpoint | epoch | per step | / TextBrewer | waits at a checkpoint "
        "| waits at the end of train() |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    summary = []
    for epoch_steps, result in results.items():
        theirs = result.get("TextBrewer 0.2.1")
        for name, (epoch, wait, final_wait, written) in result.items():
            ratio = f"{epoch / theirs[0]:.3f}x" if theirs else "n/a"
            lines.append(
                f"| {epoch_steps} steps | {name} | {written / 2**20:,.0f} | {epoch:.2f} s | "
                f"{epoch / epoch_steps * 1000:.0f} ms | {ratio} | {wait:.3f} s | {final_wait:.3f} s |"
            )
        after = result["ours, written in the background"][1]
        before = result["ours, written in the step (before)"][1]
        summary.append(f"{after / before:.3f}x with {epoch_steps}-step epochs")
    lines += ["", "Training waits at a checkpoint, in the background / in the step: " + ", ".join(summary)]
    return "\n".join(lines)


# ----- the report --------------------------------------------------------------------------------


def machine_description(device):
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    text = (
        f"CPU: {cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )
    if device.type == "cuda":
        text += f", GPU: {torch.cuda.get_device_name()}"
    return text


def precision(args):
    """TrainingConfig.mixed_precision of the run: 'fp16', 'bf16' or 'no' (float32)."""
    return "fp16" if args.fp16 else "bf16" if args.bf16 else "no"


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def report(args, setup, encoding, step_times, peaks, eval_rate):
    encode_rate, cached_seconds = encoding
    bare = step_times["bare step"]
    general = step_times["GeneralDistiller L4t_hidden_mse + L4_hidden_smmd"]
    number_format = "float32" if precision(args) == "no" else precision(args)
    lines = [
        f"Machine: {machine_description(setup.device)}",
        f"Sizes: teacher {args.teacher_layers} layers x {args.teacher_hidden} hidden; student "
        f"{args.student_layers} x {args.student_hidden} ({args.student_heads} heads, "
        f"{args.student_intermediate} intermediate); batch {args.batch}, length {args.length}, "
        f"{number_format}, device {args.device}; median of {args.rounds} "
        f"rounds of {args.steps} steps",
        "",
        "| measurement | value | ratio to the bare step |",
        "|---|---|---|",
    ]
    lines.append(
        f"| feature encoding, length 128 ({args.encode_pairs} generated pairs) | "
        f"{encode_rate:,.0f} pairs/s (MNLI train, {MNLI_TRAIN_PAIRS:,} pairs: "
        f"~{MNLI_TRAIN_PAIRS / encode_rate:.0f} s) | |"
    )
    lines.append(
        f"| loading the cached features | {cached_seconds:.3f} s (MNLI train: "
        f"~{cached_seconds * MNLI_TRAIN_PAIRS / args.encode_pairs:.1f} s) | |"
    )
    for name, seconds in step_times.items():
        peak = f", peak {peaks[name] / 2**20:,.0f} MiB" if name in peaks else ""
        lines.append(
            f"| training: {name} | {1 / seconds:.3f} steps/s ({seconds * 1000:.0f} ms{peak}) "
            f"| {seconds / bare:.3f}x |"
        )
    lines.append(f"| EMD step / GeneralDistiller step | | {step_times['EMDDistiller'] / general:.3f}x |")
    relation = step_times["GeneralDistiller L4_relation_last (SDPA kept)"]
    lines.append(f"| relation step / hidden-state matches' step | | {relation / general:.3f}x |")
    lines.append(f"| evaluation ({args.eval_examples} examples, batch 128) | {eval_rate:,.0f} examples/s | |")
    lines.append(f"| peak memory of the process (max RSS) | {max_rss_mib():,.0f} MiB | |")
    return "\n".join(lines)


def run(argv=None):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mnli-benchmark-") as workdir:
        setup = Setup(args, workdir)
        if args.checkpoints or args.checkpoints_only:
            results = {steps: time_checkpoints(setup, steps) for steps in args.checkpoint_epoch_steps}
            print(checkpoints_report(args, results))
            if args.checkpoints_only:
                return
        if not args.textbrewer_only:
            encoding = time_encoding(args, workdir)
            step_times, peaks = time_steps(setup, build_steps(setup))
            eval_rate = time_evaluation(setup)
            print(report(args, setup, encoding, step_times, peaks, eval_rate))
        if args.levers:
            histograms = length_histograms(args, torch.Generator().manual_seed(args.seed + 4))
            print()
            configurations = [(histogram, lever) for histogram in histograms for lever in CPU_LEVERS]
            print(levers_report(args, time_levers(setup, configurations, histograms)))
        if args.textbrewer_rounds > 0:
            print(textbrewer_report(args, time_against_textbrewer(setup)))


if __name__ == "__main__":
    run()
