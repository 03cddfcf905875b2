"""BERT-EMD: every student layer learns from every teacher layer, in proportions it works out itself.

This file is a complete distiller written on the `distillation` core, and meant to be read top
to bottom as a template for your own.

The problem
-----------
A 4-layer student learns from a 12-layer teacher. Which teacher layer should student layer 2
imitate? The presets in matches.py guess a fixed map (student 1 <- teacher 3, 2 <- 6, ...), and
the best map differs from task to task.

The idea (Li et al., 2020, "BERT-EMD: Many-to-Many Layer Mapping for BERT Compression with
Earth Mover's Distance")
-----------------------------------------------------------------------------------------
Think of the student's layers as heaps of earth and the teacher's layers as holes. Every layer
carries a weight (here the same for all: 1/4 for each student layer, 1/12 for each teacher
layer, so both sides hold a mass of 1). Moving earth from student layer i to teacher layer j
costs D[i, j], the distance between their hidden states on the current batch. The Earth Mover's
Distance is the cheapest way to move all the earth: a transport plan F with F[i, j] >= 0, whose
rows sum to the student weights and whose columns sum to the teacher weights, minimising
sum(F * D). Each student layer then learns from a mix of teacher layers in the proportions F
gives, and F is solved again at every step as the student changes. No map has to be chosen.

The loss of one batch
---------------------
    total = kd_loss_weight * KD(student logits, teacher logits, temperature)
          + hard_label_weight * cross-entropy                 (both as in every distiller)
          + emd_weight * ( sum_ij F[i, j] * D[i, j]           layers 1..L: many to many
                         + mse(P_0(h_S_0), h_T_0) )           embedding outputs: one to one

D[i, j] = mse(P_i(h_S_i), h_T_j) over the real (unpadded) tokens, where h_S_i is the output of
student layer i, h_T_j that of teacher layer j, and P_i a learnt linear map from the student's
hidden size to the teacher's (one per student layer; P_0 for the embeddings). F is a constant
for the gradient: the student is pulled towards the teacher layers the plan chose.

How a distiller plugs into the core
-----------------------------------
BasicDistiller already runs the teacher (eval mode, no gradients) and the student, moves the
batches to the device, handles mixed precision, gradient accumulation, clipping, checkpoints and
logging, and computes the KD and hard-label terms. A new distiller only has to

  1. create its trainable extras in __init__ and list them in `self.projs` (with their optimizer
     options in `self.projs_group`): the core moves them to the device, adds them to the
     optimizer, and clips their gradients together with the student's;
  2. override `compute_loss(results_S, results_T)`, which receives the adaptors' dicts
     ('logits', 'hidden', 'inputs_mask', ...) and returns the total loss and a dict of its
     parts, which the core logs.
"""

import numpy as np
import torch
from pyemd import emd_with_flow

from distillation import BasicDistiller
from distillation.losses import hid_mse_loss


# Step 1. The projections P_0 .. P_L, kept as one batched layer.
class LayerwiseLinear(torch.nn.Module):
    """A separate linear map per layer, applied to all layers in one batched matrix product.

    Input (num_layers, batch, length, dim_in) -> output (num_layers, batch, length, dim_out).
    """

    def __init__(self, num_layers, dim_in, dim_out):
        super().__init__()
        # BERT's initialisation: small normal weights, zero bias.
        self.weight = torch.nn.Parameter(torch.randn(num_layers, dim_in, dim_out) * 0.02)
        self.bias = torch.nn.Parameter(torch.zeros(num_layers, 1, dim_out))

    def forward(self, states):
        num_layers, batch, length, dim_in = states.shape
        flat = states.reshape(num_layers, batch * length, dim_in)
        projected = torch.baddbmm(self.bias, flat, self.weight)  # (num_layers, batch*length, dim_out)
        return projected.reshape(num_layers, batch, length, -1)


# Step 2. The distance matrix D, every student layer against every teacher layer at once.
def layer_distances(states_S, states_T, mask):
    """D[i, j] = mean squared error between student layer i and teacher layer j on real tokens.

    states_S: (L_S, batch, length, hidden), states_T: (L_T, batch, length, hidden),
    mask: (batch, length), 1 for real tokens. Returns D: (L_S, L_T).

    With ||s - t||^2 = ||s||^2 + ||t||^2 - 2 s.t, all L_S x L_T distances come from one
    matrix product instead of a Python double loop over layer pairs.
    """
    # fmt: off
    mask = mask.to(states_S.dtype)[None, :, :, None]          # (1, batch, length, 1)
    masked_S, masked_T = states_S * mask, states_T * mask
    squares_S = masked_S.pow(2).sum(dim=(1, 2, 3))              # (L_S,)
    squares_T = masked_T.pow(2).sum(dim=(1, 2, 3))              # (L_T,)
    products = masked_S.flatten(1) @ masked_T.flatten(1).T      # (L_S, L_T)
    num_values = mask.sum() * states_S.size(-1)                 # real tokens x hidden size
    # fmt: on
    # Rounding can leave a tiny negative number where the true value is 0.
    return (squares_S[:, None] + squares_T[None, :] - 2 * products).clamp_min(0) / num_values


# Step 3. The transport plan F, from pyemd.
def transport_plan(weights_S, weights_T, distances):
    """The plan F (L_S, L_T) moving the student's layer weights onto the teacher's at least cost.

    pyemd's emd_with_flow compares two histograms over the same bins with a square cost matrix.
    So the bins are all the layers: the first L_S bins are the student's (the first histogram
    holds the student weights there and zeros elsewhere), the last L_T the teacher's (the second
    histogram holds the teacher weights there). All mass has to move from student bins to
    teacher bins, so only the student-to-teacher block of the cost matrix matters.
    """
    num_S, num_T = len(weights_S), len(weights_T)
    first = np.concatenate([weights_S, np.zeros(num_T)])
    second = np.concatenate([np.zeros(num_S), weights_T])
    costs = np.zeros((num_S + num_T, num_S + num_T))
    costs[:num_S, num_S:] = distances
    costs[num_S:, :num_S] = distances.T
    _, flow = emd_with_flow(first, second, costs)
    return np.asarray(flow)[:num_S, num_S:]


# Step 4. The distiller.
class EMDDistiller(BasicDistiller):
    """BERT-EMD on hidden states, with uniform layer weights, plus KD on the logits.

    Takes BasicDistiller's arguments (the DistillationConfig's temperature, KD and hard-label
    weights apply as usual) and `emd_weight`, the weight of the EMD and embedding terms.
    Layer counts and hidden sizes come from the models' configs.
    """

    def __init__(self, train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S, emd_weight=1.0):
        super().__init__(train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S)
        config_S, config_T = model_S.config, model_T.config
        self.emd_weight = emd_weight
        # Every layer weighs the same; each side's weights sum to 1.
        self.layer_weights_S = np.full(config_S.num_hidden_layers, 1.0 / config_S.num_hidden_layers)
        self.layer_weights_T = np.full(config_T.num_hidden_layers, 1.0 / config_T.num_hidden_layers)
        # P_0 for the embedding output, P_1 .. P_L for the student's layers.
        self.projection = LayerwiseLinear(
            config_S.num_hidden_layers + 1, config_S.hidden_size, config_T.hidden_size
        )
        # Listed in self.projs, the core trains, moves and clips it with the student.
        self.projs.append(self.projection.to(self.device))
        self.projs_group.append({})

    def features_read(self):
        # Optional: the pipeline then asks the models for hidden states only, not attention maps.
        return {"hidden"}

    def compute_loss(self, results_S, results_T):
        # KD on the logits and the hard-label term: the core computes them as in every distiller.
        total_loss, losses = self.compute_prediction_loss(results_S, results_T)

        # The embedding outputs' loss and the distances D between layers 1..L.
        embedding_loss, distances = self.hidden_state_terms(results_S, results_T)

        # Layers 1..L: many to many, through the transport plan.
        # The solve runs on the CPU; this small copy is the step's only wait on the device.
        plan = transport_plan(
            self.layer_weights_S, self.layer_weights_T, distances.detach().double().cpu().numpy()
        )
        plan = torch.as_tensor(plan, dtype=distances.dtype, device=distances.device)
        emd_loss = (plan * distances).sum()

        total_loss = total_loss + self.emd_weight * (emd_loss + embedding_loss)
        # The seed's names for the two terms, so its users' logs and plots keep working.
        losses["unweighted_hidden_hidden_mse_emd"] = emd_loss
        losses["unweighted_embedding_hidden_mse"] = embedding_loss
        return total_loss, losses

    # Optional: the pieces of the loss that are tensor work alone, which --compile compiles
    # (the core's compile()); the solve on the CPU stays outside them.
    compiled_losses = ("kd_loss", "hidden_state_terms")

    def hidden_state_terms(self, results_S, results_T):
        """(the embedding outputs' loss, the distance matrix D (L_S, L_T)) of one batch."""
        # Hidden states: embedding output then one per layer, stacked into one tensor per model.
        # fmt: off
        states_S = self.projection(torch.stack(results_S["hidden"]).float())  # (L_S+1, B, T, H_T)
        states_T = torch.stack(results_T["hidden"]).float()                   # (L_T+1, B, T, H_T)
        # fmt: on
        mask = results_S["inputs_mask"]
        embedding_loss = hid_mse_loss(states_S[0], states_T[0], mask)  # one to one
        return embedding_loss, layer_distances(states_S[1:], states_T[1:], mask)
