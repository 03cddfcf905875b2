"""What MNLI's training features cost in memory, for one process and for several under torchrun.

    python -m tools.feature_memory                    # 392,702 generated pairs, 4 processes
    python -m tools.feature_memory --pairs 2000 --processes 2

Writes an MNLI-sized train.tsv of generated pairs, encodes it once at length 128 (timed: the
encoding and the cached load), then starts `--processes` processes with torchrun (gloo). Each
loads the features as main.py does, makes every batch of an epoch once (which touches every
page of the features), and reports what its memory grew by: RSS (all the pages it touches),
PSS (shared pages divided among the processes sharing them) and USS (pages only it holds), read
from /proc/self/smaps_rollup. The features are memory-mapped from the cache file, so the
machine holds them once, in the page cache: the first process's growth is about the file's
size, and each further process adds only its own batches.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import torch.distributed as dist
from transformers import BertTokenizer

from pipeline.data import batch_loader
from pipeline.feature_cache import load_features
from tools.benchmark import make_lexicon, write_train_file
from utils_glue import TASKS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MNLI_TRAIN_PAIRS = 392_702
MIB = 1024 * 1024


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=MNLI_TRAIN_PAIRS)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workdir", help="keep the generated files here (default: a temporary folder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def memory():
    """(RSS, PSS, USS) of this process in bytes, from /proc/self/smaps_rollup."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return fields["Rss"], fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"]


def features_of(workdir, length):
    vocab_file = os.path.join(workdir, "vocab.txt")
    tokenizer = BertTokenizer(vocab=vocab_file, do_lower_case=True)
    return load_features(
        TASKS["mnli"],
        os.path.join(workdir, "MNLI"),
        "train",
        tokenizer,
        vocab_file,
        length,
        os.path.join(workdir, "cache"),
    )


def worker(args):
    """One torchrun process: load the features, make every batch once, report the growth."""
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    before = memory()
    features = features_of(args.workdir, args.length)
    loader = batch_loader(features, args.batch, shuffle=True, num_replicas=world_size, rank=rank)
    for _ in loader:
        pass
    dist.barrier()  # every process holds its mapping now, so PSS divides the shared pages
    after = memory()
    grown = [(a - b) / MIB for a, b in zip(after, before)]
    reports = [None] * world_size
    dist.all_gather_object(reports, grown)
    if rank == 0:
        print(json.dumps(reports))
    dist.destroy_process_group()


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or scratch
        os.makedirs(os.path.join(workdir, "MNLI"), exist_ok=True)
        rng = random.Random(0)
        lexicon = make_lexicon(rng)
        write_train_file(os.path.join(workdir, "MNLI", "train.tsv"), args.pairs, lexicon, rng)
        with open(os.path.join(workdir, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + lexicon) + "\n")
        start = time.perf_counter()
        features = features_of(workdir, args.length)
        encode_seconds = time.perf_counter() - start
        start = time.perf_counter()
        features = features_of(workdir, args.length)
        load_seconds = time.perf_counter() - start
        stored = sum(t.numel() * t.element_size() for t in features.values()) / MIB
        as_int64 = sum(t.numel() * 8 for t in features.values()) / MIB
        del features
        reports = measure_processes(args, workdir)
    report(args, encode_seconds, load_seconds, stored, as_int64, reports)


def measure_processes(args, workdir):
    """Each worker process's memory growth (RSS, PSS, USS in MiB), run under torchrun."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(args.processes),
        "-m",
        "tools.feature_memory",
        "--worker",
        "--workdir",
        workdir,
        "--length",
        str(args.length),
        "--batch",
        str(args.batch),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args, encode_seconds, load_seconds, stored, as_int64, reports):
    print(
        f"{args.pairs:,} pairs at length {args.length}: encoded in {encode_seconds:.1f} s, "
        f"cached load {load_seconds:.2f} s; {stored:,.0f} MiB as stored "
        f"({as_int64:,.0f} MiB as int64, what each process held before)"
    )
    print()
    print("| process | RSS growth | PSS growth | USS growth |")
    print("|---|---:|---:|---:|")
    for rank, (rss, pss, uss) in enumerate(reports):
        print(f"| {rank} | {rss:,.0f} MiB | {pss:,.0f} MiB | {uss:,.0f} MiB |")
    total = sum(pss for _, pss, _ in reports)
    further = max(uss for _, _, uss in reports)
    print()
    print(
        f"The machine's memory grew by about {total:,.0f} MiB for {len(reports)} processes "
        f"(the sum of PSS): the first process {stored + further:,.0f} MiB at most (the mapped "
        f"file and its own pages), each further one {further:,.0f} MiB at most (its own pages)."
    )


if __name__ == "__main__":
    main()
