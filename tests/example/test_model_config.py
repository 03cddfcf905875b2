"""model_config.parse_model_config: paths, checks, tokenizers and BertConfigs of the JSON."""

import json
import os

import pytest

from pipeline.model_config import parse_model_config
from tests.helpers import SPECIAL_TOKENS, WORDS, model_entry, write_bert_config, write_vocab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIECE_WORDS = WORDS + ["walk", "##s", "##ing", "##ed"]


entry = model_entry


@pytest.fixture
def files(tmp_path):
    return {
        "vocab": write_vocab(tmp_path / "vocab.txt"),
        "config": write_bert_config(tmp_path / "bert_config.json"),
    }


def write_json(path, content):
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def vocab_ids(path):
    """Token -> 0-based line number, read straight from the file."""
    return {token: i for i, token in enumerate(path.read_text(encoding="utf-8").splitlines())}


# --- tokenizers ------------------------------------------------------------------------------


def test_each_token_maps_to_its_line_number(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt", PIECE_WORDS)
    config = write_bert_config(tmp_path / "c.json", vocab_size=len(SPECIAL_TOKENS) + len(PIECE_WORDS))
    tokenizer = parse_model_config({"student": entry(vocab, config)}).student.tokenizer
    ids = vocab_ids(vocab)
    assert len(tokenizer) == len(ids)
    for token, line in ids.items():
        if token.startswith("##"):  # a piece cannot be typed alone: look it up directly
            assert tokenizer.convert_tokens_to_ids(token) == line
        else:
            assert tokenizer(token, add_special_tokens=False)["input_ids"] == [line], token


def test_sentences_split_into_pieces_with_the_files_ids(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt", PIECE_WORDS)
    config = write_bert_config(tmp_path / "c.json", vocab_size=len(SPECIAL_TOKENS) + len(PIECE_WORDS))
    tokenizer = parse_model_config({"student": entry(vocab, config)}).student.tokenizer
    ids = vocab_ids(vocab)
    cases = {
        "The DOG walks .": ["the", "dog", "walk", "##s", "."],
        "a cat walking, not walked": ["a", "cat", "walk", "##ing", ",", "not", "walk", "##ed"],
        "the zebra": ["the", "[UNK]"],
    }
    for text, tokens in cases.items():
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == [ids[t] for t in tokens]
    pair = tokenizer("the dog runs", "a cat")
    assert pair["input_ids"] == [
        ids[t] for t in ["[CLS]", "the", "dog", "runs", "[SEP]", "a", "cat", "[SEP]"]
    ]
    assert pair["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1]


def test_do_lower_case_false_keeps_capitals_unknown(files):
    student = entry(files["vocab"], files["config"], tokenizer_kwargs={"do_lower_case": False})
    tokenizer = parse_model_config({"student": student}).student.tokenizer
    ids = vocab_ids(files["vocab"])
    assert tokenizer("Dog dog", add_special_tokens=False)["input_ids"] == [ids["[UNK]"], ids["dog"]]


# --- a valid JSON ----------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_json_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    write_vocab(folder / "vocab.txt")
    write_bert_config(folder / "teacher.json", num_hidden_layers=4)
    write_bert_config(folder / "student.json")
    (folder / "teacher.pkl").write_bytes(b"")
    path = write_json(
        folder / "models.json",
        {
            "teachers": [
                entry("vocab.txt", "teacher.json", "teacher.pkl"),
                entry("vocab.txt", "teacher.json", "teacher.pkl", disable=True),
            ],
            "student": entry("vocab.txt", "student.json", num_hidden_layers=1),
        },
    )
    monkeypatch.chdir(tmp_path)  # somewhere else than the JSON's folder
    setup = parse_model_config(str(path))
    assert setup.source == str(path)
    assert setup.student.vocab_file == str(folder / "vocab.txt")
    assert setup.teachers[0].checkpoint == str(folder / "teacher.pkl")
    assert setup.student.checkpoint is None
    assert [t.disable for t in setup.teachers] == [False, True]
    assert setup.teachers[1].tokenizer is None and setup.teachers[1].checkpoint == "teacher.pkl"
    assert setup.enabled_teachers == [setup.teachers[0]]
    assert setup.teachers[0].bert_config.num_hidden_layers == 4
    assert setup.student.bert_config.num_hidden_layers == 1  # overridden by the JSON
    assert setup.student.bert_config.hidden_size == 32


def test_dict_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    write_vocab(tmp_path / "vocab.txt")
    write_bert_config(tmp_path / "c.json")
    monkeypatch.chdir(tmp_path)
    setup = parse_model_config({"student": entry("vocab.txt", "c.json")})
    assert setup.source == "<dict>"
    assert setup.student.config_file == str(tmp_path / "c.json")
    assert setup.teachers == [] and setup.enabled_teachers == []


def test_environment_variables_are_expanded(files, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("VOCAB_NAME", "vocab.txt")
    student = entry("${MODELS_DIR}/$VOCAB_NAME", "$MODELS_DIR/bert_config.json")
    setup = parse_model_config(write_json(tmp_path / "m.json", {"teachers": [], "student": student}))
    assert setup.student.vocab_file == str(files["vocab"])
    assert setup.student.config_file == str(files["config"])


def test_the_t4_tiny_config_of_the_repository():
    config = parse_model_config(
        {
            "student": entry(
                os.path.join(REPO, "jsons", "bert_config_L4t.json"),  # any file of < 30522 lines will do
                os.path.join(REPO, "jsons", "bert_config_L4t.json"),
            )
        }
    ).student.bert_config
    assert (
        config.vocab_size,
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
    ) == (30522, 312, 4, 12, 1200)
    assert (config.max_position_embeddings, config.type_vocab_size, config.hidden_act) == (512, 2, "gelu")
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.1, 0.1)
    assert config.initializer_range == 0.02


# --- errors ----------------------------------------------------------------------------------


def test_a_disabled_teacher_needs_no_files_or_variables(files, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    teacher = entry("missing_vocab.txt", files["config"], "${NOT_SET_ANYWHERE}/t.pkl", disable=True)
    setup = parse_model_config({"teachers": [teacher], "student": entry(files["vocab"], files["config"])})
    assert setup.enabled_teachers == [] and setup.teachers[0].checkpoint == "${NOT_SET_ANYWHERE}/t.pkl"
    teacher.update(disable=False, vocab_file=str(files["vocab"]))
    with pytest.raises(ValueError, match=r"teachers\[0\]\.checkpoint: environment variable"):
        parse_model_config({"teachers": [teacher], "student": entry(files["vocab"], files["config"])})


def test_missing_file_names_key_and_path(files, tmp_path):
    missing = tmp_path / "nowhere" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match=r"student\.vocab_file.*nowhere/vocab\.txt"):
        parse_model_config({"student": entry(missing, files["config"])})
    teacher = entry(files["vocab"], files["config"], str(tmp_path / "gone.pkl"))
    with pytest.raises(FileNotFoundError, match=r"teachers\[0\]\.checkpoint.*gone\.pkl"):
        parse_model_config({"teachers": [teacher], "student": entry(files["vocab"], files["config"])})


def test_missing_json_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        parse_model_config(str(tmp_path / "absent.json"))


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "student": {,\n}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json: invalid JSON at line 2"):
        parse_model_config(str(path))


def test_unknown_model_type_lists_the_supported_ones(files):
    with pytest.raises(ValueError, match=r"student\.model_type: 'roberta' is not supported; supported: bert"):
        parse_model_config({"student": entry(files["vocab"], files["config"], model_type="roberta")})


def test_unknown_keys_are_named(files):
    student = entry(files["vocab"], files["config"], checkpont="typo.pkl")
    with pytest.raises(ValueError, match=r"student: unknown key\(s\) 'checkpont'"):
        parse_model_config({"student": student})
    with pytest.raises(ValueError, match=r"top level: unknown key\(s\) 'teacher'"):
        parse_model_config({"teacher": [], "student": entry(files["vocab"], files["config"])})
    kwargs = {"do_lower_case": True, "vocab_file": "x"}
    with pytest.raises(ValueError, match=r"student\.tokenizer_kwargs: unknown option\(s\) 'vocab_file'"):
        parse_model_config({"student": entry(files["vocab"], files["config"], tokenizer_kwargs=kwargs)})


def test_missing_required_key_is_named(files):
    student = entry(files["vocab"], files["config"])
    del student["checkpoint"]
    with pytest.raises(ValueError, match=r"student: missing key\(s\) checkpoint"):
        parse_model_config({"student": student})


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("disable", "no", "expected true/false, got 'no'"),
        ("num_hidden_layers", "4", "expected a positive integer, got '4'"),
        ("num_hidden_layers", True, "expected a positive integer, got True"),
        ("num_hidden_layers", 0, "expected a positive integer, got 0"),
        ("checkpoint", 3, "expected a path string or null, got 3"),
        ("tokenizer_kwargs", ["do_lower_case"], "expected an object, got"),
    ],
)
def test_wrong_types_are_named(files, key, value, expected):
    teacher = entry(files["vocab"], files["config"], **{key: value})
    with pytest.raises(ValueError, match=rf"teachers\[0\]\.{key}: {expected}"):
        parse_model_config({"teachers": [teacher], "student": entry(files["vocab"], files["config"])})


def test_missing_student(files, tmp_path):
    path = write_json(tmp_path / "m.json", {"teachers": [entry(files["vocab"], files["config"])]})
    with pytest.raises(ValueError, match=r"m\.json: the 'student' entry is missing"):
        parse_model_config(str(path))


def test_unset_environment_variable_names_key_and_variable(files, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    student = entry(files["vocab"], "${NOT_SET_ANYWHERE}/bert_config.json")
    with pytest.raises(
        ValueError,
        match=r"student\.config_file: environment variable "
        r"\$NOT_SET_ANYWHERE is not set",
    ):
        parse_model_config({"student": student})


def test_a_teacher_with_another_vocabulary_gets_features_of_its_own(files, tmp_path):
    other_vocab = write_vocab(tmp_path / "other_vocab.txt", WORDS[::-1])
    teacher = entry(other_vocab, files["config"], str(files["config"]))
    student = entry(files["vocab"], files["config"])
    setup = parse_model_config(
        {
            "teachers": [teacher, entry(files["vocab"], files["config"], str(files["config"]))],
            "student": student,
        }
    )
    assert [t.own_features for t in setup.teachers] == [True, False]
    assert setup.teachers_with_own_features == [setup.teachers[0]]
    # A disabled teacher is not used, so its vocabulary does not matter.
    setup = parse_model_config({"teachers": [dict(teacher, disable=True)], "student": student})
    assert setup.enabled_teachers == [] and setup.teachers_with_own_features == []


def test_a_teacher_with_other_casing_gets_features_of_its_own(files, tmp_path):
    copy = tmp_path / "copy_of_vocab.txt"
    copy.write_bytes(files["vocab"].read_bytes())  # same content, another file: the same features
    student = entry(files["vocab"], files["config"])
    teacher = entry(copy, files["config"], str(files["config"]))
    assert not parse_model_config({"teachers": [teacher], "student": student}).teachers[0].own_features
    teacher["tokenizer_kwargs"] = {"do_lower_case": False}
    assert parse_model_config({"teachers": [teacher], "student": student}).teachers[0].own_features


def test_vocab_larger_than_the_embeddings_is_refused(files, tmp_path):
    small = write_bert_config(tmp_path / "small.json", vocab_size=10)
    lines = len(SPECIAL_TOKENS) + len(WORDS)
    with pytest.raises(
        ValueError,
        match=rf"vocab\.txt has {lines} tokens but config_file "
        rf".*small\.json has vocab_size 10",
    ):
        parse_model_config({"student": entry(files["vocab"], small)})


# --- the original example's JSON files -------------------------------------------------------


def original_entry(vocab, config, checkpoint):
    """One model in the original example's exact shape: its keys, its values, "bertuncased"."""
    return {
        "model_type": "bert",
        "prefix": "bertuncased",
        "vocab_file": str(vocab),
        "config_file": str(config),
        "checkpoint": checkpoint,
        "tokenizer_kwargs": {"do_lower_case": True},
        "disable": False,
    }


@pytest.mark.parametrize("num_teachers", [0, 1, 3])  # TrainBertTeacher, DistillBertToTiny, DistillMultiBert
def test_the_original_examples_json_loads_unchanged(files, tmp_path, num_teachers):
    teachers = [
        original_entry(files["vocab"], files["config"], str(files["config"])) for _ in range(num_teachers)
    ]
    content = {"teachers": teachers, "student": original_entry(files["vocab"], files["config"], None)}
    setup = parse_model_config(str(write_json(tmp_path / "original.json", content)))
    assert setup.student.prefix == "bertuncased" and not setup.student.disable
    assert len(setup.enabled_teachers) == num_teachers
    assert setup.student.do_lower_case is True


def test_prefix_is_any_non_empty_label(files):
    for label in ("bert", "bertuncased", "my run"):
        assert (
            parse_model_config(
                {"student": entry(files["vocab"], files["config"], prefix=label)}
            ).student.prefix
            == label
        )
    with pytest.raises(ValueError, match=r"student\.prefix: expected a non-empty label, got ''"):
        parse_model_config({"student": entry(files["vocab"], files["config"], prefix="")})
    with pytest.raises(ValueError, match=r"student\.prefix: expected a string, got 3"):
        parse_model_config({"student": entry(files["vocab"], files["config"], prefix=3)})


def test_a_disabled_student_is_still_refused(files):
    with pytest.raises(ValueError, match=r"student\.disable: only a teacher can be disabled"):
        parse_model_config({"student": entry(files["vocab"], files["config"], disable=True)})
