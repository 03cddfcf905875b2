"""BERT-EMD in full: what the published method adds to the tutorial of distiller_emd.py.

Read distiller_emd.py first. FullEMDDistiller is its EMDDistiller plus three things, each an
option that is off by default (with all of them off the loss is the tutorial's, bit for bit):

  attention=True        a second transport problem, over attention maps: D_att[i, j] is the
                        MSE between student layer i's and teacher layer j's attention maps on
                        the real tokens, solved with its own plan F_att; the loss adds
                        sum(F_att * D_att) beside the hidden-state term sum(F_hid * D_hid).
  update_weights=True   the layer weights learn: after each solve, every layer's weight becomes
                        inversely proportional to (the cost it carried) / (its weight), then
                        each side is normalised to sum to 1. Attention and hidden-state weights
                        are averaged into one shared set after each step, unless
                        separate_weights=True. The weights are saved in the resume state.
  two_stage=True        the authors' schedule: first the intermediate layers alone (the EMD
                        terms and the embedding term, no loss on the logits), then the
                        prediction layer alone (KD on the logits, plus the hard labels if their
                        weight is set). The first intermediate_share of the optimizer steps are
                        the first stage; the stage is read from the step, so a resumed run is
                        in the stage it was in.

The weight update, as in the authors' code (lxk00/BERT-EMD, bert_emd/emd_task_distill.py,
get_new_layer_weight): for student layer i with weight w_i, the cost it carried is
c_i = sum_j F[i, j] * D[i, j]; with r_i = c_i / w_i its new weight is (sum_k r_k) / r_i, and
the weights are normalised to sum to 1; the teacher's layers likewise over the columns. A layer
whose earth moves cheaply gains weight. The authors' function takes a temperature T but does
not use it (a softmax is defined beside it and never called): there is no temperature here.
"""

import numpy as np
import torch
import torch.distributed as dist

from distiller_emd import EMDDistiller, transport_plan

# A layer that carried no cost at all (distance exactly 0) would get an infinite weight.
MIN_COST = 1e-12
DEFAULT_INTERMEDIATE_SHARE = 0.5  # two_stage: half the steps in each stage


def option_problems(attention, update_weights, separate_weights, two_stage, intermediate_share):
    """What is wrong with a combination of FullEMDDistiller's options (the one check of them,
    made by the distiller and, before any file is read, by main.emd.py)."""
    problems = []
    if separate_weights and not (attention and update_weights):
        problems.append(
            "separate_weights keeps the attention and hidden-state layer weights "
            "apart: it needs attention and update_weights"
        )
    if intermediate_share is not None and not 0 < intermediate_share < 1:
        problems.append(f"intermediate_share must be in (0, 1), got {intermediate_share}")
    if intermediate_share != DEFAULT_INTERMEDIATE_SHARE and not two_stage:
        problems.append("intermediate_share splits the steps of two_stage, which is not set")
    return problems


def attention_distances(attention_S, attention_T, mask):
    """D[i, j] = MSE between student layer i's and teacher layer j's attention maps.

    attention_S: (L_S, batch, heads, length, length), attention_T: (L_T, ...) with the same
    number of heads; mask: (batch, length), 1 for real tokens. Only entries whose query and key
    are both real tokens count (the masked ones are zeroed, as att_mse_loss does with a mask),
    and the mean is over those entries and the heads, so extra padding changes nothing.
    Returns D: (L_S, L_T), in one batched computation like layer_distances.

    Unlike hidden states, attention probabilities of two layers are close compared with their
    norms (D is around 1e-6 while ||a||^2 / n is around 0.1), so the expansion
    ||s||^2 + ||t||^2 - 2 s.t would lose D to float32 rounding: it runs in float64.
    """
    dtype = attention_S.dtype
    mask = mask.double()
    pairs = (mask[:, :, None] * mask[:, None, :])[None, :, None]  # (1, batch, 1, length, length)
    masked_S, masked_T = attention_S.double() * pairs, attention_T.double() * pairs
    squares_S = masked_S.pow(2).flatten(1).sum(1)  # (L_S,)
    squares_T = masked_T.pow(2).flatten(1).sum(1)  # (L_T,)
    products = masked_S.flatten(1) @ masked_T.flatten(1).T  # (L_S, L_T)
    num_values = pairs.sum() * attention_S.size(2)  # real (query, key) pairs x heads
    return ((squares_S[:, None] + squares_T[None, :] - 2 * products).clamp_min(0) / num_values).to(dtype)


def updated_layer_weights(weights_S, weights_T, plan, distances):
    """The authors' update: new weight proportional to weight / carried cost, normalised."""
    carried = plan * distances

    def update(weights, costs):
        ratios = np.maximum(costs, MIN_COST) / weights
        inverse = ratios.sum() / ratios
        return inverse / inverse.sum()

    return update(weights_S, carried.sum(axis=1)), update(weights_T, carried.sum(axis=0))


class FullEMDDistiller(EMDDistiller):
    """EMDDistiller with attention EMD, learnt layer weights and the two-stage schedule.

    Takes EMDDistiller's arguments and the options of the module docstring. The hidden-state
    weights are the tutorial's layer_weights_S / layer_weights_T; the attention weights are
    attention_weights_S / attention_weights_T (the same arrays' values while they are shared).
    """

    STAGES = ("both", "intermediate", "prediction")

    def __init__(
        self,
        train_config,
        distill_config,
        model_T,
        model_S,
        adaptor_T,
        adaptor_S,
        emd_weight=1.0,
        attention=False,
        update_weights=False,
        separate_weights=False,
        two_stage=False,
        intermediate_share=DEFAULT_INTERMEDIATE_SHARE,
    ):
        super().__init__(
            train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S, emd_weight=emd_weight
        )
        problems = option_problems(attention, update_weights, separate_weights, two_stage, intermediate_share)
        if problems:
            raise ValueError("; ".join(problems))
        heads_S, heads_T = model_S.config.num_attention_heads, model_T.config.num_attention_heads
        if attention and heads_S != heads_T:
            raise ValueError(
                f"attention EMD compares attention maps head by head: the student has "
                f"{heads_S} heads, the teacher {heads_T}"
            )
        if two_stage and distill_config.kd_loss_weight == 0 and distill_config.hard_label_weight == 0:
            raise ValueError(
                "two_stage: the second stage trains on the logits, but kd_loss_weight "
                "and hard_label_weight are both 0"
            )
        self.attention, self.update_weights = attention, update_weights
        self.separate_weights, self.two_stage = separate_weights, two_stage
        self.intermediate_share = intermediate_share
        self.attention_weights_S = self.layer_weights_S.copy()
        self.attention_weights_T = self.layer_weights_T.copy()

    # ----- what the published method adds ---------------------------------------------------
    def features_read(self):
        return {"hidden", "attention"} if self.attention else {"hidden"}

    def stage(self):
        """'both' (one stage), or 'intermediate' / 'prediction', read from the training step."""
        if not self.two_stage:
            return "both"
        if self.total_steps is None:  # outside train(): as at step 0
            return "intermediate"
        first_stage_steps = round(self.intermediate_share * self.total_steps)
        return "intermediate" if self.global_step < first_stage_steps else "prediction"

    def compute_loss(self, results_S, results_T):
        stage = self.stage()
        prediction_loss, losses = self.compute_prediction_loss(results_S, results_T)
        if stage == "prediction":  # the EMD terms are not computed; logged as 0
            zero = prediction_loss.detach() * 0
            losses.update({name: zero for name in self._emd_term_names()})
            losses.update(self._weights_to_log(prediction_loss.device))
            return prediction_loss, losses

        # The hidden-state problem, as in the tutorial.
        embedding_loss, hidden_distances = self.hidden_state_terms(results_S, results_T)
        distances = [hidden_distances]  # (L_S, L_T)
        # The attention problem: same shape, so both matrices reach the CPU in one copy.
        if self.attention:
            if "attention" not in results_S or "attention" not in results_T:
                raise ValueError(
                    "attention EMD needs the attention maps: build the models with "
                    "output_attentions=True (main.emd.py does with --emd_attention)"
                )
            distances.append(
                attention_distances(
                    torch.stack(results_S["attention"]).float(),
                    torch.stack(results_T["attention"]).float(),
                    results_S["inputs_mask"],
                )
            )
        distances = torch.stack(distances)  # (1 or 2, L_S, L_T): hidden first
        plans = self._solve(distances.detach().double()).to(distances.device)
        hidden_emd = (plans[0] * distances[0]).sum()

        total_emd = hidden_emd + embedding_loss
        losses["unweighted_hidden_hidden_mse_emd"] = hidden_emd
        losses["unweighted_embedding_hidden_mse"] = embedding_loss
        if self.attention:
            attention_emd = (plans[1] * distances[1]).sum()
            total_emd = total_emd + attention_emd
            losses["unweighted_attention_attention_mse_emd"] = attention_emd
        losses.update(self._weights_to_log(distances.device))
        if stage == "intermediate":  # the logits' terms are logged, not trained
            return self.emd_weight * total_emd, losses
        return prediction_loss + self.emd_weight * total_emd, losses

    def _solve(self, distances):
        """Both transport plans from one copy of the distances, then the weight update."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Every process solves on the mean distances, so all keep the same layer weights.
            dist.all_reduce(distances)
            distances /= dist.get_world_size()
        distances = distances.cpu().numpy()  # the step's one wait on the device
        problems = [(self.layer_weights_S, self.layer_weights_T)]
        if self.attention:
            problems.append((self.attention_weights_S, self.attention_weights_T))
        plans = [transport_plan(w_S, w_T, d) for (w_S, w_T), d in zip(problems, distances)]
        if self.update_weights:
            new = [
                updated_layer_weights(w_S, w_T, plan, d)
                for (w_S, w_T), plan, d in zip(problems, plans, distances)
            ]
            if self.attention and not self.separate_weights:  # one shared set: the mean
                shared = tuple((hidden + attention) / 2 for hidden, attention in zip(*new))
                new = [shared, shared]
            self.layer_weights_S, self.layer_weights_T = new[0]
            if self.attention:
                self.attention_weights_S, self.attention_weights_T = new[-1]
        return torch.as_tensor(np.stack(plans), dtype=torch.float32)

    def _emd_term_names(self):
        names = ["unweighted_hidden_hidden_mse_emd", "unweighted_embedding_hidden_mse"]
        return names + (["unweighted_attention_attention_mse_emd"] if self.attention else [])

    def _weights_to_log(self, device):
        """The layer weights in force after this step, for metrics.jsonl (when they learn)."""
        if not self.update_weights:
            return {}
        sets = {"": (self.layer_weights_S, self.layer_weights_T)}
        if self.separate_weights:
            sets = {"hidden_": sets[""], "attention_": (self.attention_weights_S, self.attention_weights_T)}
        names, values = [], []
        for prefix, (weights_S, weights_T) in sets.items():
            names += [f"{prefix}layer_weight_S{i + 1}" for i in range(len(weights_S))]
            names += [f"{prefix}layer_weight_T{j + 1}" for j in range(len(weights_T))]
            values += [*weights_S, *weights_T]
        values = torch.tensor(values, dtype=torch.float32).to(device)  # one small copy
        return dict(zip(names, values))

    # ----- the layer weights survive a resume ---------------------------------------------
    def extra_state(self):
        return {name: torch.from_numpy(getattr(self, name).copy()) for name in self._weight_names()}

    def load_extra_state(self, state):
        for name in self._weight_names():
            weights = state[name].numpy().astype(np.float64)
            if weights.shape != getattr(self, name).shape:
                raise ValueError(
                    f"the resume state's {name} has shape {weights.shape}; "
                    f"this model needs {getattr(self, name).shape}"
                )
            setattr(self, name, weights)

    @staticmethod
    def _weight_names():
        return ("layer_weights_S", "layer_weights_T", "attention_weights_S", "attention_weights_T")
