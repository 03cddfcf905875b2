"""init_student_from_teacher: the teacher's weights projected onto a smaller student's sizes."""

import math

import pytest
import torch
from transformers import BertConfig

from modeling import BertForGLUESimple
from pipeline.student_init import hidden_state_directions, init_student_from_teacher, teacher_layer_map

VOCAB = 40


def config(hidden=32, layers=4, heads=4, intermediate=64):
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def model(cfg, seed):
    torch.manual_seed(seed)
    return BertForGLUESimple(cfg, 3).eval()


def sample(batch=8, length=12, seed=5):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[::2, 8:] = 0
    return {
        "input_ids": torch.randint(0, VOCAB, (batch, length), generator=generator),
        "attention_mask": mask,
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
    }


def attention_sublayer(attention, x):
    """The attention block's output before its residual and LayerNorm, from the weights alone."""
    self_attention, heads = attention.self, attention.self.num_attention_heads
    size = self_attention.attention_head_size
    split = lambda t: t.view(x.shape[0], heads, size).transpose(0, 1)  # noqa: E731
    query, key, value = (
        split(layer(x)) for layer in (self_attention.query, self_attention.key, self_attention.value)
    )
    weights = torch.softmax(query @ key.transpose(1, 2) / math.sqrt(size), dim=-1)
    mixed = (weights @ value).transpose(0, 1).reshape(x.shape[0], heads * size)
    return attention.output.dense(mixed)


def feed_forward(layer, x):
    return layer.output.dense(layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x)))


def test_layer_map_is_the_presets():
    assert teacher_layer_map(4, 12) == [2, 5, 8, 11]  # L4: teacher layers 3, 6, 9, 12
    assert teacher_layer_map(3, 12) == [3, 7, 11]
    assert teacher_layer_map(4, 6) == [1, 2, 4, 5]  # the 6-layer matches: 2, 3, 5, 6
    assert teacher_layer_map(4, 4) == [0, 1, 2, 3]


def test_directions_are_orthonormal_and_keep_the_most_energy():
    teacher = model(config(), seed=0)
    batch = sample()
    directions = hidden_state_directions(teacher, batch, 24)
    assert directions.shape == (32, 24)
    torch.testing.assert_close(directions.T @ directions, torch.eye(24), atol=1e-5, rtol=0)
    with torch.no_grad():
        states = torch.cat(
            [
                h[batch["attention_mask"].bool()]
                for h in teacher.bert(**batch, output_hidden_states=True).hidden_states
            ]
        )
    kept = (states @ directions).norm() ** 2
    random_basis = torch.linalg.qr(torch.randn(32, 24))[0]
    assert kept > (states @ random_basis).norm() ** 2
    assert not teacher.output_hidden_states  # the teacher is left as it was


def test_same_sizes_give_the_teachers_attention_and_feed_forward_exactly():
    # With equal sizes the projection is a rotation and no rank is cut: each block's output,
    # rotated, must equal the student's on the rotated input.
    teacher, student = model(config(), seed=0), model(config(), seed=1)
    batch = sample()
    init_student_from_teacher(student, teacher, batch)
    rotation = hidden_state_directions(teacher, batch, 32)
    x = torch.randn(10, 32)
    with torch.no_grad():
        for layer_S, layer_T in zip(student.bert.encoder.layer, teacher.bert.encoder.layer):
            torch.testing.assert_close(
                attention_sublayer(layer_S.attention, x @ rotation),
                attention_sublayer(layer_T.attention, x) @ rotation,
                atol=1e-4,
                rtol=1e-4,
            )
            torch.testing.assert_close(
                feed_forward(layer_S, x @ rotation), feed_forward(layer_T, x) @ rotation, atol=1e-4, rtol=1e-4
            )
        torch.testing.assert_close(
            student.bert.embeddings.word_embeddings.weight,
            teacher.bert.embeddings.word_embeddings.weight @ rotation,
        )


def test_same_sizes_end_to_end_are_close_but_not_exact():
    """README: exact block by block, not end to end: LayerNorm normalises over the hidden
    coordinates, which a rotation changes, so the whole student only approximates the teacher."""
    teacher, student = model(config(), seed=0), model(config(), seed=1)
    batch = sample()
    init_student_from_teacher(student, teacher, batch)
    rotation = hidden_state_directions(teacher, batch, 32)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        logits_T, logits_S = teacher(**batch)["logits"], student(**batch)["logits"]
        states_T = teacher.bert(**batch, output_hidden_states=True).hidden_states
        states_S = student.bert(**batch, output_hidden_states=True).hidden_states
        random_logits = model(config(), seed=1)(**batch)["logits"]
    error = ((logits_S - logits_T).norm() / logits_T.norm()).item()
    assert 1e-3 < error < 0.25  # close, and not exact
    assert ((random_logits - logits_T).norm() / logits_T.norm()).item() > 1.0
    for layer, (state_S, state_T) in enumerate(zip(states_S, states_T)):
        similarity = torch.cosine_similarity(state_S[real], state_T[real] @ rotation).mean().item()
        assert 0.9 < similarity < 0.9999, layer


def test_smaller_heads_keep_the_best_low_rank_attention_scores():
    teacher = model(config(), seed=0)
    student = model(config(hidden=24, layers=2, intermediate=48), seed=1)  # heads of 6, not 8
    batch = sample()
    init_student_from_teacher(student, teacher, batch)
    projection = hidden_state_directions(teacher, batch, 24)
    x_S = torch.randn(10, 24)
    x_T = x_S @ projection.T  # a stream inside the student's subspace
    layer_S, layer_T = student.bert.encoder.layer[0], teacher.bert.encoder.layer[1]
    with torch.no_grad():
        for head in range(4):

            def scores(attention, x, size, head=head):
                rows = slice(head * size, (head + 1) * size)
                q = x @ attention.query.weight[rows].T + attention.query.bias[rows]
                k = x @ attention.key.weight[rows].T + attention.key.bias[rows]
                return q @ k.T / math.sqrt(size)

            target = scores(layer_T.attention.self, x_T, 8)
            error = (scores(layer_S.attention.self, x_S, 6) - target).norm() / target.norm()
            assert error < 0.5  # rank 6 of 8: most of the scores survive


def test_narrow_student_starts_close_to_the_teacher():
    teacher = model(config(), seed=0)
    batch = sample()
    projection = hidden_state_directions(teacher, batch, 24)
    with torch.no_grad():
        target = teacher.bert(**batch, output_hidden_states=True).hidden_states
    real = batch["attention_mask"].bool()

    def similarity(student):
        with torch.no_grad():
            states = student.bert(**batch, output_hidden_states=True).hidden_states
        # Student layer 1 starts from teacher layer 2 (index 1 + 1 in the hidden-state list).
        return torch.cosine_similarity(states[1][real], target[2][real] @ projection).mean()

    initialised = model(config(hidden=24, layers=2, intermediate=48), seed=1)
    init_student_from_teacher(initialised, teacher, batch)
    random_student = model(config(hidden=24, layers=2, intermediate=48), seed=1)
    assert similarity(initialised) > 0.6 > similarity(random_student) + 0.3


@pytest.mark.parametrize(
    "student_config, message",
    [
        (config(heads=2), "2 attention heads"),
        (config(hidden=48, heads=4), "hidden_size 48"),
        (config(layers=5), "num_hidden_layers 5"),
    ],
)
def test_students_that_do_not_fit_are_refused(student_config, message):
    with pytest.raises(ValueError, match=message):
        init_student_from_teacher(model(student_config, 1), model(config(), 0), sample())
