"""A teacher with another vocabulary than the student's reads the same examples encoded by its
own tokenizer, and teaches through its logits (intermediate matches are refused: test_errors.py)."""

import json

import pytest
import torch
from transformers import BertConfig, BertTokenizer

import main
from modeling import BertForGLUESimple
from tests.helpers import (
    WORDS,
    model_entry,
    write_bert_config,
    write_model_json,
    write_tiny_mnli,
    write_vocab,
)
from utils_glue import get_task

LENGTH = 24


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_vocabulary")
    # The teacher's vocabulary: the same words in another order, and two more (other ids).
    files = {
        "data": write_tiny_mnli(root / "data", n_train=24, n_dev=8),
        "vocab_S": write_vocab(root / "student_vocab.txt"),
        "vocab_T": write_vocab(root / "teacher_vocab.txt", words=["zebra", "yak"] + WORDS[::-1]),
        "config_S": write_bert_config(
            root / "student.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32
        ),
        "config_T": write_bert_config(
            root / "teacher.json", num_hidden_layers=2, hidden_size=32, vocab_size=48
        ),
    }
    torch.manual_seed(0)
    teacher = BertForGLUESimple(BertConfig.from_json_file(str(files["config_T"])), 3)
    torch.save(teacher.state_dict(), root / "teacher.pkl")
    files["json"] = write_model_json(
        root / "distill.json",
        [model_entry(files["vocab_T"], files["config_T"], root / "teacher.pkl")],
        model_entry(files["vocab_S"], files["config_S"]),
    )
    return files


def encoded_rows(vocab, examples):
    """Each example's token ids as that vocabulary's tokenizer encodes it, without padding."""
    tokenizer = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    return {tuple(tokenizer(e.text_a, e.text_b)["input_ids"]) for e in examples}


def test_each_model_reads_its_own_encoding_of_the_same_examples(files, tmp_path):
    seen = {"teacher": [], "student": []}

    def recorder(side):
        def record(module, args, kwargs, output):
            if module.training or side == "teacher":
                for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]):
                    seen[side].append(tuple(ids[mask.bool()].tolist()))

        return record

    def build(args, train_config, teachers, student, matches):
        teachers[0].register_forward_hook(recorder("teacher"), with_kwargs=True)
        student.register_forward_hook(recorder("student"), with_kwargs=True)
        return main.build_distiller(args, train_config, teachers, student, matches)

    main.run(
        ["--data_dir", str(files["data"]), "--output_dir", str(tmp_path / "run"), "--model_config_json",
         files["json"], "--do_train", "--max_seq_length", str(LENGTH), "--train_batch_size", "8",
         "--num_train_epochs", "1", "--allow_weak_teacher", "--teacher_check_size", "4"],
        build_distiller=build,
    )  # fmt: skip
    train = get_task("mnli").get_train_examples(files["data"])
    dev = get_task("mnli").get_examples(files["data"], "mnli") + get_task("mnli").get_examples(
        files["data"], "mnli-mm"
    )
    teacher_rows, student_rows = (
        encoded_rows(files["vocab_T"], train + dev),
        encoded_rows(files["vocab_S"], train),
    )
    assert teacher_rows.isdisjoint(student_rows)  # the two vocabularies give other ids
    assert seen["teacher"] and set(seen["teacher"]) <= teacher_rows  # its check's dev pairs, then training's
    assert len(seen["student"]) == 24 and set(seen["student"]) == student_rows
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("unweighted_kd_loss" in record for record in logged)
