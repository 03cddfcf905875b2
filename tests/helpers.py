"""What the tests share: tiny MNLI-layout corpora, vocabularies and BERT configs made on the
fly, and helpers for runs (killing one mid-way, counting teacher calls, recording writes).

Nothing here reads data from outside the repository; every file is generated in a
temporary directory so the tests run offline and leave nothing behind.
"""

import csv
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import torch

from modeling import BertForGLUESimple
from pipeline.model_config import parse_model_config
from utils_glue import MNLI_DEV_COLUMNS, MNLI_LABELS, MNLI_TEST_COLUMNS, MNLI_TRAIN_COLUMNS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# A tiny world: subjects, verbs and places; labels follow simple rules so a model can learn them.
SUBJECTS = ["dog", "cat", "man", "woman", "child", "bird"]
VERBS = ["runs", "sleeps", "eats", "sings", "waits", "reads"]
PLACES = ["park", "house", "garden", "street", "kitchen", "school"]
WORDS = sorted(
    {
        "a",
        "the",
        "in",
        "not",
        "does",
        "run",
        "sleep",
        "eat",
        "sing",
        "wait",
        "read",
        '"',
        "'",
        ".",
        ",",
        "quietly",
        "today",
    }
    | set(SUBJECTS)
    | set(VERBS)
    | set(PLACES)
)

TRAIN_HEADER, DEV_HEADER = list(MNLI_TRAIN_COLUMNS), list(MNLI_DEV_COLUMNS)
TEST_HEADER = list(MNLI_TEST_COLUMNS)
LABELS = list(MNLI_LABELS)


def make_pair(rng, label=None):
    """One premise/hypothesis pair whose label is decided by a rule (drawn, unless given)."""
    subject, verb, place = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(PLACES)
    premise = f"the {subject} {verb} in the {place} ."
    label = label or rng.choice(LABELS)
    if label == "entailment":
        hypothesis = f"a {subject} {verb} ."
    elif label == "contradiction":
        hypothesis = f"the {subject} does not {verb[:-1]} ."
    else:
        hypothesis = f"the {subject} {verb} quietly today ."
    return premise, hypothesis, label


def mnli_row(index, premise, hypothesis, label, dev):
    parse_a, parse_b = f"( {premise} )", f"( {hypothesis} )"
    row = [
        str(index),
        str(1000 + index),
        f"{1000 + index}e",
        "fiction",
        parse_a,
        parse_b,
        f"(ROOT {premise})",
        f"(ROOT {hypothesis})",
        premise,
        hypothesis,
        label,
    ]
    if dev:
        row += [label, label, "", ""]  # real dev files leave unused annotator columns empty
    return row + [label]


def write_mnli_file(path, pairs, dev):
    header = DEV_HEADER if dev else TRAIN_HEADER
    lines = ["\t".join(header)]
    lines += ["\t".join(mnli_row(i, *pair, dev=dev)) for i, pair in enumerate(pairs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def mismatched_size(n_dev):
    """dev_mismatched.tsv's size: three quarters of dev_matched's, so that a swap of the two
    dev sets shows in every count (their contents differ too: they are drawn one after the other)."""
    return max(1, 3 * n_dev // 4)


def write_tiny_mnli(root, n_train=64, n_dev=24, seed=0):
    """Write MNLI/{train,dev_matched,dev_mismatched}.tsv under root and return the MNLI dir:
    n_dev pairs in dev_matched, mismatched_size(n_dev) in dev_mismatched."""
    rng = random.Random(seed)
    data_dir = root / "MNLI"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_mnli_file(data_dir / "train.tsv", [make_pair(rng) for _ in range(n_train)], dev=False)
    write_mnli_file(data_dir / "dev_matched.tsv", [make_pair(rng) for _ in range(n_dev)], dev=True)
    write_mnli_file(
        data_dir / "dev_mismatched.tsv", [make_pair(rng) for _ in range(mismatched_size(n_dev))], dev=True
    )
    return data_dir


def write_counted_mnli(root, counts, seed=0):
    """MNLI/{file} under root for each file of counts ({file name: {label: how many pairs}}), the
    labels in a shuffled order; returns the MNLI folder. A model that always answers one label
    scores its share of that file, counted by hand from counts."""
    rng = random.Random(seed)
    data_dir = root / "MNLI"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, per_label in counts.items():
        labels = [label for label, n in per_label.items() for _ in range(n)]
        rng.shuffle(labels)
        write_mnli_file(data_dir / name, [make_pair(rng, label) for label in labels], dev=name != "train.tsv")
    return data_dir


def write_constant_classifier(path, config_file, label, num_labels=None, seed=0):
    """A complete BertForGLUESimple checkpoint at path (its encoder random, seeded) that answers
    the classifier row `label` for every input: the row weights zero, the bias one-hot. Its
    classifier has num_labels rows (default: MNLI's 3)."""
    from transformers import BertConfig

    num_labels = num_labels or len(LABELS)
    torch.manual_seed(seed)
    model = BertForGLUESimple(BertConfig.from_json_file(str(config_file)), num_labels)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(10.0 * torch.nn.functional.one_hot(torch.tensor(label), num_labels))
    torch.save(model.state_dict(), path)
    return path


def write_mnli_test_file(path, pairs):
    """An unlabelled GLUE test file (test_matched.tsv layout: the dev columns up to sentence2)."""
    lines = ["\t".join(TEST_HEADER)]
    lines += [
        "\t".join(mnli_row(i, premise, hypothesis, "", dev=False)[:10])
        for i, (premise, hypothesis, _) in enumerate(pairs)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_tiny_mnli_test(data_dir, n_test=10, seed=1):
    """test_matched.tsv and test_mismatched.tsv in data_dir; returns the true labels of each."""
    rng = random.Random(seed)
    labels = {}
    for name in ("test_matched.tsv", "test_mismatched.tsv"):
        pairs = [make_pair(rng) for _ in range(n_test)]
        write_mnli_test_file(data_dir / name, pairs)
        labels[name] = [label for _, _, label in pairs]
    return labels


def write_vocab(path, words=WORDS):
    path.write_text("\n".join(SPECIAL_TOKENS + list(words)) + "\n", encoding="utf-8")
    return path


def write_bert_config(
    path,
    num_hidden_layers=2,
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=None,
    dropout=0.0,
):
    """dropout: both dropout probabilities. Tests of random state (resume, data workers,
    torchrun, caching) set the shipped configs' 0.1, so that a moved generator shows."""
    config = {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "attention_probs_dropout_prob": dropout,
        "hidden_act": "gelu",
        "hidden_dropout_prob": dropout,
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": 64,
        "num_attention_heads": num_attention_heads,
        "num_hidden_layers": num_hidden_layers,
        "type_vocab_size": 2,
        "vocab_size": vocab_size or len(SPECIAL_TOKENS) + len(WORDS),
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def model_entry(vocab, config, checkpoint=None, **extra):
    """One model of a model config JSON (model_config.py), its paths as strings."""
    return {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": str(vocab),
        "config_file": str(config),
        "checkpoint": os.fspath(checkpoint) if isinstance(checkpoint, os.PathLike) else checkpoint,
        "tokenizer_kwargs": {"do_lower_case": True},
        **extra,
    }


def write_model_json(path, teachers, student):
    """A model config JSON at path; returns its path as a string."""
    path.write_text(json.dumps({"teachers": list(teachers), "student": student}), encoding="utf-8")
    return str(path)


def write_random_classifier(root, seed=3, **sizes):
    """A random tiny BertForGLUESimple saved as root/gs1.pkl with its JSON model config
    (root/model.json), and exported (export.py) to root/hf. Returns the three paths."""
    import torch

    from export import export_model
    from modeling import BertForGLUESimple
    from pipeline.model_config import parse_model_config
    from pipeline.trained_models import load_from_json

    root.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(root / "vocab.txt")
    config = write_bert_config(root / "config.json", **sizes)
    model_json = root / "model.json"
    model_json.write_text(
        json.dumps(
            {
                "teachers": [],
                "student": {
                    "model_type": "bert",
                    "prefix": "bert",
                    "vocab_file": str(vocab),
                    "config_file": str(config),
                    "checkpoint": None,
                },
            }
        )
    )
    torch.manual_seed(seed)
    model = BertForGLUESimple(parse_model_config(str(model_json)).student.bert_config, len(LABELS))
    torch.save(model.state_dict(), root / "gs1.pkl")
    export_model(load_from_json(str(model_json), checkpoint=str(root / "gs1.pkl")), str(root / "hf"))
    return {"json": str(model_json), "checkpoint": root / "gs1.pkl", "export": root / "hf"}


def read_repo_text(path):
    """The text of a file of the repository, path relative to its root (documentation that
    tests check: distillation/README.md, docs/reliability.md)."""
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def record_atomic_writes(monkeypatch, *modules):
    """The base names of the files written through distillation.io.atomic_path, in order; also
    where one of `modules` imported atomic_path by name."""
    import contextlib

    import distillation.io

    paths = []
    original = distillation.io.atomic_path

    @contextlib.contextmanager
    def recording(path):
        with original(path) as tmp:
            yield tmp
        paths.append(os.path.basename(path))

    for module in (distillation.io, *modules):
        monkeypatch.setattr(module, "atomic_path", recording)
    return paths


def counting_teacher_calls(calls):
    """A build_distiller for main.run that appends to `calls` at each teacher forward pass."""
    import main

    def build(args, train_config, teachers, student, matches):
        for teacher in teachers:
            teacher.register_forward_hook(lambda *_: calls.append(1))
        return main.build_distiller(args, train_config, teachers, student, matches)

    return build


def wait_for(path, process, timeout=120):
    """Poll until `path` exists, failing if `process` ends first or `timeout` seconds pass."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.002)


def kill_run_mid_way(command, output_dir, kill_steps, last_step, rng, max_delay, env=None, timeout=300):
    """Start command (a run writing gs{step}.pkl into output_dir) in a session of its own and
    SIGKILL the whole session a random 0 to max_delay seconds after gs{k}.pkl appears, k drawn
    from kill_steps. A run that reached gs{last_step}.pkl before the kill (its fast last steps
    outran it) is started again from an empty output_dir, up to three times in all."""
    for _attempt in range(3):
        kill_after = rng.choice(kill_steps)
        shutil.rmtree(output_dir, ignore_errors=True)
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(os.path.join(output_dir, f"gs{kill_after}.pkl"), process, timeout)
        time.sleep(rng.uniform(0, max_delay))  # into the state write, the evaluation or the next steps
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if not os.path.exists(os.path.join(output_dir, f"gs{last_step}.pkl")):
            return
    raise AssertionError(f"three runs reached gs{last_step}.pkl before they could be killed")


# A sitecustomize for a run in a subprocess: the disk under its checkpoint writer turns slow or
# full for the files named in the environment (the fsync of their temporary file).
DISK_HOOK = """import os, time
import distillation.io as io
slow = dict(item.split(":") for item in os.environ.get("SLOW_WRITES", "").split(",") if item)
full = set(os.environ.get("FULL_WRITES", "").split(","))
original = io.fsync_path
def fsync_path(path):
    name = os.path.basename(path)
    if name.startswith(io.TEMPORARY_PREFIX):
        name = name[len(io.TEMPORARY_PREFIX):].rsplit("-", 1)[0]
        if name in full:
            raise OSError(28, os.strerror(28), path)
        if name in slow:
            open(os.path.join(os.path.dirname(__file__), "writing-" + name), "w").close()
            time.sleep(float(slow[name]))
    original(path)
io.fsync_path = fsync_path
"""


def disk_hook_env(folder, slow=None, full=()):
    """The environment of a run whose writes of the files named in slow ({name: seconds}) take
    that much longer, each leaving folder/writing-NAME as it starts waiting, and whose writes of
    the files named in full fail as on a full disk (ENOSPC)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(DISK_HOOK)
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(folder), REPO]),
        SLOW_WRITES=",".join(f"{name}:{seconds}" for name, seconds in (slow or {}).items()),
        FULL_WRITES=",".join(full),
    )


def load_main_emd():
    """main.emd.py as a module (its name has a dot, so it cannot be imported by name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("main_emd", os.path.join(REPO, "main.emd.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main_emd(argv, **run_options):
    """main.emd.py's run in this process: main.run with its distiller and its options."""
    import main

    module = load_main_emd()
    return main.run(
        argv,
        build_distiller=run_options.pop("build_distiller", module.build_emd_distiller),
        add_options=module.add_emd_options,
        check=module.check_emd_options,
    )


# ----- GLUE's layouts, written out here from GLUE's own files (not taken from utils_glue) ------
# Each task: its folder, and per file kind (train, dev, test) the header (None: CoLA's headerless
# train/dev) and a function from (index, pair, label) to the row. A pair is (text_a, text_b).
BINARY = {"entailment": "1", "neutral": "0", "contradiction": "0"}
NLI_2 = {"entailment": "entailment", "neutral": "not_entailment", "contradiction": "not_entailment"}
SCORES = {"entailment": "4.800", "neutral": "2.400", "contradiction": "0.200"}


def single(pair):
    return pair[0] if pair[1].startswith("a ") else pair[0] + " " + pair[1]


LAYOUTS = {
    "cola": (
        "CoLA",
        None,
        ["index", "sentence"],
        lambda i, p, y: ["gj04", BINARY[y], "" if BINARY[y] == "1" else "*", single(p)],
        lambda i, p: [str(i), single(p)],
    ),
    "sst-2": (
        "SST-2",
        ["sentence", "label"],
        ["index", "sentence"],
        lambda i, p, y: [single(p), BINARY[y]],
        lambda i, p: [str(i), single(p)],
    ),
    "mrpc": (
        "MRPC",
        ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        lambda i, p, y: [BINARY[y], str(2 * i), str(2 * i + 1), *p],
        lambda i, p: [str(i), str(2 * i), str(2 * i + 1), *p],
    ),
    "sts-b": (
        "STS-B",
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ],
        ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"],
        lambda i, p, y: [
            str(i),
            "main-captions",
            "MSRvid",
            "2012test",
            f"{i:04d}",
            "none",
            "none",
            *p,
            SCORES[y],
        ],
        lambda i, p: [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", *p],
    ),
    "qqp": (
        "QQP",
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["id", "question1", "question2"],
        lambda i, p, y: [str(100 + i), str(2 * i), str(2 * i + 1), *p, BINARY[y]],
        lambda i, p: [str(100 + i), *p],
    ),
    "qnli": (
        "QNLI",
        ["index", "question", "sentence", "label"],
        ["index", "question", "sentence"],
        lambda i, p, y: [str(i), *p, NLI_2[y]],
        lambda i, p: [str(i), *p],
    ),
    "rte": (
        "RTE",
        ["index", "sentence1", "sentence2", "label"],
        ["index", "sentence1", "sentence2"],
        lambda i, p, y: [str(i), *p, NLI_2[y]],
        lambda i, p: [str(i), *p],
    ),
    "wnli": (
        "WNLI",
        ["index", "sentence1", "sentence2", "label"],
        ["index", "sentence1", "sentence2"],
        lambda i, p, y: [str(i), *p, BINARY[y]],
        lambda i, p: [str(i), *p],
    ),
}
N_TRAIN, N_DEV, N_TEST = 48, 21, 9  # write_glue_task's sizes (MNLI's dev_mismatched: N_DEV - 8)


def write_rows(path, header, rows, bom=False):
    lines = ([header] if header else []) + rows
    text = "".join("\t".join(row) + "\n" for row in lines)
    path.write_text("\ufeff" * bom + text, encoding="utf-8")


def write_glue_task(root, task, seed=0):
    """GLUE's folder of the task under root, with train, dev (MNLI: two, of different sizes) and
    test files of generated pairs."""
    rng = random.Random(seed)
    if task == "mnli":
        folder = root / "MNLI"
        folder.mkdir(parents=True)
        for name, n, header in (
            ("train.tsv", N_TRAIN, TRAIN_HEADER),
            ("dev_matched.tsv", N_DEV, DEV_HEADER),
            ("dev_mismatched.tsv", N_DEV - 8, DEV_HEADER),
        ):
            write_rows(
                folder / name,
                header,
                [mnli_row(i, *make_pair(rng), dev=name != "train.tsv") for i in range(n)],
            )
        for name in ("test_matched.tsv", "test_mismatched.tsv"):
            write_rows(
                folder / name,
                TEST_HEADER,
                [mnli_row(i, *make_pair(rng), dev=False)[:10] for i in range(N_TEST)],
            )
        return folder
    folder_name, header, test_header, labelled, unlabelled = LAYOUTS[task]
    folder = root / folder_name
    folder.mkdir(parents=True)
    for name, n in (("train.tsv", N_TRAIN), ("dev.tsv", N_DEV)):
        pairs = [make_pair(rng) for _ in range(n)]
        rows = [labelled(i, (a, b), y) for i, (a, b, y) in enumerate(pairs)]
        if task == "qqp" and name == "train.tsv":
            rows.insert(3, ["9999", "1", "2", "a question with no pair"])  # QQP's train.tsv has such rows
        # GLUE's MRPC files begin with the byte-order mark of the files they were made from.
        write_rows(folder / name, header, rows, bom=task == "mrpc")
    write_rows(folder / "test.tsv", test_header, [unlabelled(i, make_pair(rng)[:2]) for i in range(N_TEST)])
    return folder


# ----- GLUE as the Hub's nyu-mll/glue lays it out, made from GLUE's files (pipeline/hub_dataset.py) ---
# nyu-mll/glue as its dataset card describes it: configuration, text columns, the ClassLabel's
# names in the order of their numbers (None: a float32 score).
HUB = {
    "cola": ("cola", ("sentence",), ("unacceptable", "acceptable")),
    "sst-2": ("sst2", ("sentence",), ("negative", "positive")),
    "mrpc": ("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "sts-b": ("stsb", ("sentence1", "sentence2"), None),
    "qqp": ("qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
    "mnli": ("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction")),
    "qnli": ("qnli", ("question", "sentence"), ("entailment", "not_entailment")),
    "rte": ("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "wnli": ("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment")),
}
# What GLUE's files mean by 0 and 1: CoLA 1 acceptable, SST-2 1 positive, MRPC 1 equivalent,
# QQP 1 duplicate, WNLI 1 entailment.
MEANING = {
    "cola": ("unacceptable", "acceptable"),
    "sst-2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "wnli": ("not_entailment", "entailment"),
}
# The splits on the Hub and GLUE's files they hold.
SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
MNLI_SPLITS = {
    "train": "train.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
    "test_matched": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}
# Where GLUE's files keep (text_a, text_b, label) and a test file (index, text_a, text_b).
FILE_COLUMNS = {
    "cola": ((3, None, 1), ("index", "sentence", None)),
    "sst-2": (("sentence", None, "label"), ("index", "sentence", None)),
    "mrpc": (("#1 String", "#2 String", "Quality"), ("index", "#1 String", "#2 String")),
    "sts-b": (("sentence1", "sentence2", "score"), ("index", "sentence1", "sentence2")),
    "qqp": (("question1", "question2", "is_duplicate"), ("id", "question1", "question2")),
    "mnli": (("sentence1", "sentence2", "gold_label"), ("index", "sentence1", "sentence2")),
    "qnli": (("question", "sentence", "label"), ("index", "question", "sentence")),
    "rte": (("sentence1", "sentence2", "label"), ("index", "sentence1", "sentence2")),
    "wnli": (("sentence1", "sentence2", "label"), ("index", "sentence1", "sentence2")),
}


def read_rows(path, task, test):
    """The rows of one of GLUE's files, read with the csv module: (a, b, label) or (index, a, b);
    rows shorter than the header (QQP's) are left out, as the Hub leaves them out."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    columns = FILE_COLUMNS[task][1 if test else 0]
    if isinstance(columns[0], str) or test:
        header, rows = rows[0], rows[1:]
        rows = [dict(zip(header, row)) for row in rows if len(row) == len(header)]
    return [tuple(row[c] if c is not None else None for c in columns) for row in rows]


def hub_dataset(task, folder, names=None):
    """The Hub's layout of the task from GLUE's files in folder: its columns, its ClassLabel
    numbering (or `names`, another order), -1 and the file's index in the test splits."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    _, texts, hub_names = HUB[task]
    names = names or hub_names
    label = ClassLabel(names=list(names)) if names else Value("float32")
    features = Features({**{c: Value("string") for c in texts}, "label": label, "idx": Value("int32")})
    splits = {}
    for split, file in (MNLI_SPLITS if task == "mnli" else SPLITS).items():
        test = split.startswith("test")
        rows = read_rows(folder / file, task, test)
        if test:
            index, a, b = zip(*rows)
            labels, index = [-1] * len(rows), [int(i) for i in index]
        else:
            a, b, gold = zip(*rows)
            labels = [number_of(task, y, names) for y in gold]
            index = list(range(len(rows)))
        values = {texts[0]: list(a), **({texts[1]: list(b)} if len(texts) > 1 else {})}
        splits[split] = Dataset.from_dict({**values, "label": labels, "idx": index}, features=features)
    return DatasetDict(splits)


def number_of(task, label, names):
    """A file's label as the dataset numbers it: by its name (GLUE's 0/1 by what they mean)."""
    if names is None:
        return float(np.float32(label))
    return names.index(MEANING[task][int(label)] if task in MEANING else label)


def write_parquet_folder(dataset, root, config):
    """The Hub's files: root/<configuration>/<split>-00000-of-00001.parquet."""
    (root / config).mkdir(parents=True)
    for split, data in dataset.items():
        data.to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
    return root


# The commit the fake Hub cache below claims to hold (any 40 hex digits).
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hub_cache(cache_dir, repo_id, config, parquet_folder):
    """What load_dataset(repo_id, config) leaves in HF_DATASETS_CACHE after a download (arrow
    files in <namespace>___<name>/<config>/0.0.0/<commit>/), made here from parquet_folder's
    files without a network: with HF_DATASETS_OFFLINE=1 the dataset is then read from it."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    namespace, name = repo_id.split("/")
    files = {
        path.name.split("-")[0]: str(path) for path in sorted((parquet_folder / config).glob("*.parquet"))
    }
    builder = Parquet(cache_dir=str(cache_dir), dataset_name=name, config_name=config, config_id=config,
                      hash=HUB_COMMIT, data_files=files)  # fmt: skip
    builder.download_and_prepare()
    # The builder names its folder after the dataset alone; the Hub's, after its namespace too.
    os.rename(cache_dir / name, cache_dir / f"{namespace}___{name}")


# ----- a tiny BertForGLUESimple and a batch for it (test_modeling.py, test_checkpoints.py) -----
NUM_LABELS = 3
BATCH, LENGTH = 4, 7  # make_batch's shape


def model_bert_config(tmp_path):
    """The BertConfig of write_bert_config, read through a model config JSON as main.py reads it."""
    vocab = write_vocab(tmp_path / "vocab.txt")
    path = write_bert_config(tmp_path / "bert_config.json")
    student = {
        "model_type": "bert",
        "prefix": "bert",
        "vocab_file": str(vocab),
        "config_file": str(path),
        "checkpoint": None,
    }
    return parse_model_config({"student": student}).student.bert_config


def make_model(config, seed=0, **outputs):
    torch.manual_seed(seed)
    return BertForGLUESimple(config, NUM_LABELS, **outputs).eval()


def make_batch(config, seed=1):
    generator = torch.Generator().manual_seed(seed)
    attention_mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    attention_mask[1, 5:] = 0  # one padded row
    return {
        "input_ids": torch.randint(0, config.vocab_size, (BATCH, LENGTH), generator=generator),
        "attention_mask": attention_mask,
        "token_type_ids": torch.cat([torch.zeros(BATCH, 3), torch.ones(BATCH, LENGTH - 3)], dim=1).long(),
        "labels": torch.tensor([0, 1, 2, 1]),
    }


def encoder_keys(model):
    return sorted(key for key in model.state_dict() if key.startswith("bert."))


def assert_same_weights(model_a, model_b, keys):
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    for key in keys:
        assert torch.equal(state_a[key], state_b[key]), key


# ----- TensorBoard's event files (distillation/loss_log.py) ------------------------------------
TENSORBOARD_REASON = "the tensorboard package is not installed (requirements-test.txt installs it)"


def has_tensorboard():
    return importlib.util.find_spec("tensorboard") is not None


def event_files(folder):
    """The TensorBoard event files in folder (events.out.tfevents.<second>.<host>.<pid>.<n>)."""
    return sorted(name for name in os.listdir(folder) if name.startswith("events.out.tfevents."))


def tensorboard_scalars(folder):
    """{tag: [(step, value), ...]} of the event files in folder, as TensorBoard reads them: its
    own reader (EventAccumulator), the files in name order, a restart's purge mark hiding the
    later steps of the files before it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every value
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }
