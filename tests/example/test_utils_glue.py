"""The MNLI reader, the MNLI task, compute_metrics and the encoding of pairs into features
(the other GLUE tasks and custom files: test_tasks.py)."""

import logging

import numpy as np
import pytest
import torch
from transformers import BertTokenizer

from tests.helpers import (
    DEV_HEADER,
    LABELS,
    SPECIAL_TOKENS,
    TRAIN_HEADER,
    WORDS,
    mnli_row,
    write_tiny_mnli,
    write_vocab,
)
from utils_glue import InputExample, compute_metrics, convert_examples_to_features, get_task, read_mnli_tsv

# Quote characters are plain text in MNLI; an unbalanced one must not swallow the next rows.
QUOTED_PAIRS = [
    ('he said "stop" twice .', "nobody spoke .", "contradiction"),
    ("it's the dog's park .", "a dog has a park .", "entailment"),
    ('the sign read "closed', "the shop was open ' today", "neutral"),
    ('"', "'", "entailment"),
]


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_rows(path, pairs, dev):
    header = DEV_HEADER if dev else TRAIN_HEADER
    rows = [mnli_row(i, *pair, dev=dev) for i, pair in enumerate(pairs)]
    return write_lines(path, ["\t".join(header)] + ["\t".join(row) for row in rows])


@pytest.fixture
def tokenizer(tmp_path):
    return BertTokenizer(vocab=str(write_vocab(tmp_path / "vocab.txt")), do_lower_case=True)


# ----- reader -----


@pytest.mark.parametrize("dev", [False, True])
def test_reader_returns_quoted_text_literally(tmp_path, dev):
    path = write_rows(tmp_path / ("dev_matched.tsv" if dev else "train.tsv"), QUOTED_PAIRS, dev)
    examples = read_mnli_tsv(str(path))
    prefix = "dev_matched" if dev else "train"
    assert examples == [
        InputExample(f"{prefix}-{i}", a, b, label) for i, (a, b, label) in enumerate(QUOTED_PAIRS)
    ]


def test_tiny_corpus_has_12_and_16_columns_with_empty_fields(tiny_mnli):
    train_line = (tiny_mnli / "train.tsv").read_text().splitlines()[1]
    dev_line = (tiny_mnli / "dev_matched.tsv").read_text().splitlines()[1]
    assert len(train_line.split("\t")) == 12 and len(dev_line.split("\t")) == 16
    assert "\t\t" in dev_line  # the unused annotator columns are empty
    assert len(read_mnli_tsv(str(tiny_mnli / "dev_matched.tsv"))) == 24


def test_gold_label_comes_from_the_gold_label_column(tmp_path):
    row = mnli_row(7, "a cat sleeps .", "a cat runs .", "neutral", dev=True)
    row[-1] = "contradiction"  # label1..label3 say neutral, the gold column says otherwise
    path = write_lines(tmp_path / "dev_matched.tsv", ["\t".join(DEV_HEADER), "\t".join(row)])
    [example] = read_mnli_tsv(str(path))
    assert (example.guid, example.label) == ("dev_matched-7", "contradiction")


def test_pairs_without_consensus_are_skipped_and_counted(tmp_path, caplog):
    pairs = [
        ("a .", "b .", "entailment"),
        ("c .", "d .", "-"),
        ("e .", "f .", "-"),
        ("g .", "h .", "neutral"),
    ]
    path = write_rows(tmp_path / "train.tsv", pairs, dev=False)
    with caplog.at_level(logging.INFO, logger="utils_glue"):
        examples = read_mnli_tsv(str(path))
    assert [(e.guid, e.text_a) for e in examples] == [("train-0", "a ."), ("train-3", "g .")]
    assert "skipped 2 examples labelled '-'" in caplog.text


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.tsv: data file not found"):
        read_mnli_tsv(str(tmp_path / "nothere.tsv"))


def test_empty_file(tmp_path):
    path = write_lines(tmp_path / "train.tsv", [])
    with pytest.raises(ValueError, match=r"train\.tsv: empty file, expected a header row"):
        read_mnli_tsv(str(path))


def test_header_without_needed_columns(tmp_path):
    header = [name for name in TRAIN_HEADER if name not in ("sentence2", "gold_label")]
    path = write_lines(tmp_path / "train.tsv", ["\t".join(header)])
    with pytest.raises(
        ValueError,
        match=r"train\.tsv, line 1: the header lacks the column\(s\) "
        r"sentence2, gold_label",
    ):
        read_mnli_tsv(str(path))


def test_row_with_too_few_columns(tmp_path):
    good = mnli_row(0, "a .", "b .", "neutral", dev=False)
    path = write_lines(
        tmp_path / "train.tsv", ["\t".join(TRAIN_HEADER), "\t".join(good), "\t".join(good[:9])]
    )
    with pytest.raises(
        ValueError,
        match=r"train\.tsv, line 3: expected 12 tab-separated "
        r"columns as in the header, found 9",
    ):
        read_mnli_tsv(str(path))


def test_unknown_gold_label(tmp_path):
    path = write_rows(tmp_path / "train.tsv", [("a .", "b .", "neutral"), ("c .", "d .", "maybe")], dev=False)
    with pytest.raises(
        ValueError,
        match=r"train\.tsv, line 3: unknown gold_label 'maybe', expected "
        r"one of contradiction, entailment, neutral",
    ):
        read_mnli_tsv(str(path))


def test_header_without_rows(tmp_path):
    path = write_rows(tmp_path / "train.tsv", [], dev=False)
    with pytest.raises(ValueError, match=r"train\.tsv: no examples"):
        read_mnli_tsv(str(path))


# ----- processors and metrics -----


def test_the_mnli_task_reads_its_files(tmp_path):
    data_dir = write_tiny_mnli(tmp_path, n_train=10, n_dev=6, seed=3)
    task = get_task("MNLI")
    assert task.get_labels() == LABELS and task.dev_sets == {
        "mnli": "dev_matched.tsv",
        "mnli-mm": "dev_mismatched.tsv",
    }
    assert [e.guid for e in task.get_train_examples(data_dir)] == [f"train-{i}" for i in range(10)]

    def texts(name):
        return [line.split("\t")[8] for line in (data_dir / name).read_text().splitlines()[1:]]

    assert [e.text_a for e in task.get_examples(data_dir, "mnli")] == texts("dev_matched.tsv")
    assert [e.text_a for e in task.get_examples(data_dir, "mnli-mm")] == texts("dev_mismatched.tsv")
    assert task.get_examples(data_dir, "mnli-mm")[0].guid == "dev_mismatched-0"
    with pytest.raises(ValueError, match="unknown split 'test'"):
        task.data_file(data_dir, "test")


# The original's processors: each name, its output mode and its labels, written out here.
ORIGINAL_PROCESSORS = {
    "cola": ("classification", ["0", "1"]),
    "mnli": ("classification", ["contradiction", "entailment", "neutral"]),
    "mnli-mm": ("classification", ["contradiction", "entailment", "neutral"]),
    "mrpc": ("classification", ["0", "1"]),
    "sst-2": ("classification", ["0", "1"]),
    "sts-b": ("regression", [None]),
    "qqp": ("classification", ["0", "1"]),
    "qnli": ("classification", ["entailment", "not_entailment"]),
    "rte": ("classification", ["entailment", "not_entailment"]),
    "wnli": ("classification", ["0", "1"]),
}


def test_the_originals_processors_and_output_modes(tmp_path, tokenizer):
    """`from utils_glue import processors, output_modes` as the original's main.py and its
    users' scripts use them: processors[task_name](), its get_labels, get_train_examples and
    get_dev_examples, output_modes[task_name]; mnli-mm reads dev_mismatched.tsv."""
    from tests.helpers import N_DEV, N_TRAIN, write_glue_task
    from utils_glue import GLUE_TASKS_NUM_LABELS, output_modes, processors

    assert sorted(processors) == sorted(output_modes) == sorted(ORIGINAL_PROCESSORS)
    for task_name, (output_mode, labels) in ORIGINAL_PROCESSORS.items():
        task = task_name.removesuffix("-mm")
        data_dir = write_glue_task(tmp_path / task_name, task)
        processor = processors[task_name]()
        assert output_modes[task_name] == output_mode
        label_list = processor.get_labels()
        assert label_list == labels and len(label_list) == GLUE_TASKS_NUM_LABELS[task]
        assert len(processor.get_train_examples(data_dir)) == N_TRAIN
        dev = processor.get_dev_examples(data_dir)
        assert len(dev) == (N_DEV - 8 if task_name == "mnli-mm" else N_DEV)  # MNLI's two sizes
        if output_mode == "classification":
            assert {example.label for example in dev} <= set(label_list)
        else:
            assert all(0 <= example.label <= 5 for example in dev)
    # MNLI's dev sets, read and scored as the original's predict() did: each its own file.
    data_dir = tmp_path / "mnli" / "MNLI"
    for task_name, file in (("mnli", "dev_matched.tsv"), ("mnli-mm", "dev_mismatched.tsv")):
        rows = [line.split("\t") for line in (data_dir / file).read_text().splitlines()[1:]]
        dev = processors[task_name]().get_dev_examples(data_dir)
        assert [(e.text_a, e.text_b, e.label) for e in dev] == [(row[8], row[9], row[-1]) for row in rows]
        features = convert_examples_to_features(dev, processors[task_name]().get_labels(), 24, tokenizer)
        always_entailment = np.ones(len(dev), dtype=np.int64)  # row 1 of the original's order
        share = [row[-1] for row in rows].count("entailment") / len(rows)
        assert compute_metrics(task_name, always_entailment, features["labels"].numpy()) == {
            "acc": pytest.approx(share)
        }


def test_compute_metrics():
    assert compute_metrics("mnli", [0, 1, 2, 2], [0, 1, 1, 2]) == {"acc": 0.75}
    result = compute_metrics("mnli-mm", np.array([2, 0, 1]), np.array([1, 1, 1]))
    assert result == {"acc": pytest.approx(1 / 3)} and isinstance(result["acc"], float)
    with pytest.raises(KeyError, match="unknown task 'sst-3'"):
        compute_metrics("sst-3", [0], [0])
    with pytest.raises(ValueError, match="same non-empty shape"):
        compute_metrics("mnli", [0, 1], [0])


# ----- features -----


def test_token_ids_follow_the_vocab_file(tmp_path):
    """Each token's id is its 0-based line in the vocab file (transformers 5's vocab_file trap)."""
    tokens = SPECIAL_TOKENS + list(reversed(WORDS))  # an order no default vocabulary has
    vocab = write_vocab(tmp_path / "reversed_vocab.txt", words=list(reversed(WORDS)))
    tokenizer = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    assert tokenizer.convert_tokens_to_ids(tokens) == list(range(len(tokens)))
    line = {token: i for i, token in enumerate(vocab.read_text().splitlines())}
    example = InputExample("train-0", "The dog", "a park", "neutral")
    features = convert_examples_to_features([example], LABELS, 8, tokenizer)
    expected = [line[t] for t in ["[CLS]", "the", "dog", "[SEP]", "a", "park", "[SEP]", "[PAD]"]]
    assert features["input_ids"].tolist() == [expected]


def test_features_equal_the_tokenizers_encoding(tokenizer):
    examples = [
        InputExample(f"train-{i}", a, b, label)
        for i, (a, b, label) in enumerate(
            [
                ("the dog runs in the park .", "a dog runs .", "entailment"),
                ('the cat said "read" .', "the cat does not read .", "contradiction"),
                ("a bird", "the bird sings quietly today .", "neutral"),
            ]
        )
    ]
    max_len = 20
    features = convert_examples_to_features(examples, LABELS, max_len, tokenizer, chunk_size=2)
    assert set(features) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert all(t.dtype == torch.int64 for t in features.values())
    assert features["labels"].tolist() == [1, 0, 2]
    for row, example in enumerate(examples):
        ids = tokenizer.encode(example.text_a, example.text_b)
        first_segment = len(tokenizer.tokenize(example.text_a)) + 2  # [CLS] a [SEP]
        padding = max_len - len(ids)
        assert features["input_ids"][row].tolist() == ids + [tokenizer.pad_token_id] * padding
        assert features["attention_mask"][row].tolist() == [1] * len(ids) + [0] * padding
        assert features["token_type_ids"][row].tolist() == (
            [0] * first_segment + [1] * (len(ids) - first_segment) + [0] * padding
        )


def test_long_pair_is_cut_from_the_longer_segment(tokenizer):
    premise = " ".join(["the dog runs in the park"] * 4)  # 24 word tokens
    example = InputExample("train-0", premise, "a cat sleeps", "neutral")
    features = convert_examples_to_features([example], LABELS, 12, tokenizer)
    kept = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(premise))[: 12 - 3 - 3]
    hypothesis = tokenizer.convert_tokens_to_ids(["a", "cat", "sleeps"])
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert features["input_ids"][0].tolist() == [cls] + kept + [sep] + hypothesis + [sep]
    assert features["attention_mask"][0].tolist() == [1] * 12
    assert features["token_type_ids"][0].tolist() == [0] * 8 + [1] * 4

    swapped = InputExample("train-1", "a cat sleeps", premise, "neutral")
    features = convert_examples_to_features([swapped], LABELS, 12, tokenizer)
    assert features["input_ids"][0].tolist() == [cls] + hypothesis + [sep] + kept + [sep]


def test_chunks_give_the_same_features(tokenizer, tiny_mnli):
    examples = get_task("mnli").get_train_examples(tiny_mnli)
    whole = convert_examples_to_features(examples, LABELS, 16, tokenizer)
    chunked = convert_examples_to_features(examples, LABELS, 16, tokenizer, chunk_size=7)
    assert all(torch.equal(whole[key], chunked[key]) for key in whole)
    assert whole["input_ids"].shape == (64, 16)
    assert whole["labels"].tolist() == [LABELS.index(e.label) for e in examples]


def test_unknown_label_in_features(tokenizer):
    example = InputExample("dev_matched-4", "a", "b", "maybe")
    with pytest.raises(ValueError, match="example dev_matched-4: label 'maybe' is not one of"):
        convert_examples_to_features([example], LABELS, 8, tokenizer)


def test_qqp_rows_with_missing_fields_are_skipped_and_counted(tmp_path, caplog):
    from tests.helpers import N_TRAIN, write_glue_task

    folder = write_glue_task(tmp_path, "qqp")  # its train.tsv holds one row of 4 fields
    with caplog.at_level(logging.WARNING, logger="utils_glue"):
        examples = get_task("qqp").get_train_examples(folder)
    assert len(examples) == N_TRAIN and "skipped 1 rows with fewer columns" in caplog.text


def test_mrpcs_byte_order_mark_is_not_part_of_the_header(tmp_path):
    from tests.helpers import N_TRAIN, write_glue_task

    folder = write_glue_task(tmp_path, "mrpc")
    assert (folder / "train.tsv").read_bytes().startswith("\ufeffQuality".encode())
    assert len(get_task("mrpc").get_train_examples(folder)) == N_TRAIN
