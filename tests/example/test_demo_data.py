"""The demo corpus generator: file layout, determinism, vocabulary, label logic and the CLI."""

import csv
import itertools
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from transformers import BertTokenizer

from demo import demo_lexicon as lex
from demo import make_demo_data as gen
from demo.make_demo_data import CONTRADICTION, ENTAILMENT, NEUTRAL, Clause, Event, NounPhrase, Quantified

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The official MNLI headers, written out here rather than taken from the generator.
TRAIN_COLUMNS = (
    "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
    "sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label"
).split()
DEV_COLUMNS = (
    "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
    "sentence1_parse sentence2_parse sentence1 sentence2 label1 label2 label3 label4 "
    "label5 gold_label"
).split()
FILES = ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv")
SMALL = ["--n_train", "600", "--n_dev", "90"]


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "demo.make_demo_data", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_cli("--output_dir", str(out), *SMALL)
    assert result.returncode == 0, result.stderr
    assert "vocab.txt:" in result.stdout
    return out


@pytest.fixture(scope="module")
def tables(corpus_dir):
    return {name: read_tsv(corpus_dir / "MNLI" / name) for name in FILES}


@pytest.fixture(scope="module")
def world():
    return gen.World(mismatched=False)


# ---------------------------------------------------------------------------------------------
# Files


def test_same_seed_gives_identical_bytes_and_another_seed_differs(corpus_dir, tmp_path):
    assert run_cli("--output_dir", str(tmp_path / "again"), *SMALL).returncode == 0
    assert run_cli("--output_dir", str(tmp_path / "seed1"), "--seed", "1", *SMALL).returncode == 0
    for name in [os.path.join("MNLI", f) for f in FILES] + ["vocab.txt"]:
        first = (corpus_dir / name).read_bytes()
        assert (tmp_path / "again" / name).read_bytes() == first, name
        if name != "vocab.txt":
            assert (tmp_path / "seed1" / name).read_bytes() != first, name


def test_headers_column_counts_and_sizes(tables):
    assert tables["train.tsv"][0] == TRAIN_COLUMNS
    assert len(tables["train.tsv"]) == 1 + 600
    for name in ("dev_matched.tsv", "dev_mismatched.tsv"):
        assert tables[name][0] == DEV_COLUMNS
        assert len(tables[name]) == 1 + 90
    for name, rows in tables.items():
        width = len(rows[0])
        assert all(len(row) == width for row in rows), name
        assert [row[0] for row in rows[1:]] == [str(i) for i in range(len(rows) - 1)], name


def test_labels_are_allowed_and_balanced(tables):
    for name, rows in tables.items():
        gold = Counter(row[-1] for row in rows[1:])
        assert set(gold) == {ENTAILMENT, NEUTRAL, CONTRADICTION}, name
        shares = [count / (len(rows) - 1) for count in gold.values()]
        assert min(shares) > 0.25 and max(shares) < 0.42, (name, gold)


def test_pair_ids_follow_prompt_ids_and_the_writers_label(tables):
    for rows in tables.values():
        by_prompt = Counter(row[1] for row in rows[1:])
        assert max(by_prompt.values()) <= 3  # one hypothesis per label and premise
        for row in rows[1:]:
            assert row[2][:-1] == row[1] and row[2][-1] in "enc", row[:3]
        premises = {}
        for row in rows[1:]:
            assert premises.setdefault(row[1], row[8]) == row[8]  # one premise per promptID


def test_train_noise_and_dev_majorities(tables):
    train = tables["train.tsv"][1:]
    assert all(row[10] == row[11] for row in train)
    flipped = sum(row[11][0] != row[2][-1] for row in train) / len(train)
    assert 0.04 < flipped < 0.15
    for name in ("dev_matched.tsv", "dev_mismatched.tsv"):
        for row in tables[name][1:]:
            votes = row[10:15]
            assert all(v in (ENTAILMENT, NEUTRAL, CONTRADICTION) for v in votes)
            assert votes.count(row[15]) >= 3, row
            assert row[10][0] == row[2][-1]  # label1 is the writer's label


def test_sentence_lengths_and_parses(tables):
    for rows in tables.values():
        for row in rows[1:]:
            premise, hypothesis = gen.basic_tokens(row[8]), gen.basic_tokens(row[9])
            assert 8 <= len(premise) <= 20 and 5 <= len(hypothesis) <= 14, row[8:10]
            assert row[8][0].isupper() and row[8][-1] in ".?" and "\t" not in row[8]
            for binary, parse, sentence in ((row[4], row[6], row[8]), (row[5], row[7], row[9])):
                words = [w for w in binary.split() if w not in "()"]
                assert gen.basic_tokens(" ".join(words)) == gen.basic_tokens(sentence)
                assert binary.count("(") == binary.count(")")
                assert parse.startswith("(ROOT (S ") and parse.count("(") == parse.count(")")


def test_mismatched_genres_and_words_are_apart_from_matched(tables):
    matched = {row[3] for name in ("train.tsv", "dev_matched.tsv") for row in tables[name][1:]}
    mismatched = {row[3] for row in tables["dev_mismatched.tsv"][1:]}
    assert matched <= set(lex.MATCHED_GENRES) and mismatched <= set(lex.MISMATCHED_GENRES)
    assert len(matched) == 3 and len(mismatched) == 3 and not matched & mismatched

    def words(name):
        return {w for row in tables[name][1:] for column in (8, 9) for w in gen.basic_tokens(row[column])}

    only = {w for phrase in lex.MISMATCHED_ONLY for w in phrase.split()} - {"at", "five"}
    assert not only & (words("train.tsv") | words("dev_matched.tsv"))
    assert only & words("dev_mismatched.tsv")


def test_vocab_covers_every_sentence_with_whole_words(corpus_dir, tables):
    vocab = (corpus_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab[-1] == ""
    vocab = vocab[:-1]
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocab[5:] == sorted(set(vocab[5:])) and all(t == t.lower() for t in vocab[5:])
    tokenizer = BertTokenizer(vocab=str(corpus_dir / "vocab.txt"), do_lower_case=True)
    assert tokenizer.vocab_size == len(vocab)
    seen = set()
    for rows in tables.values():
        for row in rows[1:]:
            for sentence in (row[8], row[9]):
                pieces = tokenizer.tokenize(sentence)
                assert "[UNK]" not in pieces and not any(p.startswith("##") for p in pieces), sentence
                seen.update(pieces)
    assert seen == set(vocab[5:])  # nothing in the vocabulary that no sentence uses


def test_cli_rejects_bad_arguments_clearly(tmp_path):
    result = run_cli("--output_dir", str(tmp_path), "--n_train", "0")
    assert result.returncode == 2
    assert "--n_train" in result.stderr and "positive integer" in result.stderr
    result = run_cli("--output_dir", str(tmp_path), "--n_dev", "many")
    assert result.returncode == 2 and "'many'" in result.stderr
    assert not (tmp_path / "MNLI").exists()


def test_models_with_a_vocabulary_of_their_own_get_no_line_about_vocab_txt(corpus_dir, tmp_path, monkeypatch):
    # run_demo.sh --pretrained: the same files, no word about the demo configs' vocab_size, and
    # no check of them (a config too small for vocab.txt does not matter to MiniLM's models).
    def refuse(*args):
        raise AssertionError("the demo configs were checked")

    monkeypatch.setattr(gen, "check_config_vocab_sizes", refuse)
    gen.main(["--output_dir", str(tmp_path), *SMALL, "--models_own_vocab"])
    for name in [os.path.join("MNLI", f) for f in FILES] + ["vocab.txt"]:
        assert (tmp_path / name).read_bytes() == (corpus_dir / name).read_bytes(), name
    result = run_cli("--output_dir", str(tmp_path / "cli"), *SMALL, "--models_own_vocab")
    assert result.returncode == 0, result.stderr
    assert "train.tsv: 600 pairs" in result.stdout and "vocab" not in result.stdout


# ---------------------------------------------------------------------------------------------
# Configs


def test_demo_configs_fit_the_vocabulary_and_the_brief(corpus_dir):
    vocab_size = len((corpus_dir / "vocab.txt").read_text(encoding="utf-8").split())
    paths = [os.path.join(REPO_ROOT, "demo", "jsons", name) for name in gen.DEMO_CONFIGS]
    gen.check_config_vocab_sizes(vocab_size, paths)
    configs = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            configs[os.path.basename(path)] = json.load(f)
    for config in configs.values():
        assert config["model_type"] == "bert" and config["vocab_size"] % 8 == 0
        assert config["hidden_size"] % config["num_attention_heads"] == 0
        assert config["max_position_embeddings"] >= 64
    student = configs["bert_config_student.json"]
    # T4-tiny's shape scaled down with the demo's teachers: 4 layers, narrower than the teachers
    # and with their head count, so the recommended recipe can start it from them.
    assert (
        student["num_hidden_layers"],
        student["hidden_size"],
        student["num_attention_heads"],
        student["intermediate_size"],
        student["max_position_embeddings"],
    ) == (4, 128, 8, 512, 128)
    assert student["hidden_dropout_prob"] == student["attention_probs_dropout_prob"] == 0.1
    teacher = configs["bert_config_teacher.json"]
    assert teacher["num_attention_heads"] == student["num_attention_heads"]
    assert teacher["hidden_size"] > student["hidden_size"]
    assert teacher["num_hidden_layers"] >= student["num_hidden_layers"]


def test_config_check_names_the_file_and_the_size_needed(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"vocab_size": 100}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"small\.json: vocab_size 100 .* at least 208"):
        gen.check_config_vocab_sizes(203, [str(path)])
    gen.check_config_vocab_sizes(100, [str(path)])
    path.write_text(json.dumps({"vocab_size": "100"}), encoding="utf-8")
    with pytest.raises(ValueError, match="vocab_size"):
        gen.check_config_vocab_sizes(10, [str(path)])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        gen.check_config_vocab_sizes(10, [str(tmp_path / "missing.json")])


# ---------------------------------------------------------------------------------------------
# Label logic, through the generator's own functions


def scene(world, premise, hypothesis):
    return gen.scene_label([premise], hypothesis, world)


def animal(noun, determiner="the", ref=0, adjectives=()):
    return NounPhrase(ref, noun, determiner, adjectives)


def test_hypernyms_hyponyms_and_siblings(world):
    poodle = Clause(animal("poodle"), "sleeping", place="park")
    assert scene(world, poodle, Clause(animal("dog"), "sleeping")) == ENTAILMENT
    assert scene(world, poodle, Clause(animal("animal", "a"), "sleeping", place="park")) == ENTAILMENT
    assert scene(world, Clause(animal("dog"), "sleeping"), Clause(animal("poodle"), "sleeping")) == NEUTRAL
    assert scene(world, poodle, Clause(animal("cat"), "sleeping")) == CONTRADICTION
    assert scene(world, poodle, Clause(animal("beagle"), "sleeping")) == CONTRADICTION
    assert gen.say(poodle, world, gen.GENRE_STYLES["fiction"]) == "the poodle is sleeping in the park"


def test_negation_activities_and_states(world):
    woman = NounPhrase(0, "woman")
    reading = Clause(woman, "reading")
    assert scene(world, reading, Clause(woman, "reading", positive=False)) == CONTRADICTION
    assert scene(world, Clause(woman, "reading", positive=False), reading) == CONTRADICTION
    napping = Clause(animal("dog"), "napping")
    assert scene(world, napping, Clause(animal("dog"), "running", positive=False)) == ENTAILMENT
    assert scene(world, napping, Clause(animal("dog"), "resting")) == ENTAILMENT
    assert scene(world, napping, Clause(animal("dog"), "asleep")) == ENTAILMENT
    assert scene(world, napping, Clause(animal("dog"), "awake")) == CONTRADICTION
    assert scene(world, Clause(animal("dog"), "resting"), Clause(animal("dog"), "awake")) == NEUTRAL
    not_running = Clause(animal("dog"), "running", positive=False)
    assert scene(world, not_running, Clause(animal("dog"), "sprinting", positive=False)) == ENTAILMENT
    assert scene(world, not_running, Clause(animal("dog"), "sleeping", positive=False)) == NEUTRAL
    assert scene(world, not_running, Clause(animal("dog"), "sprinting")) == CONTRADICTION
    # 'it is not true that H' flips entailment and contradiction, keeps neutral
    assert [gen.negated_label(label) for label in (ENTAILMENT, NEUTRAL, CONTRADICTION)] == [
        CONTRADICTION,
        NEUTRAL,
        ENTAILMENT,
    ]


def test_added_and_dropped_information(world):
    premise = Clause(
        animal("dog", adjectives=(("color", "brown"),)), "eating", place="kitchen", time="this morning"
    )
    plain = Clause(animal("dog"), "eating")
    assert scene(world, premise, plain) == ENTAILMENT  # dropping modifiers
    assert scene(world, plain, premise) == NEUTRAL  # adding them
    assert (
        scene(world, premise, Clause(animal("dog", adjectives=(("color", "black"),)), "eating"))
        == CONTRADICTION
    )
    assert scene(world, premise, Clause(animal("dog", adjectives=(("size", "big"),)), "eating")) == NEUTRAL
    assert scene(world, premise, Clause(animal("dog"), "eating", place="house")) == ENTAILMENT
    assert (
        scene(
            world,
            Clause(animal("dog"), "eating", place="house"),
            Clause(animal("dog"), "eating", place="kitchen"),
        )
        == NEUTRAL
    )
    assert scene(world, premise, Clause(animal("dog"), "eating", place="park")) == CONTRADICTION
    assert scene(world, premise, Clause(animal("dog"), "eating", time="this evening")) == CONTRADICTION
    assert scene(world, premise, Clause(animal("dog"), None, place="kitchen")) == ENTAILMENT


def test_numbers(world):
    two = Clause(animal("dog", "two"), "playing")
    assert scene(world, two, Clause(animal("dog", "three"), "playing")) == CONTRADICTION
    assert scene(world, two, Clause(animal("dog", "two"), "playing")) == ENTAILMENT
    assert scene(world, two, Clause(animal("dog", "some"), "playing")) == ENTAILMENT
    assert scene(world, two, Clause(animal("dog", "a"), "playing")) == ENTAILMENT
    assert scene(world, Clause(animal("dog"), "playing"), two) == CONTRADICTION


def test_objects_and_antonyms(world):
    door = NounPhrase(0, "door")
    assert scene(world, Clause(door, "open"), Clause(door, "closed")) == CONTRADICTION
    assert scene(world, Clause(door, "locked"), Clause(door, "closed")) == ENTAILMENT
    assert scene(world, Clause(door, "closed"), Clause(door, "locked")) == NEUTRAL
    assert scene(world, Clause(door, "open", positive=False), Clause(door, "closed")) == ENTAILMENT
    assert scene(world, Clause(door, "locked", positive=False), Clause(door, "open")) == NEUTRAL
    lamp = NounPhrase(0, "lamp")
    assert scene(world, Clause(lamp, "on"), Clause(lamp, "off", positive=False)) == ENTAILMENT


def test_roles_voice_and_verbs(world):
    man, dog = NounPhrase(0, "man"), NounPhrase(1, "dog")
    chase = Event(man, "chasing", dog, place="park")
    assert scene(world, chase, Event(dog, "chasing", man)) == NEUTRAL  # roles swapped
    assert scene(world, chase, Event(man, "chasing", dog, passive=True)) == ENTAILMENT
    assert (
        gen.say(Event(man, "chasing", dog, passive=True), world, gen.GENRE_STYLES["fiction"])
        == "the dog is being chased by the man"
    )
    assert scene(world, chase, Event(man, "following", dog)) == ENTAILMENT
    assert scene(world, chase, Event(man, "feeding", dog)) == CONTRADICTION
    assert scene(world, chase, Event(man, "feeding", dog, positive=False)) == ENTAILMENT
    assert scene(world, chase, Event(man, "chasing", dog, positive=False)) == CONTRADICTION
    assert scene(world, chase, Event(NounPhrase(0, "woman"), "chasing", dog)) == CONTRADICTION
    assert scene(world, chase, Clause(dog, None, place="park")) == ENTAILMENT


def quantified(quantifier, noun, predicate, positive=True, modifier=None):
    return Quantified(quantifier, noun, modifier, predicate, positive)


def test_quantifier_monotonicity(world):
    def label(p, h):
        return gen.quantified_label(p, h, world)

    assert label(quantified("all", "dog", "sleeping"), quantified("some", "dog", "sleeping")) == ENTAILMENT
    assert label(quantified("some", "dog", "sleeping"), quantified("all", "dog", "sleeping")) == NEUTRAL
    assert (
        label(quantified("all", "dog", "sleeping", False), quantified("some", "dog", "sleeping"))
        == CONTRADICTION
    )
    assert (
        label(quantified("all", "dog", "sleeping", False), quantified("all", "poodle", "sleeping", False))
        == ENTAILMENT
    )
    assert label(quantified("all", "dog", "sleeping"), quantified("all", "poodle", "sleeping")) == ENTAILMENT
    assert label(quantified("all", "poodle", "sleeping"), quantified("all", "dog", "sleeping")) == NEUTRAL
    assert label(quantified("some", "poodle", "napping"), quantified("some", "dog", "sleeping")) == ENTAILMENT
    assert label(quantified("most", "dog", "napping"), quantified("most", "dog", "awake")) == CONTRADICTION
    assert label(quantified("all", "dog", "running"), quantified("some", "dog", "sleeping")) == CONTRADICTION
    assert label(quantified("all", "poodle", "running"), quantified("some", "dog", "sleeping")) == NEUTRAL
    assert (
        label(quantified("all", "dog", "running"), quantified("all", "dog", "sleeping", False)) == ENTAILMENT
    )
    in_park, in_kitchen = ("place", "park"), ("place", "kitchen")
    assert (
        label(quantified("all", "dog", "eating"), quantified("all", "dog", "eating", modifier=in_park))
        == ENTAILMENT
    )
    assert (
        label(quantified("some", "dog", "eating", modifier=in_park), quantified("some", "dog", "eating"))
        == ENTAILMENT
    )
    assert (
        label(quantified("all", "dog", "eating", modifier=in_park), quantified("all", "dog", "eating"))
        == NEUTRAL
    )
    assert (
        label(
            quantified("all", "dog", "eating", modifier=in_park),
            quantified("some", "dog", "eating", False, modifier=in_kitchen),
        )
        == NEUTRAL
    )
    wordings = [
        gen.say(Quantified("some", "dog", in_park, "sleeping", False, w), world, gen.GENRE_STYLES["fiction"])
        for w in range(3)
    ]
    assert wordings == [
        "some dogs in the park are not sleeping",
        "not all dogs in the park are sleeping",
        "not every dog in the park is sleeping",
    ]


def test_quantifier_rules_agree_with_model_checking(world):
    """Every pair of quantified sentences over {dog, poodle} and a few predicates gets the label
    that enumerating small worlds gives: a world puts 0-2 individuals in each (kind, activity)
    cell; mentioned kinds are non-empty; entailment = true in every world where the premise is,
    contradiction = never true together."""
    kinds = {"poodle": {"poodle"}, "dog": {"poodle", "beagle"}}  # beagle stands for other dogs
    activities = {
        "napping": {"napping"},
        "sleeping": {"napping", "sleeping"},
        "running": {"running"},
        "asleep": {"napping", "sleeping"},
        "awake": {"running", "other"},
    }
    cells = list(itertools.product(["poodle", "beagle"], ["napping", "sleeping", "running", "other"]))
    worlds = np.array(list(itertools.product(range(3), repeat=len(cells))))

    def count(kind_atoms, activity_atoms):
        columns = [i for i, (k, a) in enumerate(cells) if k in kind_atoms and a in activity_atoms]
        return worlds[:, columns].sum(axis=1)

    def truth(s):
        members = kinds[s.noun]
        doing = (
            activities[s.predicate]
            if s.positive
            else {"napping", "sleeping", "running", "other"} - activities[s.predicate]
        )
        yes, no = count(members, doing), count(members, {"napping", "sleeping", "running", "other"} - doing)
        return {"all": no == 0, "some": yes > 0, "most": yes > no}[s.quantifier]

    sentences = [
        quantified(q, noun, pred, positive)
        for q in ("all", "some", "most")
        for noun in kinds
        for pred in activities
        for positive in (True, False)
    ]
    truths = {s: truth(s) for s in sentences}
    for p, h in itertools.product(sentences, repeat=2):
        exists = (count(kinds[p.noun], {"napping", "sleeping", "running", "other"}) > 0) & (
            count(kinds[h.noun], {"napping", "sleeping", "running", "other"}) > 0
        )
        both, p_only = truths[p] & truths[h] & exists, truths[p] & ~truths[h] & exists
        expected = ENTAILMENT if not p_only.any() else CONTRADICTION if not both.any() else NEUTRAL
        assert gen.quantified_label(p, h, world) == expected, (p, h)


def test_generated_pairs_keep_their_computed_label(world, monkeypatch):
    """Pairs drawn for a wanted label come back with the label of their hypothesis: each pair's
    label is computed again from the hypothesis's structure (recorded as it is drawn), apart
    from draw_pairs' bookkeeping, and a hypothesis is a fresh sentence."""
    import random

    structures = {}  # hypothesis text -> (premise sentences, hypothesis structure)
    original = gen.draw_hypothesis
    edits = {}

    for name in ("edited_clause", "edited_event", "edited_quantified"):

        def recording(*args, _edit=getattr(gen, name), **kwargs):  # noqa: B008 (bound per name, on purpose)
            edits["last"] = _edit(*args, **kwargs)
            return edits["last"]

        monkeypatch.setattr(gen, name, recording)

    def recording_draw(rng, world_, style, premise):
        text, label = original(rng, world_, style, premise)
        structures[text] = (premise, edits["last"])
        return text, label

    monkeypatch.setattr(gen, "draw_hypothesis", recording_draw)

    def recomputed(premise, hypothesis_text):
        premise_, structure = structures[hypothesis_text]
        assert premise_ is premise
        if isinstance(structure, Quantified):
            return gen.quantified_label(premise.sentences[0], structure, world)
        label = gen.scene_label(premise.sentences, structure, world)
        return gen.negated_label(label) if hypothesis_text.startswith("it is not true that") else label

    rng = random.Random(3)
    checked = Counter()
    for genre in ("government", "fiction", "travel"):
        style = gen.GENRE_STYLES[genre]
        for _ in range(30):
            premise = gen.draw_premise(rng, world, style)
            pairs = gen.draw_pairs(rng, world, style, premise)
            assert len({pair.label for pair in pairs}) == len(pairs) >= 2
            for pair in pairs:
                assert pair.premise == premise.text and pair.hypothesis != premise.text
                assert pair.label == recomputed(premise, pair.hypothesis), pair
                checked[pair.label] += 1
    assert set(checked) == {ENTAILMENT, NEUTRAL, CONTRADICTION}


def test_every_lexicon_word_is_known():
    known = (
        set(lex.ANIMATE_NOUNS)
        | set(lex.ACTIVITIES)
        | set(lex.TRANSITIVE_VERBS)
        | set(lex.PLACES)
        | set(lex.TIMES)
        | set(lex.NUMERALS.values())
        | set(lex.OBJECTS)
        | {w for dims in lex.ADJECTIVES.values() for words in dims.values() for w in words}
    )
    assert lex.MISMATCHED_ONLY <= known
    parents = (
        [p for p, _ in lex.ANIMATE_NOUNS.values()]
        + [p for p, _ in lex.ACTIVITIES.values()]
        + [p for p, _ in lex.PLACES.values()]
        + [p for _, p, _ in lex.TRANSITIVE_VERBS.values()]
    )
    assert {p for p in parents if p is not None} <= known
