"""The student's size and speed next to the teacher's, in one run.

    python -m tools.speed                                  # bert-base-shaped teacher vs T4-tiny, random weights
    python -m tools.speed --teacher teacher-hf --student student-hf \
        --dev_file MNLI/dev_matched.tsv                    # exported folders; int8 accuracy checked

A model is a BERT config JSON (random weights) or an exported folder (export.py). Rows: the
teacher, the student and the student quantized to int8 (weights int8, activations quantized
on the fly; CPU only), each measured in a fresh process so that its peak memory is its own:
parameters, file size, median latency of one pair (batch 1), throughput at --batch_size pairs
per forward, peak memory; on a GPU as well when there is one.
"""

import argparse
import concurrent.futures
import io
import json
import multiprocessing
import os
import platform
import resource
import statistics
import time
import warnings

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TEACHER = "bert-base"  # 12 layers x 768, built here: no file to download
DEFAULT_STUDENT = os.path.join(REPO, "jsons", "bert_config_L4t.json")
BERT_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
}
INT8_METHODS = ("dynamic", "torchao")


def build_model(spec):
    """(model in eval mode, its file size in bytes, vocab_size) from a config JSON, an exported
    folder or 'bert-base'."""
    from transformers import BertConfig

    from modeling import BertForGLUESimple
    from pipeline.trained_models import load_exported
    from utils_glue import LABELS

    if os.path.isdir(spec):
        trained = load_exported(spec)
        size = os.path.getsize(os.path.join(spec, "model.safetensors"))
        return trained.model, size, trained.bert_config.vocab_size
    config = BertConfig(**BERT_BASE) if spec == DEFAULT_TEACHER else BertConfig.from_json_file(spec)
    torch.manual_seed(0)
    model = BertForGLUESimple(config, len(LABELS)).eval()
    return model, saved_size(model), config.vocab_size


def saved_size(model):
    """Bytes of the model's state_dict as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def quantize(model, method):
    """The model with its Linear layers in int8 (the embeddings stay float)."""
    if method == "dynamic":
        with warnings.catch_warnings():  # deprecated in favour of torchao, see docs/using_the_student.md
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        raise SystemExit("--int8 torchao needs torchao: pip install torchao") from None
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@torch.no_grad()
def timings(model, vocab_size, batch_size, length, repeats, device):
    """Seconds of each of `repeats` forwards of a random (batch_size, length) batch, after one warm-up."""
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(5, vocab_size, (batch_size, length), generator=generator),
        "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
        "token_type_ids": torch.zeros(batch_size, length, dtype=torch.long),
    }
    inputs = {key: value.to(device) for key, value in inputs.items()}
    seconds = []
    for _ in range(repeats + 1):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(**inputs)
        if device != "cpu":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def dev_accuracy(model, spec, dev_file, length):
    from pipeline.data import feature_batches
    from pipeline.evaluation import predict_labels
    from pipeline.trained_models import load_exported
    from utils_glue import LABELS, convert_examples_to_features, read_mnli_tsv

    features = convert_examples_to_features(
        read_mnli_tsv(dev_file), LABELS, length, load_exported(spec).tokenizer
    )
    preds, labels = predict_labels(model, feature_batches(features, 64), "cpu")
    return float((preds == labels).mean())


def measure(row):
    """One row of the table, in the (fresh) process that runs it."""
    torch.set_num_threads(row["threads"])
    from pipeline import trained_models  # noqa: F401  (their imports are not the model's memory)

    baseline = rss_bytes()
    model, size, vocab_size = build_model(row["spec"])
    parameters = sum(p.numel() for p in model.parameters())  # before int8 hides them in packed weights
    if row["int8"]:
        model = quantize(model, row["int8"])
        size = saved_size(model)
    device = row["device"]
    model.to(device)
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    latency = timings(model, vocab_size, 1, row["length"], row["repeats"], device)
    batch = timings(model, vocab_size, row["batch_size"], row["length"], row["batch_repeats"], device)
    peak = (
        torch.cuda.max_memory_allocated()
        if device != "cpu"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    )
    accuracy = (
        dev_accuracy(model, row["spec"], row["dev_file"], row["length"])
        if row["dev_file"] and device == "cpu"
        else None
    )
    return {
        "model": row["name"],
        "device": device,
        "parameters": parameters,
        "file_mb": size / 2**20,
        "latency_ms": 1000 * statistics.median(latency),
        "pairs_per_s": row["batch_size"] / statistics.median(batch),
        "peak_mb": peak / 2**20,
        "dev_acc": accuracy,
    }


def run_in_fresh_process(row):
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure, row).result()


def cpu_name():
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return names[0] if names else platform.processor()


def markdown(results, batch_size, length):
    lines = [
        f"| model | device | parameters | file (MB) | latency, batch 1 (ms) | "
        f"throughput, batch {batch_size} (pairs/s) | peak memory (MB) | dev acc |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        accuracy = f"{100 * r['dev_acc']:.2f}" if r["dev_acc"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['device']} | {r['parameters'] / 1e6:.2f} M | "
            f"{r['file_mb']:.1f} | {r['latency_ms']:.1f} | {r['pairs_per_s']:.1f} | "
            f"{r['peak_mb']:.0f} | {accuracy} |"
        )
    return (
        "\n".join(lines) + f"\n\nlength {length}; memory: CPU rows, growth of the process's "
        "peak resident memory from before the model was built; GPU rows, torch's peak allocation."
    )


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher",
        default=DEFAULT_TEACHER,
        help="A BERT config JSON, an exported folder, or bert-base (default).",
    )
    parser.add_argument(
        "--student",
        default=DEFAULT_STUDENT,
        help="A BERT config JSON or an exported folder (default: T4-tiny's config).",
    )
    parser.add_argument(
        "--int8",
        choices=INT8_METHODS + ("both", "none"),
        default="dynamic",
        help="How the int8 row is quantized (see docs/using_the_student.md).",
    )
    parser.add_argument(
        "--dev_file",
        help="A labelled MNLI file: the student's and the int8 "
        "student's accuracy on it (the student must be an exported folder).",
    )
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10, help="Timed batch-1 forwards.")
    parser.add_argument("--batch_repeats", type=int, default=3, help="Timed large-batch forwards.")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no_cuda", action="store_true")
    parser.add_argument("--json", help="Also write the rows to this JSON file.")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for role in ("teacher", "student"):
        spec = getattr(args, role)
        if spec != DEFAULT_TEACHER and not os.path.exists(spec):
            parser.exit(1, f"{parser.prog}: error: --{role} {spec}: no such config file or folder\n")
    if args.dev_file and not os.path.isdir(args.student):
        parser.exit(
            1, f"{parser.prog}: error: --dev_file needs a trained student: an exported folder as --student\n"
        )

    common = {
        "length": args.length,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "batch_repeats": args.batch_repeats,
        "threads": args.threads,
    }
    methods = {"both": INT8_METHODS, "none": ()}.get(args.int8, (args.int8,))
    rows = [
        {"name": "teacher", "spec": args.teacher, "int8": None, "dev_file": None},
        {"name": "student", "spec": args.student, "int8": None, "dev_file": args.dev_file},
    ]
    rows += [
        {"name": f"student int8 ({method})", "spec": args.student, "int8": method, "dev_file": args.dev_file}
        for method in methods
    ]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])
    results = [
        run_in_fresh_process({**common, **row, "device": device})
        for device in devices
        for row in rows
        if device == "cpu" or not row["int8"]
    ]
    print(
        f"CPU: {cpu_name()}, {args.threads} threads"
        + (f"; GPU: {torch.cuda.get_device_name()}" if "cuda" in devices else "")
    )
    print(markdown(results, args.batch_size, args.length))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
