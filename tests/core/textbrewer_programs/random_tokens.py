"""TextBrewer's random-tokens example program, shrunk to tiny models, written for TextBrewer.

Its only changes for this project are the import lines (`import distillation as textbrewer`)
and for transformers 5: AdamW comes from torch.optim, and the BERT configs ask for tuple outputs
(return_dict=False) and eager attention. tests/core/test_textbrewer_programs.py runs it as it is and,
with the import lines pointed back at TextBrewer 0.2.1, compares the two runs.
"""

from functools import partial

import numpy as np
import torch
from torch.optim import AdamW
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup

import distillation as textbrewer
from distillation import DistillationConfig, GeneralDistiller, TrainingConfig

VOCAB, LENGTH = 100, 16


def tiny_bert_config(num_hidden_layers):
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        output_hidden_states=True,
        return_dict=False,
        attn_implementation="eager",
    )


class DictDataset(Dataset):
    def __init__(self, all_input_ids, all_attention_mask, all_labels):
        self.all_input_ids = all_input_ids
        self.all_attention_mask = all_attention_mask
        self.all_labels = all_labels

    def __getitem__(self, index):
        return {
            "input_ids": self.all_input_ids[index],
            "attention_mask": self.all_attention_mask[index],
            "labels": self.all_labels[index],
        }

    def __len__(self):
        return self.all_input_ids.size(0)


def simple_adaptor(batch, model_outputs):
    # with labels the outputs are (loss, logits, hidden states)
    return {"logits": model_outputs[1], "hidden": model_outputs[2], "inputs_mask": batch["attention_mask"]}


def predict(model, eval_dataset, step, device, accuracies):
    model.eval()
    correct = 0
    for batch in DataLoader(eval_dataset, batch_size=32):
        with torch.no_grad():
            logits, _ = model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            )
        correct += (logits.argmax(dim=-1).cpu() == batch["labels"]).sum().item()
    model.train()
    accuracies[step] = correct / len(eval_dataset)


def main(num_epochs=2, seed=0):
    """Runs the program; returns what it printed and the callback's accuracies by step."""
    device = torch.device("cpu")
    torch.manual_seed(seed)
    teacher_model = BertForSequenceClassification(tiny_bert_config(8))
    student_model = BertForSequenceClassification(tiny_bert_config(3))
    teacher_model.to(device=device)
    student_model.to(device=device)

    all_input_ids = torch.randint(low=0, high=VOCAB, size=(100, LENGTH))
    all_attention_mask = torch.ones_like(all_input_ids)
    all_labels = torch.randint(low=0, high=2, size=(100,))
    dataset = DictDataset(all_input_ids, all_attention_mask, all_labels)
    dataloader = DataLoader(dataset, batch_size=32)
    num_training_steps = len(dataloader) * num_epochs
    optimizer = AdamW(student_model.parameters(), lr=1e-4)
    scheduler_class = get_linear_schedule_with_warmup
    scheduler_args = {
        "num_warmup_steps": int(0.1 * num_training_steps),
        "num_training_steps": num_training_steps,
    }

    printed = []
    result, _ = textbrewer.utils.display_parameters(teacher_model, max_level=3)
    printed.append(result)
    result, _ = textbrewer.utils.display_parameters(student_model, max_level=3)
    printed.append(result)

    accuracies = {}
    callback_fun = partial(predict, eval_dataset=dataset, device=device, accuracies=accuracies)
    train_config = TrainingConfig(device=device)
    distill_config = DistillationConfig(
        temperature=8,
        hard_label_weight=0,
        kd_loss_type="ce",
        probability_shift=False,
        intermediate_matches=[
            {"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1},
            {"layer_T": 8, "layer_S": 2, "feature": "hidden", "loss": "hidden_mse", "weight": 1},
            {"layer_T": [0, 0], "layer_S": [0, 0], "feature": "hidden", "loss": "nst", "weight": 1},
            {"layer_T": [8, 8], "layer_S": [2, 2], "feature": "hidden", "loss": "nst", "weight": 1},
        ],
    )
    printed.append(str(train_config))
    printed.append(str(distill_config))

    distiller = GeneralDistiller(
        train_config=train_config,
        distill_config=distill_config,
        model_T=teacher_model,
        model_S=student_model,
        adaptor_T=simple_adaptor,
        adaptor_S=simple_adaptor,
    )
    with distiller:
        distiller.train(
            optimizer,
            dataloader,
            num_epochs=num_epochs,
            scheduler_class=scheduler_class,
            scheduler_args=scheduler_args,
            callback=callback_fun,
        )
    return printed, accuracies, np.mean(list(accuracies.values()))
