"""Tiny BERT classifiers and data for the core's tests, built from transformers' BertModel
directly: nothing here comes from the example (modeling.py, main.py, ...)."""

import os
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertModel

from distillation import TrainingConfig

VOCAB, LENGTH, SIGNAL = 20, 8, 4  # token SIGNAL in a sentence means label 1


class TinyClassifier(nn.Module):
    """BERT (eager attention, no dropout) + a linear head on position 0.

    forward returns 'logits' (batch, 2), 'hidden' (layers + 1 of (batch, length, hidden)),
    'attention' (layers of (batch, heads, length, length)) and, with labels, the per-example
    cross-entropy 'loss' (batch,). Keyword arguments beyond these are recorded in seen_kwargs.
    """

    def __init__(self, hidden_size, seed, layers=2):
        super().__init__()
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=LENGTH,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            attn_implementation="eager",
        )
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(hidden_size, 2)
        self.seen_kwargs = []

    def forward(self, input_ids, attention_mask, labels=None, **kwargs):
        self.seen_kwargs.append(kwargs)
        encoded = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            output_attentions=True,
        )
        logits = self.classifier(encoded.last_hidden_state[:, 0])
        outputs = {"logits": logits, "hidden": encoded.hidden_states, "attention": encoded.attentions}
        if labels is not None:
            outputs["loss"] = F.cross_entropy(logits.float(), labels, reduction="none")
        return outputs


def adaptor(batch, outputs):
    """For dict batches {'input_ids', 'attention_mask', 'labels'}."""
    results = {
        "logits": outputs["logits"],
        "hidden": outputs["hidden"],
        "attention": outputs["attention"],
        "inputs_mask": batch["attention_mask"],
    }
    if "loss" in outputs:
        results["losses"] = outputs["loss"]
    return results


def tuple_adaptor(batch, outputs):
    """For tuple batches (input_ids, attention_mask, labels)."""
    return {
        "logits": outputs["logits"],
        "losses": outputs["loss"],
        "inputs_mask": batch[1],
        "labels": batch[2],
    }


def make_data(n=64, seed=0):
    """Random sentences of 3..LENGTH tokens; label 1 where SIGNAL occurs."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(SIGNAL + 1, VOCAB, (n, LENGTH), generator=g)
    lengths = torch.randint(3, LENGTH + 1, (n,), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    for i in range(n):
        if labels[i]:
            ids[i, torch.randint(1, int(lengths[i]), (1,), generator=g)] = SIGNAL
    ids = ids * mask  # padding id 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class DictDataset(Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(next(iter(self.data.values())))

    def __getitem__(self, i):
        return {key: value[i] for key, value in self.data.items()}


def dict_loader(data, batch_size):
    return DataLoader(DictDataset(data), batch_size=batch_size, shuffle=False)


def whole(data):
    return {key: value.clone() for key, value in data.items()}


def train_config(tmp_path, **settings):
    return TrainingConfig(device="cpu", output_dir=str(tmp_path / "out"), **settings)


def checkpoint_steps(output_dir):
    names = [f for f in os.listdir(output_dir) if re.fullmatch(r"gs\d+\.pkl", f)]
    return sorted(int(name[2:-4]) for name in names)


def state_of(model):
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def kd_ce(logits_S, logits_T, temperature):
    return -(F.softmax(logits_T / temperature, -1) * F.log_softmax(logits_S / temperature, -1)).sum(-1).mean()


def masked_mse(a, b, mask):
    keep = mask.bool()
    return ((a[keep] - b[keep]) ** 2).mean()
