"""MultiTaskDistiller as TextBrewer 0.2.1 documents it, on two toy tasks: one teacher per task,
one student with a head per task, dicts of adaptors and dataloaders keyed by task name, and
batch postprocessors that tell the models which task a batch is from.

Only its import lines name this project; tests/core/test_textbrewer_programs.py points them back at
TextBrewer 0.2.1 and compares the two runs.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertModel

from distillation import DistillationConfig, MultiTaskDistiller, TrainingConfig

VOCAB, LENGTH = 30, 8
TASKS = {"parity": 2, "topic": 3}  # task name -> number of classes


class TaskModel(torch.nn.Module):
    """A tiny BERT with one classification head per task; returns (loss, logits, hidden states)."""

    def __init__(self, hidden_size, layers, tasks):
        super().__init__()
        self.bert = BertModel(
            BertConfig(
                vocab_size=VOCAB,
                hidden_size=hidden_size,
                num_hidden_layers=layers,
                num_attention_heads=2,
                intermediate_size=2 * hidden_size,
                max_position_embeddings=LENGTH,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
                return_dict=False,
                attn_implementation="eager",
            ),
            add_pooling_layer=False,
        )
        self.heads = torch.nn.ModuleDict({task: torch.nn.Linear(hidden_size, n) for task, n in tasks.items()})

    def forward(self, input_ids, attention_mask, labels, task):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)[
            -1
        ]  # the hidden states come last
        logits = self.heads[task](hidden[-1][:, 0])
        return torch.nn.functional.cross_entropy(logits, labels), logits, hidden


class TaskDataset(Dataset):
    def __init__(self, size, num_classes, seed):
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, VOCAB, (size, LENGTH), generator=generator)
        self.labels = self.input_ids[:, 1] % num_classes  # learnable from one token

    def __getitem__(self, index):
        return {
            "input_ids": self.input_ids[index],
            "attention_mask": torch.ones(LENGTH, dtype=torch.long),
            "labels": self.labels[index],
        }

    def __len__(self):
        return len(self.labels)


def adaptor(batch, outputs):
    return {
        "losses": outputs[0],
        "logits": outputs[1],
        "hidden": outputs[2],
        "inputs_mask": batch["attention_mask"],
    }


def tell_task(task):
    return lambda batch: {**batch, "task": task}


def main(output_dir, num_steps=6, tau=1, seed=0, sizes=(48, 16), callback=None, accumulation=1, log_dir=None):
    torch.manual_seed(seed)
    teachers = {task: TaskModel(32, 3, {task: n}) for task, n in TASKS.items()}
    student = TaskModel(16, 2, TASKS)
    dataloaders = {
        task: DataLoader(TaskDataset(size, TASKS[task], seed=i), batch_size=8)
        for i, (task, size) in enumerate(zip(TASKS, sizes))
    }
    train_config = TrainingConfig(
        device="cpu",
        output_dir=output_dir,
        ckpt_steps=3,
        log_dir=log_dir,
        gradient_accumulation_steps=accumulation,
    )
    distill_config = DistillationConfig(
        temperature=4,
        hard_label_weight=0.5,
        intermediate_matches=[
            {
                "layer_T": 3,
                "layer_S": 2,
                "feature": "hidden",
                "loss": "hidden_mse",
                "weight": 1,
                "proj": ["linear", 16, 32],
            }
        ],
    )
    distiller = MultiTaskDistiller(
        train_config,
        distill_config,
        teachers,
        student,
        adaptor_T={task: adaptor for task in TASKS},
        adaptor_S={task: adaptor for task in TASKS},
    )
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    np.random.seed(seed)  # the task draws
    with distiller:
        distiller.train(
            optimizer,
            dataloaders,
            num_steps=num_steps,
            tau=tau,
            callback=callback,
            batch_postprocessors={task: tell_task(task) for task in TASKS},
        )
    return student
