"""BertForGLUESimple and its adaptor (its checkpoints: test_checkpoints.py)."""

import pytest
import torch

from modeling import BertForGLUESimpleAdaptor, expanded_attention_mask
from tests.helpers import BATCH, LENGTH, NUM_LABELS, make_batch, make_model, model_bert_config


@pytest.fixture
def config(tmp_path):
    return model_bert_config(tmp_path)


# --- the model -------------------------------------------------------------------------------


def test_logits_only_by_default(config):
    batch = make_batch(config)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    outputs = make_model(config)(**inputs)
    assert set(outputs) == {"logits"}
    assert outputs["logits"].shape == (BATCH, NUM_LABELS)


def test_hidden_states_and_attentions_when_built_with_them(config):
    model = make_model(config, output_hidden_states=True, output_attentions=True)
    outputs = model(**make_batch(config))
    assert set(outputs) == {"logits", "hidden_states", "attentions", "loss"}
    hidden, attentions = outputs["hidden_states"], outputs["attentions"]
    assert len(hidden) == config.num_hidden_layers + 1
    assert all(h.shape == (BATCH, LENGTH, config.hidden_size) for h in hidden)
    assert len(attentions) == config.num_hidden_layers
    assert all(a.shape == (BATCH, config.num_attention_heads, LENGTH, LENGTH) for a in attentions)
    for a in attentions:  # probabilities: each row sums to one, padding gets none
        torch.testing.assert_close(a.sum(-1), torch.ones(BATCH, config.num_attention_heads, LENGTH))
        assert a[1, :, :, 5:].abs().max() < 1e-6


def test_the_embeddings_output_comes_first(config):
    model = make_model(config, output_hidden_states=True)
    batch = make_batch(config)
    expected = model.bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
    torch.testing.assert_close(model(**batch)["hidden_states"][0], expected)


def test_attentions_use_eager_only_when_asked(config):
    plain = make_model(config, output_hidden_states=True)
    assert "attentions" not in plain(**make_batch(config))
    assert plain.config._attn_implementation == "sdpa"
    with_maps = make_model(config, output_attentions=True)
    assert with_maps.config._attn_implementation == "eager"
    assert config._attn_implementation != "eager"  # the caller's config is left alone
    # Same weights, same logits: the eager path computes the same function.
    torch.testing.assert_close(
        with_maps(**make_batch(config))["logits"], plain(**make_batch(config))["logits"]
    )


@pytest.mark.parametrize("attention", [False, True], ids=["sdpa", "eager"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_the_4d_mask_made_for_gpus_changes_nothing(config, attention, padded):
    # On CUDA, forward hands BERT this mask instead of the 2-D one (which transformers reads on
    # the host); on the CPU it must compute exactly the same, with either attention kernel.
    model = make_model(config, output_attentions=attention)
    batch = make_batch(config)
    mask = batch["attention_mask"] if padded else torch.ones_like(batch["attention_mask"])
    expanded = expanded_attention_mask(mask, model.config._attn_implementation)
    assert expanded.shape == (BATCH, 1, 1, LENGTH)
    as_2d = model.bert(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
    as_4d = model.bert(input_ids=batch["input_ids"], attention_mask=expanded).last_hidden_state
    assert torch.equal(as_2d, as_4d)


def test_loss_is_the_mean_cross_entropy_of_the_logits(config):
    model = make_model(config)
    batch = make_batch(config)
    outputs = model(**batch)
    log_probs = outputs["logits"].log_softmax(dim=-1)
    expected = -log_probs[torch.arange(BATCH), batch["labels"]].mean()
    torch.testing.assert_close(outputs["loss"], expected)


def test_adaptor_passes_on_what_the_model_returned(config):
    batch = make_batch(config)
    full = make_model(config, output_hidden_states=True, output_attentions=True)
    outputs = full(**batch)
    adapted = BertForGLUESimpleAdaptor(batch, outputs)
    assert set(adapted) == {"logits", "hidden", "attention", "inputs_mask", "losses", "labels"}
    assert adapted["logits"] is outputs["logits"] and adapted["hidden"] is outputs["hidden_states"]
    assert adapted["attention"] is outputs["attentions"] and adapted["losses"] is outputs["loss"]
    assert adapted["inputs_mask"] is batch["attention_mask"] and adapted["labels"] is batch["labels"]
    unlabelled = {k: v for k, v in batch.items() if k != "labels"}
    adapted = BertForGLUESimpleAdaptor(unlabelled, make_model(config)(**unlabelled))
    assert set(adapted) == {"logits", "inputs_mask"}
