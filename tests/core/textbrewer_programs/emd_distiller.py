"""A BERT-EMD distiller written the way TextBrewer 0.2.1 users write distillers (the style of
the seed's original distiller_emd.py): a subclass of distiller_basic.BasicDistiller, everything
else from a star import of distiller_utils, train_on_batch(batch, args) overridden with
get_outputs_from_batch and post_adaptor, compute_loss computing every term itself.

Only its import lines name this project; tests/core/test_textbrewer_programs.py points them back at
TextBrewer 0.2.1 and compares the two runs.
"""

from pyemd import emd_with_flow
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification

from distillation.distiller_basic import BasicDistiller
from distillation.distiller_utils import *


class EMDDistiller(BasicDistiller):
    """KD + hard labels + BERT-EMD between all student and teacher layers + embeddings MSE.

    emd: {'layer_num_S': student layers + 1, 'layer_num_T': teacher layers + 1,
          'feature': 'hidden', 'loss': 'hidden_mse', 'weight': w, 'proj': [kind, dim_S, dim_T]}
    """

    def __init__(
        self, train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S, emd: Optional[Dict] = None
    ):
        super(EMDDistiller, self).__init__(
            train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S
        )
        self.d_config.is_caching_logits = False
        self.layer_num_S, self.layer_num_T = emd["layer_num_S"], emd["layer_num_T"]
        self.emd_feature, self.emd_loss_type, self.emd_loss_weight = (
            emd["feature"],
            emd["loss"],
            emd["weight"],
        )
        assert self.emd_feature in FEATURES
        # layer weights, embeddings excluded
        self.feature_weight_S = np.ones(self.layer_num_S - 1) / (self.layer_num_S - 1)
        self.feature_weight_T = np.ones(self.layer_num_T - 1) / (self.layer_num_T - 1)
        self.projs, self.projs_group = [], []
        kind, dim_in, dim_out = emd["proj"]
        for _ in range(self.layer_num_S):
            self.projs.append(PROJ_MAP[kind](dim_in, dim_out).to(self.t_config.device))
            self.projs_group.append(dict())

    def train_on_batch(self, batch, args):
        (teacher_batch, results_T), (student_batch, results_S) = get_outputs_from_batch(
            batch, self.t_config.device, self.model_T, self.model_S, args
        )
        results_T = post_adaptor(self.adaptor_T(teacher_batch, results_T))
        results_S = post_adaptor(self.adaptor_S(student_batch, results_S))
        return self.compute_loss(results_S, results_T)

    def compute_loss(self, results_S, results_T):
        losses_dict = dict()
        total_loss = 0
        logits_list_S, logits_list_T = results_S["logits"], results_T["logits"]
        if "logits_mask" in results_S:
            logits_list_S = select_logits_with_mask(logits_list_S, results_S["logits_mask"])
        if "logits_mask" in results_T:
            logits_list_T = select_logits_with_mask(logits_list_T, results_T["logits_mask"])
        total_kd_loss = 0
        for l_T, l_S in zip(logits_list_T, logits_list_S):
            temperature = self.d_config.temperature
            if self.d_config.temperature_scheduler is not None:
                temperature = self.d_config.temperature_scheduler(l_S, l_T, self.d_config.temperature)
            total_kd_loss += self.kd_loss(l_S, l_T, temperature)
        total_loss += total_kd_loss * self.d_config.kd_loss_weight
        losses_dict["unweighted_kd_loss"] = total_kd_loss

        match_loss = MATCH_LOSS_MAP[self.emd_loss_type]
        mask = results_S.get("inputs_mask", None)
        states_S = [proj(s) for proj, s in zip(self.projs, results_S[self.emd_feature])]
        states_T = list(results_T[self.emd_feature])
        layers_S, layers_T = states_S[1:], states_T[1:]
        num_S, num_T = len(layers_S), len(layers_T)
        distances = torch.zeros([num_S + num_T, num_S + num_T]).to(layers_S[0])
        for s in range(num_S):
            for t in range(num_T):
                distances[s][num_S + t] = distances[num_S + t][s] = match_loss(
                    layers_S[s], layers_T[t], mask=mask
                )
        weights_S = np.concatenate([self.feature_weight_S, np.zeros(num_T)])
        weights_T = np.concatenate([np.zeros(num_S), self.feature_weight_T])
        _, flow = emd_with_flow(weights_S, weights_T, distances.detach().cpu().numpy().astype("float64"))
        emd_loss = torch.sum(torch.tensor(flow).to(distances) * distances)
        total_loss += emd_loss * self.emd_loss_weight
        losses_dict[f"unweighted_{self.emd_feature}_{self.emd_loss_type}_emd"] = emd_loss

        embedding_loss = match_loss(states_S[0], states_T[0], mask=mask)
        total_loss += embedding_loss * self.emd_loss_weight
        losses_dict[f"unweighted_embedding_{self.emd_loss_type}"] = embedding_loss

        if "losses" in results_S:
            total_hl_loss = sum(loss.mean() for loss in results_S["losses"])
            total_loss += total_hl_loss * self.d_config.hard_label_weight
            losses_dict["unweighted_hard_label_loss"] = total_hl_loss
        return total_loss, losses_dict


def bert(hidden_size, layers):
    return BertForSequenceClassification(
        BertConfig(
            vocab_size=50,
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=12,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            output_hidden_states=True,
            return_dict=False,
            attn_implementation="eager",
            num_labels=3,
        )
    )


def adaptor(batch, outputs):
    # outputs with labels: (loss, logits, hidden states)
    return {
        "losses": outputs[0],
        "logits": outputs[1],
        "hidden": outputs[2],
        "inputs_mask": batch["attention_mask"],
    }


def main(output_dir, num_steps=4, seed=0):
    torch.manual_seed(seed)
    teacher, student = bert(32, 4), bert(16, 2)
    input_ids = torch.randint(1, 50, (48, 12))
    attention_mask = (torch.arange(12)[None, :] < torch.randint(4, 13, (48, 1))).long()
    labels = torch.randint(0, 3, (48,))
    examples = [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(input_ids * attention_mask, attention_mask, labels)
    ]
    dataloader = DataLoader(examples, batch_size=16)
    train_config = TrainingConfig(device="cpu", output_dir=output_dir, ckpt_steps=num_steps)
    distill_config = DistillationConfig(temperature=4, hard_label_weight=0.5)
    distiller = EMDDistiller(
        train_config,
        distill_config,
        teacher,
        student,
        adaptor,
        adaptor,
        emd={
            "layer_num_S": 3,
            "layer_num_T": 5,
            "feature": "hidden",
            "loss": "hidden_mse",
            "weight": 1.0,
            "proj": ["linear", 16, 32],
        },
    )
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    with distiller:
        distiller.train(optimizer, dataloader, num_steps=num_steps)
    return student
