"""The BERT classifier of every task, and its adaptor for the distillers (pipeline/checkpoints.py
loads its weights)."""

import copy

import torch
from torch import nn
from transformers import BertModel

# The label of an example without one (a transfer set's): cross_entropy's ignore_index, so it
# has no hard-label term; a regression task's unknown score is NaN.
UNLABELLED = -100

try:  # transformers releases that install their hooks for hidden states at the first forward
    from transformers.utils.output_capturing import maybe_install_capturing_hooks
except ImportError:
    maybe_install_capturing_hooks = None


class BertForGLUESimple(nn.Module):
    """BERT encoder + dropout + linear classifier on the pooled [CLS] vector. With one output
    (num_labels 1) it is a regressor, as for STS-B: its loss is the mean squared error.

    What forward returns beyond the logits is fixed here, at construction, so a model that is
    only trained or evaluated never keeps the per-layer tensors:
      output_hidden_states: also return the embeddings output and every layer's output;
      output_attentions: also return every layer's attention probabilities (this needs the eager
        attention: SDPA computes no attention maps, so it is used only when they are not asked for).
    return_features also chooses layers whose query, key and value vectors ('relations') or
    pre-softmax attention scores ('attention_scores') forward returns: those are recomputed from
    the layer's input through its own projections, so every layer keeps SDPA.
    """

    def __init__(self, config, num_labels, output_hidden_states=False, output_attentions=False):
        super().__init__()
        config = copy.deepcopy(config)  # the caller's config stays as it was
        if output_attentions:
            config._attn_implementation = "eager"
        self.bert = BertModel(config, add_pooling_layer=True)
        self.config = self.bert.config
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.num_labels = num_labels
        self.output_hidden_states = output_hidden_states
        self.output_attentions = output_attentions
        self.relation_layers = ()
        self.score_layers = ()

    def return_features(self, hidden, attention, relation=(), attention_scores=()):
        """Choose what forward returns beyond the logits (see the class docstring).

        relation, attention_scores: encoder layers, indexed from 0 as the attention maps are
        (layer k of the model is index k - 1), whose query, key and value vectors or whose
        pre-softmax scores forward returns; none by default.
        """
        self.output_hidden_states = hidden
        self.output_attentions = attention
        self.relation_layers = self._layers(relation, "relation")
        self.score_layers = self._layers(attention_scores, "attention_scores")
        if attention and self.bert.config._attn_implementation != "eager":
            self.bert.set_attn_implementation("eager")  # SDPA computes no attention maps

    def _layers(self, layers, feature):
        count = self.config.num_hidden_layers
        wrong = [layer for layer in layers if not (isinstance(layer, int) and 0 <= layer < count)]
        if wrong:
            raise ValueError(
                f"return_features: {feature} layers {wrong} are out of range for a model with "
                f"{count} layers (indices 0 to {count - 1})"
            )
        return tuple(sorted(set(layers)))

    def compile(self, *args, **kwargs):
        """nn.Module.compile, once transformers' hooks that collect hidden states and attention
        maps are in place: it installs them at the first forward that asks for them, which
        torch.compile cannot trace (a graph break in every compiled forward)."""
        if maybe_install_capturing_hooks is not None:
            maybe_install_capturing_hooks(self.bert)
        super().compile(*args, **kwargs)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """input_ids, attention_mask, token_type_ids: (B, L) integer tensors; labels: (B,).

        Returns a dict:
          'logits': (B, num_labels);
          'hidden_states' (if built with them): num_hidden_layers + 1 tensors (B, L, H),
            the embeddings output first;
          'attentions' (if built with them): num_hidden_layers tensors (B, heads, L, L), the
            softmax probabilities (in training mode, after attention dropout as BERT uses them);
          'relations' (if asked for layers): num_hidden_layers entries, None but at those layers:
            (3, B, L, H), the layer's query, key and value vectors (relation_kl's feature);
          'attention_scores' (if asked for layers): num_hidden_layers entries, None but at those
            layers: (B, heads, L, L), Q K^T / sqrt(head size) with -10000 added at padded keys, as
            TinyBERT's BERT returns them (att_score_mse's feature);
          'loss' (if labels are given): hard_label_loss, a scalar: the mean cross-entropy (the
            mean squared error with one output) over the examples that have a label.
        """
        mask_2d = attention_mask
        if attention_mask is not None and attention_mask.is_cuda:
            attention_mask = expanded_attention_mask(attention_mask, self.bert.config._attn_implementation)
        per_layer = bool(self.relation_layers or self.score_layers)  # read from each layer's input
        encoded = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=self.output_hidden_states or per_layer,
            output_attentions=self.output_attentions,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(encoded.pooler_output))
        outputs = {"logits": logits}
        if self.output_hidden_states:
            outputs["hidden_states"] = encoded.hidden_states
        if per_layer:
            outputs.update(self._attention_features(encoded.hidden_states, mask_2d))
        if self.output_attentions:
            outputs["attentions"] = encoded.attentions
        if labels is not None:
            outputs["loss"] = hard_label_loss(logits, labels)
        return outputs

    def _attention_features(self, hidden_states, attention_mask):
        """'relations' and 'attention_scores' of the layers asked for. Layer k's input is
        hidden_states[k] (the embeddings output, or layer k-1's output), and its own query, key
        and value projections give exactly the vectors its attention used: no dropout lies
        between them."""
        count = self.config.num_hidden_layers
        relations, scores = [None] * count, [None] * count
        for k in sorted(set(self.relation_layers) | set(self.score_layers)):
            attention = self.bert.encoder.layer[k].attention.self
            inputs = hidden_states[k]
            query, key = attention.query(inputs), attention.key(inputs)
            if k in self.relation_layers:
                relations[k] = torch.stack([query, key, attention.value(inputs)])
            if k in self.score_layers:
                scores[k] = pre_softmax_scores(attention, query, key, attention_mask)
        outputs = {}
        if self.relation_layers:
            outputs["relations"] = relations
        if self.score_layers:
            outputs["attention_scores"] = scores
        return outputs


# BERT's original additive mask value, which TinyBERT's attention loss expects at padded keys.
TINYBERT_MASK_VALUE = -10000.0


def pre_softmax_scores(attention, query, key, attention_mask=None):
    """(B, heads, L, L): each head's Q K^T times the module's scaling (1 / sqrt(head size)), plus
    -10000 at padded keys when a (B, L) attention_mask is given. attention: a BertSelfAttention;
    query, key: (B, L, H) from its projections."""
    batch, length = query.shape[:2]
    size = attention.attention_head_size
    query = query.view(batch, length, -1, size).transpose(1, 2)
    key = key.view(batch, length, -1, size).transpose(1, 2)
    scores = torch.matmul(query, key.transpose(-1, -2)) * attention.scaling
    if attention_mask is not None:
        padded = (1.0 - attention_mask[:, None, None, :].to(scores.dtype)) * TINYBERT_MASK_VALUE
        scores = scores + padded
    return scores


def hard_label_loss(logits, labels):
    """The mean cross-entropy (a regressor's mean squared error) over the examples that have a
    label; 0, with zero gradients, for a batch of unlabelled examples only (UNLABELLED, NaN)."""
    if logits.size(-1) == 1:
        known = ~torch.isnan(labels)
        errors = torch.where(known, logits.squeeze(-1).float() - labels.nan_to_num(), 0.0)
        return errors.pow(2).sum() / known.sum().clamp(min=1)
    loss = nn.functional.cross_entropy(logits, labels, ignore_index=UNLABELLED)  # NaN if none has one
    return torch.where((labels != UNLABELLED).any(), loss, torch.zeros_like(loss))


def expanded_attention_mask(attention_mask, attn_implementation):
    """The (B, 1, 1, L) mask BERT's attention applies, made from the (B, L) one as transformers
    makes it: additive float32 for eager attention, boolean for SDPA.

    Given a 2-D mask, transformers first checks on the host whether it pads anything at all (to
    skip it), so every forward on a GPU would wait for the GPU. A 4-D mask is used as given.
    """
    if attn_implementation not in ("eager", "sdpa"):
        return attention_mask  # other kernels take the 2-D mask itself
    keep = attention_mask[:, None, None, :].bool()
    if attn_implementation == "sdpa":
        return keep
    return torch.zeros(keep.shape, device=keep.device).masked_fill_(~keep, torch.finfo(torch.float32).min)


def BertForGLUESimpleAdaptor(batch, model_outputs):
    """Translate a batch and BertForGLUESimple's outputs into the names the distillers read."""
    adapted = {"logits": model_outputs["logits"], "inputs_mask": batch["attention_mask"]}
    if "hidden_states" in model_outputs:
        adapted["hidden"] = model_outputs["hidden_states"]
    if "attentions" in model_outputs:
        adapted["attention"] = model_outputs["attentions"]
    if "relations" in model_outputs:
        adapted["relation"] = model_outputs["relations"]
    if "attention_scores" in model_outputs:
        adapted["attention_scores"] = model_outputs["attention_scores"]
    if "loss" in model_outputs:
        adapted["losses"] = model_outputs["loss"]
    if "labels" in batch:
        adapted["labels"] = batch["labels"]
    return adapted


def check_max_seq_length(max_seq_length, bert_config, what, config_file=None):
    """--max_seq_length must fit the position embeddings of every model that reads the features."""
    limit = bert_config.max_position_embeddings
    if max_seq_length > limit:
        where = f" ({config_file})" if config_file else ""
        raise ValueError(
            f"--max_seq_length {max_seq_length} exceeds the {what}'s max_position_embeddings {limit}{where}"
        )
