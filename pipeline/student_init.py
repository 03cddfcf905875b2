"""Start a smaller student from the teacher: its weights projected onto the student's sizes.

A randomly initialised student has to learn the language from the task's training set alone;
on a small set it never does. This module builds the student's weights from a fine-tuned
teacher instead, for any student with the teacher's vocabulary and number of attention heads
and no larger sizes:

- width: the residual stream (every layer's output) is projected onto its top principal
  directions, measured on a sample of the teacher's hidden states: P (H_T, H_S), orthonormal
  columns. Weights that read the stream are multiplied by P, weights that write it by P^T.
- attention heads of a smaller size: per head, the query-key product and the value-output
  product are low-rank matrices; each is cut to the student's head size by its SVD, the best
  approximation of that rank.
- feed-forward width: the intermediate units with the largest weights (in times out) are kept.
- depth: student layer i (1-based) starts from teacher layer ceil(i * L_T / L_S), the layer map
  of the matches presets (4 of 12: 3, 6, 9, 12; 4 of 6: 2, 3, 5, 6).
- LayerNorm scales: the diagonal of the projected scale, corrected for the smaller width.

The result is an approximation (layers are skipped, and LayerNorm does not commute with the
projection), a starting point for distillation, not a finished model.
"""

import logging
import math

import torch

from matches import uniform_layer_map

logger = logging.getLogger(__name__)


def teacher_layer_map(num_layers_S, num_layers_T):
    """The index in teacher.bert.encoder.layer of the layer each student layer starts from:
    matches.uniform_layer_map's layer (numbered from 1 there, 0 being the embeddings) minus 1."""
    return [layer_T - 1 for _, layer_T in uniform_layer_map(num_layers_S, num_layers_T)[1:]]


@torch.no_grad()
def init_student_from_teacher(student, teacher, sample_batch):
    """Overwrite every weight of `student` (BertForGLUESimple) with the projected teacher's.

    sample_batch: a dict of input_ids, attention_mask, token_type_ids (B, L), on the teacher's
    device; the principal directions of the hidden states are measured on its real tokens.
    """
    _check_shapes(student.config, teacher.config)
    projection = hidden_state_directions(teacher, sample_batch, student.config.hidden_size)
    bert_S, bert_T = student.bert, teacher.bert
    width_ratio = teacher.config.hidden_size / student.config.hidden_size

    def project_layer_norm(norm_S, norm_T):
        # gamma * x projected is roughly (P^T diag(gamma) P) x; keep its diagonal. x has unit
        # variance over H_T coordinates; over fewer coordinates it is larger by sqrt(H_T / H_S).
        scale = torch.diagonal(projection.T @ torch.diag(norm_T.weight) @ projection)
        norm_S.weight.copy_(scale * math.sqrt(width_ratio))
        norm_S.bias.copy_(norm_T.bias @ projection)

    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        table_S, table_T = getattr(bert_S.embeddings, name).weight, getattr(bert_T.embeddings, name).weight
        table_S.copy_(table_T[: table_S.shape[0]] @ projection)
    project_layer_norm(bert_S.embeddings.LayerNorm, bert_T.embeddings.LayerNorm)

    layer_map = teacher_layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    for layer_S, index_T in zip(bert_S.encoder.layer, layer_map):
        layer_T = bert_T.encoder.layer[index_T]
        _project_attention(
            layer_S.attention, layer_T.attention, projection, student.config.num_attention_heads
        )
        project_layer_norm(layer_S.attention.output.LayerNorm, layer_T.attention.output.LayerNorm)
        _project_feed_forward(layer_S, layer_T, projection)
        project_layer_norm(layer_S.output.LayerNorm, layer_T.output.LayerNorm)

    bert_S.pooler.dense.weight.copy_(projection.T @ bert_T.pooler.dense.weight @ projection)
    bert_S.pooler.dense.bias.copy_(bert_T.pooler.dense.bias @ projection)
    student.classifier.weight.copy_(teacher.classifier.weight @ projection)
    student.classifier.bias.copy_(teacher.classifier.bias)
    logger.info(
        "student: initialised from the teacher (hidden %d -> %d, teacher layers %s)",
        teacher.config.hidden_size,
        student.config.hidden_size,
        [index + 1 for index in layer_map],
    )


def hidden_state_directions(teacher, sample_batch, size, chunk=32):
    """P (H_T, size): the top principal directions of the teacher's hidden states (all layers,
    real tokens, not centred, so the mean direction is kept too): the top eigenvectors of their
    Gram matrix, accumulated `chunk` examples at a time to keep memory small."""
    was_returning = teacher.output_hidden_states
    teacher.output_hidden_states = True
    hidden_size = teacher.config.hidden_size
    gram = torch.zeros(hidden_size, hidden_size, dtype=torch.float64, device=sample_batch["input_ids"].device)
    try:
        for start in range(0, len(sample_batch["input_ids"]), chunk):
            part = {key: tensor[start : start + chunk] for key, tensor in sample_batch.items()}
            real = part["attention_mask"].bool()
            for states in teacher(**part)["hidden_states"]:
                tokens = states[real].double()
                gram += tokens.T @ tokens
    finally:
        teacher.output_hidden_states = was_returning
    _, eigenvectors = torch.linalg.eigh(gram)  # eigenvalues in ascending order
    return eigenvectors[:, -size:].flip(-1).float().contiguous()


def _low_rank_factors(product, rank):
    """(left (m, rank), right (rank, n)) with left @ right the best rank-`rank` approximation."""
    u, s, vh = torch.linalg.svd(product, full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def _project_attention(attention_S, attention_T, projection, num_heads):
    self_S, self_T = attention_S.self, attention_T.self
    head_T = self_T.attention_head_size
    head_S = self_S.attention_head_size
    out_S, out_T = attention_S.output.dense, attention_T.output.dense
    # Scores are divided by sqrt(head size): rescale so the student's scores equal the teacher's.
    score_scale = math.sqrt(head_S / head_T)

    def reads_stream(linear, rows):  # [W P | b] (head_T, H_S + 1): the head's map of [x_S, 1]
        return torch.cat([linear.weight[rows] @ projection, linear.bias[rows, None]], dim=1)

    for head in range(num_heads):
        rows_T = slice(head * head_T, (head + 1) * head_T)
        rows_S = slice(head * head_S, (head + 1) * head_S)
        # Query-key: scores = [x,1] Q^T K [x,1]^T, a (H_S+1)-square matrix of rank head_T.
        query, key = reads_stream(self_T.query, rows_T), reads_stream(self_T.key, rows_T)
        left, right = _low_rank_factors(score_scale * query.T @ key, head_S)
        _set_head(self_S.query, rows_S, left.T)
        _set_head(self_S.key, rows_S, right)
        # Value-output: the head writes P^T O V [x,1] to the stream.
        value = reads_stream(self_T.value, rows_T)
        written = projection.T @ out_T.weight[:, rows_T] @ value  # (H_S, H_S + 1)
        left, right = _low_rank_factors(written, head_S)
        out_S.weight[:, rows_S] = left
        _set_head(self_S.value, rows_S, right)
    out_S.bias.copy_(out_T.bias @ projection)


def _set_head(linear, rows, weight_and_bias):
    linear.weight[rows] = weight_and_bias[:, :-1]
    linear.bias[rows] = weight_and_bias[:, -1]


def _project_feed_forward(layer_S, layer_T, projection):
    inner_T, outer_T = layer_T.intermediate.dense, layer_T.output.dense
    reads = inner_T.weight @ projection  # (I_T, H_S)
    writes = projection.T @ outer_T.weight  # (H_S, I_T)
    size = layer_S.intermediate.dense.out_features
    kept = (reads.norm(dim=1) * writes.norm(dim=0)).topk(size).indices.sort().values
    layer_S.intermediate.dense.weight.copy_(reads[kept])
    layer_S.intermediate.dense.bias.copy_(inner_T.bias[kept])
    layer_S.output.dense.weight.copy_(writes[:, kept])
    layer_S.output.dense.bias.copy_(outer_T.bias @ projection)


def _check_shapes(config_S, config_T):
    problems = []
    if config_S.vocab_size != config_T.vocab_size:
        problems.append(f"vocabulary {config_S.vocab_size} vs the teacher's {config_T.vocab_size}")
    if config_S.num_attention_heads != config_T.num_attention_heads:
        problems.append(
            f"{config_S.num_attention_heads} attention heads vs the teacher's {config_T.num_attention_heads}"
        )
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "max_position_embeddings",
        "type_vocab_size",
    ):
        if getattr(config_S, key) > getattr(config_T, key):
            problems.append(f"{key} {getattr(config_S, key)} > the teacher's {getattr(config_T, key)}")
    if problems:
        raise ValueError(
            "--init_student_from_teacher needs a student no larger than the teacher, "
            "with its vocabulary and head count: " + "; ".join(problems)
        )
