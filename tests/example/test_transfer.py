"""A transfer set: examples learnt from the teachers' outputs alone (no hard-label term), their
teacher logits computed once, resumable; and augment.py, which writes such a set."""

import json
import random

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

import augment
import main
from distillation import checkpoint_steps
from modeling import UNLABELLED, BertForGLUESimple
from tests.helpers import (
    LABELS,
    TRAIN_HEADER,
    counting_teacher_calls,
    make_pair,
    mnli_row,
    write_bert_config,
    write_tiny_mnli,
    write_vocab,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    files = {
        "root": root,
        "data": write_tiny_mnli(root / "data", n_train=32, n_dev=12),
        "vocab": write_vocab(root / "vocab.txt"),
        "teacher_config": write_bert_config(root / "teacher.json", num_hidden_layers=2, hidden_size=32),
        "student_config": write_bert_config(
            root / "student.json", num_hidden_layers=1, hidden_size=16, intermediate_size=32, dropout=0.1
        ),
    }
    torch.manual_seed(0)
    teacher = BertForGLUESimple(BertConfig.from_json_file(str(files["teacher_config"])), 3)
    torch.save(teacher.state_dict(), root / "teacher.pkl")
    # 20 unlabelled pairs in train.tsv's layout, their gold_label '-'.
    rng = random.Random(7)
    rows = [mnli_row(i, *make_pair(rng)[:2], "-", dev=False) for i in range(20)]
    (root / "transfer.tsv").write_text("\n".join("\t".join(r) for r in [TRAIN_HEADER] + rows) + "\n")
    model = {"model_type": "bert", "prefix": "bert", "vocab_file": str(files["vocab"])}
    (root / "distill.json").write_text(
        json.dumps(
            {
                "teachers": [
                    dict(
                        model, config_file=str(files["teacher_config"]), checkpoint=str(root / "teacher.pkl")
                    )
                ],
                "student": dict(model, config_file=str(files["student_config"]), checkpoint=None),
            }
        )
    )
    return files


def options(files, output_dir, *extra):
    return [
        "--data_dir", str(files["data"]), "--output_dir", str(output_dir),
        "--model_config_json", str(files["root"] / "distill.json"), "--do_train",
        "--max_seq_length", "24", "--train_batch_size", "8", "--num_train_epochs", "2",
        "--learning_rate", "1e-3", "--hard_label_weight", "1", "--allow_weak_teacher",
        "--transfer_file", str(files["root"] / "transfer.tsv"), *extra,
    ]  # fmt: skip


def test_unlabelled_examples_carry_no_hard_label_term():
    """The hard-label term is the mean cross-entropy of the labelled examples of the batch alone;
    a batch of transfer examples only has none (0, with zero gradients)."""
    torch.manual_seed(0)
    model = BertForGLUESimple(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16, hidden_dropout_prob=0.0), 3)  # fmt: skip
    inputs = {"input_ids": torch.randint(5, 30, (4, 6)), "attention_mask": torch.ones(4, 6, dtype=torch.long)}
    labels = torch.tensor([2, UNLABELLED, 0, UNLABELLED])
    outputs = model(**inputs, labels=labels)
    log_probs = torch.log_softmax(outputs["logits"], dim=-1)
    by_hand = -(log_probs[0, 2] + log_probs[2, 0]) / 2
    assert outputs["loss"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    none = model(**inputs, labels=torch.full((4,), UNLABELLED))["loss"]
    none.backward()
    assert none.item() == 0 and all(
        torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None
    )
    # Regression: unknown scores are NaN and left out likewise.
    regressor = BertForGLUESimple(model.config, 1)
    scores = torch.tensor([1.0, float("nan"), 3.0, float("nan")])
    loss = regressor(**inputs, labels=scores)
    predicted = loss["logits"][:, 0]
    assert loss["loss"].item() == pytest.approx(
        (((predicted[0] - 1) ** 2 + (predicted[2] - 3) ** 2) / 2).item(), rel=1e-5
    )


def test_the_transfer_pairs_reach_the_student_unlabelled(files, tmp_path):
    """What the data layer hands the student's forward pass, each epoch: every pair of train.tsv
    with its own label, every transfer pair once with UNLABELLED (not 0, contradiction's row,
    which would teach them a hard label). The pairs are told apart by their token ids, encoded
    here from the files' text; the transfer pairs' premises end in 'today', which no train
    premise holds."""
    from collections import Counter

    from transformers import BertTokenizer

    rng = random.Random(11)
    transfer = [make_pair(rng)[:2] for _ in range(20)]
    transfer = [(premise[:-1] + "today .", hypothesis) for premise, hypothesis in transfer]
    rows = [mnli_row(i, *pair, "-", dev=False) for i, pair in enumerate(transfer)]
    (tmp_path / "transfer.tsv").write_text("\n".join("\t".join(r) for r in [TRAIN_HEADER] + rows) + "\n")
    train = [line.split("\t") for line in (files["data"] / "train.tsv").read_text().splitlines()[1:]]
    tokenizer = BertTokenizer(vocab=str(files["vocab"]), do_lower_case=True)

    def ids(premise, hypothesis):
        return tuple(tokenizer(premise, hypothesis)["input_ids"])

    expected = Counter(
        [(ids(row[8], row[9]), LABELS.index(row[-1])) for row in train]
        + [(ids(*pair), UNLABELLED) for pair in transfer]
    )
    assert not {ids(*pair) for pair in transfer} & {ids(row[8], row[9]) for row in train}
    seen = []

    def build(args, train_config, teachers, student, matches):
        def record(module, args, kwargs):
            for row, mask, label in zip(kwargs["input_ids"], kwargs["attention_mask"], kwargs["labels"]):
                seen.append((tuple(row[mask.bool()].tolist()), int(label)))

        student.register_forward_pre_hook(record, with_kwargs=True)
        return main.build_distiller(args, train_config, teachers, student, matches)

    argv = options(files, tmp_path / "run", "--teacher_check_size", "0")
    argv[argv.index("--transfer_file") + 1] = str(tmp_path / "transfer.tsv")
    main.run(argv, build_distiller=build)
    epochs = 2
    assert Counter(seen) == Counter({pair: n * epochs for pair, n in expected.items()})


def test_a_transfer_set_joins_the_epoch_and_its_logits_are_computed_once(files, tmp_path):
    calls = []
    main.run(options(files, tmp_path / "run", "--cache_teacher_logits", "--teacher_check_size", "0"),
             build_distiller=counting_teacher_calls(calls))  # fmt: skip
    # 32 + 20 examples, batch 8: 7 batches an epoch; the teacher runs in epoch 1 only.
    assert len(calls) == 7
    assert checkpoint_steps(tmp_path / "run") == [7, 14]


def test_a_run_with_a_transfer_set_resumes_bit_for_bit(files, tmp_path):
    """Resumed from the state of step 7 (the end of epoch 1), the run ends as the straight one."""
    import shutil

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main.run(options(files, straight, "--ckpt_frequency", "2", "--keep_resume_states", "10"))
    shutil.copytree(straight, resumed)
    for path in resumed.iterdir():
        step = path.name.removeprefix("resume_").removeprefix("gs").split(".")[0]
        if step.isdigit() and int(step) > 7:
            path.unlink()
    main.run(options(files, resumed, "--ckpt_frequency", "2", "--keep_resume_states", "10", "--resume"))
    last = checkpoint_steps(straight)[-1]
    a = torch.load(straight / f"gs{last}.pkl", weights_only=True)
    b = torch.load(resumed / f"gs{last}.pkl", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "index\tsentence1\n0\ta dog .\n",
            r"transfer.tsv, line 1: the header lacks the column\(s\) sentence2",
        ),
        ("", "transfer.tsv: empty file"),
        ("\t".join(TRAIN_HEADER) + "\n", "transfer.tsv: no examples"),
    ],
)
def test_a_bad_transfer_file_stops_the_run_before_anything_is_written(files, tmp_path, content, message):
    bad = tmp_path / "transfer.tsv"
    bad.write_text(content)
    argv = options(files, tmp_path / "out")
    argv[argv.index("--transfer_file") + 1] = str(bad)
    with pytest.raises(ValueError, match=message):
        main.run(argv)
    assert not (tmp_path / "out").exists()


def test_a_transfer_set_needs_a_teacher(files, tmp_path):
    model_json = tmp_path / "alone.json"
    student = json.loads((files["root"] / "distill.json").read_text())["student"]
    model_json.write_text(json.dumps({"teachers": [], "student": student}))
    argv = options(files, tmp_path / "out")
    argv[argv.index("--model_config_json") + 1] = str(model_json)
    with pytest.raises(
        ValueError, match="--transfer_file .* learnt from the teachers' outputs.*enables none"
    ):
        main.run(argv)


# ----- augment.py ---------------------------------------------------------------------------------


def augment_args(files, output, *extra):
    return [
        "--model_config_json", str(files["root"] / "distill.json"), "--data_dir", str(files["data"]),
        "--output", str(output), "--n", "3", "--seed", "5", *extra,
    ]  # fmt: skip


def test_augmentation_is_deterministic_and_writes_the_train_layout(files, tmp_path):
    augment.main(augment_args(files, tmp_path / "a.tsv"))
    augment.main(augment_args(files, tmp_path / "b.tsv"))
    augment.main(augment_args(files, tmp_path / "c.tsv", "--seed", "6"))
    first = (tmp_path / "a.tsv").read_text()
    assert first == (tmp_path / "b.tsv").read_text() and first != (tmp_path / "c.tsv").read_text()
    lines = first.splitlines()
    assert lines[0].split("\t") == TRAIN_HEADER and 1 < len(lines) <= 1 + 3 * 32
    rows = [line.split("\t") for line in lines[1:]]
    assert {row[-1] for row in rows} == {"-"} and all(len(row) == len(TRAIN_HEADER) for row in rows)
    # Each new pair keeps both sentences, every word from the vocabulary, some changed.
    original = {
        line.split("\t")[0]: line.split("\t")
        for line in (files["data"] / "train.tsv").read_text().splitlines()[1:]
    }
    changed = 0
    for row in rows:
        source = original[row[0]]
        for column in (8, 9):
            assert len(row[column].split()) == len(source[column].split())
            changed += row[column] != source[column]
    assert changed > 0
    # ... and trains as a transfer set.
    main.run(options(files, tmp_path / "run") + ["--transfer_file", str(tmp_path / "a.tsv")])


# A WordPiece vocabulary with pieces ('playing' is play ##ing, 'walked' walk ##ed, 'birds'
# bird ##s), and its whole words in pairs, each word's nearest neighbour its partner.
PARTNERS = [
    ("the", "a"),
    ("dog", "cat"),
    ("bird", "park"),
    ("in", "near"),
    ("play", "jump"),
    ("walk", "sleep"),
]
PIECES = ["##ing", "##ed", "##s"]
# Each pair's every single-piece word replaced by its partner; split words and '.' as they were.
AUGMENTED = {
    ("the dog playing in the park .", "a cat walked near birds ."): (
        "a cat playing near a bird .",
        "the dog walked in birds .",
    ),
    ("birds sleeping near a dog .", "the cat jumped in the park ."): (
        "birds sleeping in the cat .",
        "a dog jumped near a bird .",
    ),
}


def test_each_single_piece_word_becomes_its_nearest_whole_word_in_the_teachers_embeddings(tmp_path):
    """augment.py --candidates 1 --replace_prob 1 on a vocabulary with real '##' pieces. In the
    teacher's embeddings every whole word lies at the centre 2 * e0 plus a unit vector of its
    own, shared in part with its partner's (its nearest whole word); the pieces, the special
    tokens and '.' lie at the centre itself, nearer still. Each word that is one whole piece
    becomes its partner; a word split into pieces and '.' stay; no '##' piece is written."""
    words = [word for pair in PARTNERS for word in pair]
    vocab = write_vocab(tmp_path / "vocab.txt", words=words + PIECES + ["."])
    tokens = vocab.read_text().splitlines()
    config = write_bert_config(tmp_path / "config.json", vocab_size=len(tokens))
    torch.manual_seed(0)
    teacher = BertForGLUESimple(BertConfig.from_json_file(str(config)), 3)
    with torch.no_grad():
        table = teacher.bert.embeddings.word_embeddings.weight
        table.zero_()
        table[:, 0] = 2.0
        for k, (first, second) in enumerate(PARTNERS):  # cosine 0.87 between partners, 0.8 others
            table[tokens.index(first), 2 * k + 1 : 2 * k + 3] = torch.tensor([1.0, 0.4]) / 1.16**0.5
            table[tokens.index(second), 2 * k + 2] = 1.0
        table[tokens.index("park")] *= 3.0  # the same cosines; by dot products, everyone's nearest
    torch.save(teacher.state_dict(), tmp_path / "teacher.pkl")
    entry = {"model_type": "bert", "prefix": "bert", "vocab_file": str(vocab), "config_file": str(config)}
    model_json = tmp_path / "model.json"
    model_json.write_text(
        json.dumps(
            {
                "teachers": [dict(entry, checkpoint=str(tmp_path / "teacher.pkl"))],
                "student": dict(entry, checkpoint=None),
            }
        )
    )
    data = tmp_path / "data"
    data.mkdir()
    rows = [mnli_row(i, *pair, "neutral", dev=False) for i, pair in enumerate(AUGMENTED)]
    (data / "train.tsv").write_text("\n".join("\t".join(r) for r in [TRAIN_HEADER] + rows) + "\n")
    augment.main(
        ["--model_config_json", str(model_json), "--data_dir", str(data), "--output", str(tmp_path / "new.tsv"),
         "--n", "1", "--replace_prob", "1", "--candidates", "1", "--seed", "3"]
    )  # fmt: skip
    new_rows = [line.split("\t") for line in (tmp_path / "new.tsv").read_text().splitlines()[1:]]
    assert [(row[8], row[9]) for row in new_rows] == list(AUGMENTED.values())


def test_special_tokens_punctuation_and_pieces_stay(files):
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab=str(files["vocab"]), do_lower_case=True)
    words = augment.Words(tokenizer)

    class Everything:  # every word's candidate is 'cat'
        def guesses(self, tokens, positions):
            return {position: ["cat"] for position in positions}

    text = "The dog [MASK] runs ,  quietly zebra ."
    new = augment.augment_text(text, words, Everything(), random.Random(0), replace_prob=1.0)
    # 'zebra' is not a whole word of the vocabulary; the rest of the text stays as it was written
    assert new == "cat cat [MASK] cat ,  cat zebra ."


def test_the_masked_lm_source(files, tmp_path):
    """A tiny generated BertForMaskedLM with the student's vocabulary; another vocabulary is refused."""
    folder = tmp_path / "mlm"
    torch.manual_seed(0)
    vocab_size = len(files["vocab"].read_text().splitlines())
    BertForMaskedLM(BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)  # fmt: skip
    (folder / "vocab.txt").write_bytes(files["vocab"].read_bytes())
    augment.main(augment_args(files, tmp_path / "mlm.tsv", "--source", "mlm", "--mlm", str(folder)))
    augment.main(augment_args(files, tmp_path / "mlm2.tsv", "--source", "mlm", "--mlm", str(folder)))
    assert (tmp_path / "mlm.tsv").read_text() == (tmp_path / "mlm2.tsv").read_text()
    assert len((tmp_path / "mlm.tsv").read_text().splitlines()) > 1
    write_vocab(folder / "vocab.txt", words=["other", "words"])
    with pytest.raises(SystemExit):
        augment.main(augment_args(files, tmp_path / "x.tsv", "--source", "mlm", "--mlm", str(folder)))
    assert not (tmp_path / "x.tsv").exists()


def test_token_ops_follow_the_word_replacements(files, tmp_path):
    augment.main(augment_args(files, tmp_path / "ops.tsv", "--token_ops", "masking,deleting"))
    text = (tmp_path / "ops.tsv").read_text()
    assert "[MASK]" in text  # the helpers' own draws are TextBrewer's (tests/core): here, their wiring
