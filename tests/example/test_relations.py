"""Relations (MiniLMv2) and pre-softmax attention scores (TinyBERT) from BertForGLUESimple: the
features are the layers' own vectors and scores, only the matched layers compute them, SDPA runs
everywhere, and main.py and the scripts' presets take the new matches (the formulas:
tests/core/test_relation_losses.py)."""

import json

import pytest
import torch
from transformers import BertConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert import modeling_bert

import main
from distillation import DistillationConfig, GeneralDistiller, TrainingConfig
from matches import PRESETS, fit_matches, read_matches
from modeling import BertForGLUESimple, BertForGLUESimpleAdaptor
from pipeline.distiller_features import request_features
from tests.helpers import model_entry, write_bert_config, write_model_json, write_tiny_mnli, write_vocab

VOCAB, LENGTH = 40, 9


def config(layers, hidden, heads, dropout=0.1):
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=16,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )


def model(layers, hidden, heads, seed=0, **outputs):
    torch.manual_seed(seed)
    return BertForGLUESimple(config(layers, hidden, heads), 3, **outputs)


def batch(seed=1, size=3):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(size, LENGTH, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return {
        "input_ids": torch.randint(5, VOCAB, (size, LENGTH), generator=generator) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros(size, LENGTH, dtype=torch.long),
        "labels": torch.tensor([0, 1, 2, 1][:size]),
    }


def inputs(data):
    return {key: value for key, value in data.items() if key != "labels"}


# ----- the features ------------------------------------------------------------------------------


def test_relations_are_the_layers_own_query_key_value_vectors():
    """In training mode, with dropout: the recomputed vectors are those the layer's attention used."""
    student = model(3, 24, 2).train()
    student.return_features(hidden=False, attention=False, relation=[1])
    seen = {}
    projections = student.bert.encoder.layer[1].attention.self
    for name in ("query", "key", "value"):
        getattr(projections, name).register_forward_hook(
            lambda module, args, output, name=name: seen.setdefault(name, output)
        )
    outputs = student(**batch())
    relations = outputs["relations"]
    assert "hidden_states" not in outputs and "attention_scores" not in outputs
    assert relations[0] is None and relations[2] is None
    assert relations[1].shape == (3, 3, LENGTH, 24)
    for index, name in enumerate(("query", "key", "value")):
        assert torch.equal(relations[1][index], seen[name]), name
    assert student.config._attn_implementation == "sdpa"


def test_attention_scores_are_the_scores_before_the_softmax():
    """softmax(scores) is the eager attention's probabilities; padded keys hold the score - 10000."""
    student = model(3, 24, 4).eval()
    eager = model(3, 24, 4, output_attentions=True).eval()
    eager.load_state_dict(student.state_dict())
    student.return_features(hidden=False, attention=False, attention_scores=[0, 2])
    data = batch()
    scores = student(**inputs(data))["attention_scores"]
    probabilities = eager(**inputs(data))["attentions"]
    assert scores[1] is None
    for k in (0, 2):
        assert scores[k].shape == (3, 4, LENGTH, LENGTH)
        torch.testing.assert_close(scores[k].softmax(-1), probabilities[k])
        assert (scores[k][2, :, :, 3:] < -9000).all() and (scores[k][2, :, :, :3] > -100).all()


def test_the_adaptor_passes_relations_and_scores_on():
    student = model(2, 24, 2)
    student.return_features(hidden=True, attention=False, relation=[1], attention_scores=[0])
    data = batch()
    outputs = student(**data)
    adapted = BertForGLUESimpleAdaptor(data, outputs)
    assert adapted["relation"] is outputs["relations"]
    assert adapted["attention_scores"] is outputs["attention_scores"]
    assert set(adapted) >= {"relation", "attention_scores", "hidden"}


def test_layers_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"relation layers \[3\] are out of range for a model with 3 layers"):
        model(3, 24, 2).return_features(hidden=False, attention=False, relation=[0, 3])


# ----- SDPA everywhere, recomputation at the matched layers only -----------------------------------


class AttentionCalls:
    """Counts the attention kernels BERT's layers call, by kind, and each layer's query projection."""

    def __init__(self, monkeypatch, models):
        self.kinds = {"eager": 0, "sdpa": 0}
        self.queries = {}
        for kind, original in (
            ("eager", modeling_bert.eager_attention_forward),
            ("sdpa", ALL_ATTENTION_FUNCTIONS["sdpa"]),
        ):

            def counting(*args, _kind=kind, _original=original, **kwargs):
                self.kinds[_kind] += 1
                return _original(*args, **kwargs)

            if kind == "eager":
                monkeypatch.setattr(modeling_bert, "eager_attention_forward", counting)
            else:
                monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, "sdpa", counting)
        for side, net in models.items():
            for k, layer in enumerate(net.bert.encoder.layer):
                self.queries[(side, k)] = 0
                layer.attention.self.query.register_forward_pre_hook(
                    lambda *unused, key=(side, k): self.queries.__setitem__(key, self.queries[key] + 1)
                )


def general_distiller(tmp_path, teacher, student, matches):
    """A GeneralDistiller of `matches` between the two models, its checkpoints in tmp_path."""
    return GeneralDistiller(
        TrainingConfig(output_dir=str(tmp_path), device="cpu"),
        DistillationConfig(intermediate_matches=matches),
        teacher,
        student,
        BertForGLUESimpleAdaptor,
        BertForGLUESimpleAdaptor,
    )


def one_step(tmp_path, teacher, student, matches):
    distiller = general_distiller(tmp_path, teacher, student, matches)
    request_features(distiller, [teacher], student)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    distiller.train(optimizer, [batch(size=3)], num_steps=1)
    return distiller


RELATION_AND_SCORES = [
    {
        "layer_T": 5,
        "layer_S": 3,
        "feature": "relation",
        "loss": "relation_kl",
        "weight": 1,
        "relation_heads": 4,
    },
    {"layer_T": 2, "layer_S": 1, "feature": "attention_scores", "loss": "att_score_mse", "weight": 1},
    {"layer_T": 6, "layer_S": 4, "feature": "hidden", "loss": "hidden_mse", "weight": 1},
]


def test_no_layer_runs_eager_attention_with_relation_and_score_matches(tmp_path, monkeypatch):
    """One training step of a 4-layer student (hidden 24, 4 heads) under a 6-layer teacher
    (hidden 32, 4 heads): every attention of both models runs SDPA; the query projection runs
    a second time in the matched layers only (the recomputation), once everywhere else."""
    teacher, student = model(6, 32, 4, seed=1), model(4, 24, 4, seed=2)
    calls = AttentionCalls(monkeypatch, {"teacher": teacher, "student": student})
    matches = fit_matches(RELATION_AND_SCORES, 24, 32, 4, 6, num_heads_S=4, num_heads_T=4)
    one_step(tmp_path, teacher, student, matches)
    assert calls.kinds == {"eager": 0, "sdpa": 6 + 4}
    twice = {("teacher", 5), ("teacher", 2), ("student", 3), ("student", 1)}
    assert calls.queries == {key: 2 if key in twice else 1 for key in calls.queries}


def test_other_head_counts_and_widths_under_relation_kl(tmp_path, monkeypatch):
    """relation_kl between a 2-head, 24-wide student and a 4-head, 32-wide teacher trains the
    student's matched layer's query, key and value projections, with SDPA everywhere."""
    teacher, student = model(6, 32, 4, seed=1), model(4, 24, 2, seed=2)
    calls = AttentionCalls(monkeypatch, {"teacher": teacher, "student": student})
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    matches = fit_matches(RELATION_AND_SCORES[:1], 24, 32, 4, 6, num_heads_S=2, num_heads_T=4)
    distiller = one_step(tmp_path, teacher, student, matches)
    assert calls.kinds == {"eager": 0, "sdpa": 10}
    assert distiller.loss_log is not None
    moved = {name for name, p in student.named_parameters() if not torch.equal(p, before[name])}
    for name in ("query", "key", "value"):
        assert f"bert.encoder.layer.3.attention.self.{name}.weight" in moved


def test_attention_maps_switch_every_layer_to_eager_where_relations_do_not(tmp_path, monkeypatch):
    """The counter sees eager attention when it runs: an 'attention' match makes every layer
    of both models eager (transformers' attention maps need it)."""
    teacher, student = model(6, 32, 4, seed=1), model(4, 24, 4, seed=2)
    calls = AttentionCalls(monkeypatch, {"teacher": teacher, "student": student})
    attention = [{"layer_T": 5, "layer_S": 3, "feature": "attention", "loss": "attention_mse", "weight": 1}]
    one_step(tmp_path, teacher, student, fit_matches(attention, 24, 32, 4, 6))
    assert calls.kinds == {"eager": 10, "sdpa": 0}


def test_a_layer_the_model_was_not_asked_for_is_a_clear_error(tmp_path):
    teacher, student = model(6, 32, 4, seed=1), model(4, 24, 4, seed=2)
    matches = fit_matches(RELATION_AND_SCORES[:1], 24, 32, 4, 6)
    distiller = general_distiller(tmp_path, teacher, student, matches)
    assert distiller.layers_read() == {"teacher": {"relation": [5]}, "student": {"relation": [3]}}
    teacher.return_features(hidden=False, attention=False, relation=[4])
    student.return_features(hidden=False, attention=False, relation=[3])
    data = batch()
    results_T = BertForGLUESimpleAdaptor(data, teacher(**inputs(data)))
    results_S = BertForGLUESimpleAdaptor(data, student(**data))
    with pytest.raises(ValueError, match=r"intermediate_matches\[0\] reads layer 5, which the teacher's"):
        distiller.compute_loss(results_S, results_T)


# ----- presets and fitting -----------------------------------------------------------------------


def test_presets_minilmv2s_last_layers_and_tinyberts_uniform_maps():
    def layers(name):
        return [(m["layer_S"], m["layer_T"]) for m in PRESETS[name]]

    assert layers("L4_relation_last") == [(3, 11)] and layers("L4_relation_last_from6") == [(3, 5)]
    assert PRESETS["L4_relation_last"][0]["relation_heads"] == 12
    # TinyBERT 4 from 12: student layers 1-4 learn teacher layers 3, 6, 9, 12 (indices one less)
    assert layers("L4_att_score_mse") == [(0, 2), (1, 5), (2, 8), (3, 11)]
    assert layers("L4_att_score_mse_from6") == [(0, 1), (1, 2), (2, 4), (3, 5)]  # layers 2, 3, 5, 6
    fitted = fit_matches(read_matches(["L4_relation_last", "L4_att_score_mse"]), 312, 768, 4, 12)
    assert all(match.proj is None for match in fitted)


def test_fitting_checks_relation_heads_and_head_counts():
    with pytest.raises(
        ValueError, match=r"matches\[0\]: relation_heads 12 does not divide the teacher's hidden size 32"
    ):
        fit_matches(read_matches(["L4_relation_last_from6"]), 24, 32, 4, 6)
    with pytest.raises(
        ValueError,
        match=r"matches\[1\]: att_score_mse compares attention scores head by head, but the student has 2 heads and the teacher 4",
    ):
        fit_matches(RELATION_AND_SCORES, 24, 32, 4, 6, num_heads_S=2, num_heads_T=4)
    with pytest.raises(
        ValueError, match=r"matches\[0\]: layer_T=6 is out of range .*\(relation indices run from 0 to 5\)"
    ):
        fit_matches([{**RELATION_AND_SCORES[0], "layer_T": 6}], 24, 32, 4, 6)


# ----- main.py and the scripts' presets ------------------------------------------------------------


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A 6-layer teacher (hidden 24, 2 heads) and a 4-layer student (hidden 12, 2 heads): the
    _from6 presets fit them, with their 12 relation heads."""
    root = tmp_path_factory.mktemp("relations")
    vocab = write_vocab(root / "vocab.txt")
    teacher_config = write_bert_config(root / "teacher.json", num_hidden_layers=6, hidden_size=24)
    student_config = write_bert_config(
        root / "student.json", num_hidden_layers=4, hidden_size=12, intermediate_size=24, dropout=0.1
    )
    torch.manual_seed(0)
    teacher = BertForGLUESimple(BertConfig.from_json_file(str(teacher_config)), 3)
    torch.save(teacher.state_dict(), root / "teacher.pkl")
    model_json = root / "model.json"
    write_model_json(
        model_json,
        [model_entry(vocab, teacher_config, str(root / "teacher.pkl"))],
        model_entry(vocab, student_config),
    )
    return {"root": root, "data": write_tiny_mnli(root / "data", n_train=32, n_dev=8), "json": model_json}


def test_main_takes_the_presets_as_the_scripts_pass_them(run_files, tmp_path, monkeypatch):
    calls = {}

    def build(args, train_config, teachers, student, matches):
        calls["attention"] = AttentionCalls(monkeypatch, {"teacher": teachers[0], "student": student})
        return main.build_distiller(args, train_config, teachers, student, matches)

    output_dir = tmp_path / "run"
    main.run(
        ["--data_dir", str(run_files["data"]), "--output_dir", str(output_dir),
         "--model_config_json", str(run_files["json"]), "--do_train", "--max_seq_length", "24",
         "--train_batch_size", "8", "--num_train_epochs", "1", "--learning_rate", "1e-3",
         "--teacher_check_size", "0", "--matches", "L4_relation_last_from6", "L4_att_score_mse_from6"],
        build_distiller=build,
    )  # fmt: skip
    logged = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    names = set().union(*logged)
    assert "unweighted_relation_relation_kl_3_5" in names
    assert {
        f"unweighted_attention_scores_att_score_mse_{s}_{t}" for s, t in [(0, 1), (1, 2), (2, 4), (3, 5)]
    } <= names
    assert calls["attention"].kinds["eager"] == 0 and calls["attention"].kinds["sdpa"] > 0


def test_main_refuses_scores_between_other_head_counts_before_writing(run_files, tmp_path):
    """main.py gives fit_matches the models' head counts: a 3-head student under the 2-head
    teacher gets att_score_mse's clear error, not a shape error mid-step, and no run folder."""
    root = run_files["root"]
    student_config = write_bert_config(
        tmp_path / "student.json", num_hidden_layers=4, hidden_size=12, num_attention_heads=3
    )
    config = json.loads(run_files["json"].read_text())
    config["student"] = model_entry(root / "vocab.txt", student_config)
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps(config))
    output_dir = tmp_path / "run"
    with pytest.raises(
        ValueError, match=r"matches\[0\]: att_score_mse .* the student has 3 heads and the teacher 2"
    ):
        main.run(
            ["--data_dir", str(run_files["data"]), "--output_dir", str(output_dir),
             "--model_config_json", str(model_json), "--do_train", "--max_seq_length", "24",
             "--teacher_check_size", "0", "--matches", "L4_att_score_mse_from6"]
        )  # fmt: skip
    assert not output_dir.exists()
