"""The distillers: BasicTrainer, BasicDistiller, GeneralDistiller, MultiTeacherDistiller and
MultiTaskDistiller.

Each one only says how its loss is computed; AbstractDistiller runs the training.
"""

import functools
import inspect

import torch

from .adaptors import as_list, call_model, move_to_device, out_of_inference_mode, post_adaptor
from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP
from .projections import PROJ_MAP
from .task_sampling import TaskBatches
from .trainer import PER_LAYER_FEATURES, READS_ALL, AbstractDistiller


class BasicTrainer(AbstractDistiller):
    """Trains one model on the loss(es) its adaptor returns under 'losses' (e.g. a teacher)."""

    def __init__(self, train_config, model, adaptor):
        super().__init__(train_config, None, None, model, None, adaptor)

    def features_read(self):
        return _unless_overridden(self, BasicTrainer, set())

    def compute_loss(self, results_S, results_T=None):
        if "losses" not in results_S:
            raise ValueError("BasicTrainer: the adaptor must return 'losses'")
        loss = sum(loss.mean() for loss in as_list(results_S["losses"]))
        return loss, {"unweighted_hard_label_loss": loss}


class BasicDistiller(AbstractDistiller):
    """KD on the logits (at the temperature) plus the weighted hard-label loss.

    Subclasses add terms by overriding compute_loss and calling compute_prediction_loss.
    """

    compiled_losses = ("kd_loss",)

    def __init__(self, train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S):
        super().__init__(train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S)
        self.kd_loss = KD_LOSS_MAP[distill_config.kd_loss_type]

    def features_read(self):
        return _unless_overridden(self, BasicDistiller, set())

    def compute_loss(self, results_S, results_T):
        return self.compute_prediction_loss(results_S, results_T)

    def compute_prediction_loss(self, results_S, results_T):
        """kd_loss_weight * KD(student logits, teacher logits) + hard_label_weight * 'losses'.

        Returns (total, {'unweighted_kd_loss': ..., 'unweighted_hard_label_loss': ...}); a term
        whose inputs the adaptors did not return is left out.
        """
        total, losses = 0, {}
        if "logits" in results_S and "logits" in results_T:
            logits_S = _select(results_S, "logits")
            logits_T = _select(results_T, "logits")
            if self.d_config.probability_shift:
                labels = as_list(results_S["labels"])
                logits_T = [probability_shift(l_T, y) for l_T, y in zip(logits_T, labels)]
            kd = sum(
                self.kd_loss(l_S, l_T, self.d_config.temperature_for(l_S, l_T))
                for l_S, l_T in zip(logits_S, logits_T)
            )
            total = total + self.kd_loss_weight * kd
            losses["unweighted_kd_loss"] = kd
        if "losses" in results_S:
            hard = sum(loss.mean() for loss in as_list(results_S["losses"]))
            total = total + self.hard_label_weight * hard
            losses["unweighted_hard_label_loss"] = hard
        return total, losses


class GeneralDistiller(BasicDistiller):
    """BasicDistiller plus the intermediate matches of the DistillationConfig.

    Each match compares one student feature with one teacher feature (or a pair with a pair),
    after the match's projection, if any, is applied to the student's side.
    """

    compiled_losses = ("kd_loss", "intermediate_losses")

    def __init__(self, train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S):
        super().__init__(train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S)
        # What each match's loss is logged as, and its padded_length argument, if it takes one.
        self._match_names, self._match_options = [], []
        for match in distill_config.intermediate_matches:
            if isinstance(match.layer_S, list):
                layers = "-".join(map(str, match.layer_S)), "-".join(map(str, match.layer_T))
            else:
                layers = str(match.layer_S), str(match.layer_T)
            self._match_names.append(f"unweighted_{match.feature}_{match.loss}_{layers[0]}_{layers[1]}")
            padded = distill_config.padded_length is not None and _takes_padded_length(
                MATCH_LOSS_MAP[match.loss]
            )
            options = {"padded_length": distill_config.padded_length} if padded else {}
            self._match_options.append({**options, **match.loss_options()})
            proj = None
            if match.proj is not None:
                kind, dim_in, dim_out = match.proj
                proj = PROJ_MAP[kind](dim_in, dim_out).to(self.device)
            self.projs.append(proj)
            self.projs_group.append(match.proj_group)

    def features_read(self):
        return _unless_overridden(
            self, GeneralDistiller, {match.feature for match in self.d_config.intermediate_matches}
        )

    def layers_read(self):
        """The layers of the per-layer features (PER_LAYER_FEATURES) that the matches read."""
        layers = {"teacher": {}, "student": {}}
        for match in self.d_config.intermediate_matches:
            if match.feature in PER_LAYER_FEATURES:
                for side, layer in (("teacher", match.layer_T), ("student", match.layer_S)):
                    chosen = layers[side].setdefault(match.feature, set())
                    chosen.update(layer if isinstance(layer, list) else [layer])
        return {side: {f: sorted(chosen) for f, chosen in by.items()} for side, by in layers.items()}

    def compute_loss(self, results_S, results_T):
        total, losses = self.compute_prediction_loss(results_S, results_T)
        total, intermediate = self.intermediate_losses(results_S, results_T, total)
        return total, {**losses, **intermediate}

    def intermediate_losses(self, results_S, results_T, total=0):
        """(total plus each match's weighted loss, {name: unweighted loss}): tensor work only,
        which compile() compiles."""
        losses = {}
        mask = results_S.get("inputs_mask")
        matches = zip(self.d_config.intermediate_matches, self.projs, self._match_names, self._match_options)
        for index, (match, proj, name, options) in enumerate(matches):
            feature_S = _feature(results_S, match.feature, index, "student")
            feature_T = _feature(results_T, match.feature, index, "teacher")
            if isinstance(match.layer_S, list):
                inter_S = [
                    _project(proj, _layer(feature_S, layer, index, "student")) for layer in match.layer_S
                ]
                inter_T = [_layer(feature_T, layer, index, "teacher") for layer in match.layer_T]
            else:
                inter_S = _project(proj, _layer(feature_S, match.layer_S, index, "student"))
                inter_T = _layer(feature_T, match.layer_T, index, "teacher")
            loss = MATCH_LOSS_MAP[match.loss](inter_S, inter_T, mask=mask, **options)
            total = total + match.weight * loss
            losses[name] = loss
        return total, losses


class MultiTeacherDistiller(BasicDistiller):
    """Several teachers (model_T is a list, sharing adaptor_T): the student learns from the
    average of their logits, plus the weighted hard-label loss."""

    def __init__(self, train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S):
        if not isinstance(model_T, (list, tuple)) or not model_T:
            raise ValueError("MultiTeacherDistiller: model_T must be a non-empty list of teachers")
        super().__init__(train_config, distill_config, list(model_T), model_S, adaptor_T, adaptor_S)

    def features_read(self):
        return _unless_overridden(self, MultiTeacherDistiller, set())

    def compute_loss(self, results_S, results_T):
        logits_T = [as_list(results["logits"]) for results in results_T]
        averaged = {"logits": [sum(heads) / len(heads) for heads in zip(*logits_T)]}
        if "logits_mask" in results_T[0]:
            averaged["logits_mask"] = results_T[0]["logits_mask"]
        return self.compute_prediction_loss(results_S, averaged)


class MultiTaskDistiller(GeneralDistiller):
    """Teachers of several tasks distilled into one student.

    model_T, adaptor_T and adaptor_S are dicts keyed by task name. Every batch comes from one
    task and is distilled as GeneralDistiller does (KD, hard labels, and the intermediate
    matches, whose projections all tasks share), with that task's teacher and adaptors.
    The teachers' logits are never cached.
    """

    def __init__(self, train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S):
        for name, value in (("model_T", model_T), ("adaptor_T", adaptor_T), ("adaptor_S", adaptor_S)):
            if not isinstance(value, dict) or not value:
                raise ValueError(f"MultiTaskDistiller: {name} must be a non-empty dict {{task: ...}}")
        if not set(model_T) == set(adaptor_T) == set(adaptor_S):
            raise ValueError(
                "MultiTaskDistiller: model_T, adaptor_T and adaptor_S must have the "
                f"same tasks; got {sorted(model_T)}, {sorted(adaptor_T)}, {sorted(adaptor_S)}"
            )
        super().__init__(train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S)

    @property
    def teachers(self):
        return list(self.model_T.values())

    def caches_logits(self):
        return False

    def train(
        self,
        optimizer,
        dataloaders,
        num_steps,
        scheduler_class=None,
        scheduler_args=None,
        scheduler=None,
        max_grad_norm=-1.0,
        tau=1,
        callback=None,
        batch_postprocessors=None,
        **args,
    ):
        """Train for num_steps optimizer steps on batches drawn from dataloaders ({task: loader}).

        A task is drawn for every batch with probability proportional to the size of its
        dataloader ** tau (uniformly when a size is unknown), from numpy's global generator.
        batch_postprocessors: {task: function(batch) -> batch}. Checkpoints every
        t_config.ckpt_steps steps and at the end; the rest as in AbstractDistiller.train.
        Each pass of the loop's epoch is one optimizer step, so a resumed run draws on from
        the restored generators.
        """
        unknown = set(dataloaders) - set(self.model_T)
        if unknown:
            raise ValueError(f"MultiTaskDistiller.train: no teacher for task(s) {sorted(unknown)}")
        batches = TaskBatches(dataloaders, tau, length=self.t_config.gradient_accumulation_steps)

        def postprocessor(batch_task):
            batch, task = batch_task
            return batch_postprocessors[task](batch), task

        super().train(
            optimizer,
            batches,
            num_steps=num_steps,
            scheduler_class=scheduler_class,
            scheduler_args=scheduler_args,
            scheduler=scheduler,
            max_grad_norm=max_grad_norm,
            callback=callback,
            batch_postprocessor=postprocessor if batch_postprocessors is not None else None,
            **args,
        )

    def train_on_batch(self, batch_task, args):
        """(total_loss, losses) of one (batch, task name) pair."""
        batch, task = batch_task
        batch = move_to_device(batch, self.device)
        with self._teacher_mode():
            outputs_T = call_model(self.model_T[task], batch, args)
        results_T = out_of_inference_mode(post_adaptor(self.adaptor_T[task](batch, outputs_T)))
        with self._autocast():
            outputs_S = call_model(self._student_forward, batch, args)
        results_S = post_adaptor(self.adaptor_S[task](batch, outputs_S))
        return self.compute_loss(results_S, results_T)


def _unless_overridden(distiller, cls, features):
    """`features` when the distiller computes its loss as `cls` does; a subclass with its own
    compute_loss may read anything, unless it overrides features_read too."""
    if type(distiller).compute_loss is cls.compute_loss:
        return features
    return set(READS_ALL)


def probability_shift(logits, labels):
    """Swap, in each row, the largest logit with the gold label's, so the teacher is never wrong.

    logits: (batch, classes) or (batch, length, classes); labels: (batch,) or (batch, length).
    """
    logits = logits.clone()
    top = logits.argmax(dim=-1, keepdim=True)
    gold = labels.unsqueeze(-1)
    gold = torch.where(gold < 0, top, gold)  # ignored positions (label -100) stay as they are
    top_values, gold_values = logits.gather(-1, top), logits.gather(-1, gold)
    logits.scatter_(-1, top, gold_values)
    logits.scatter_(-1, gold, top_values)
    return logits


def probability_shift_(logits, labels):
    """probability_shift written into logits, which it returns (TextBrewer's in-place form)."""
    return logits.copy_(probability_shift(logits, labels))


def _select(results, key):
    """The logits list, each reduced to its masked rows when the adaptor gave logits_mask."""
    logits = as_list(results[key])
    if "logits_mask" not in results:
        return logits
    return [head[mask.bool()] for head, mask in zip(logits, as_list(results["logits_mask"]))]


def _feature(results, feature, index, side):
    if feature not in results:
        raise ValueError(
            f"intermediate_matches[{index}] needs '{feature}' from the {side}'s "
            f"adaptor, which returned only {', '.join(results)}"
        )
    return results[feature]


def _layer(feature, layer, index, side):
    """One layer's entry of a feature list; a per-layer feature holds None where not asked for."""
    value = feature[layer]
    if value is None:
        raise ValueError(
            f"intermediate_matches[{index}] reads layer {layer}, which the {side}'s model did not "
            "return (a per-layer feature is computed only for the layers it is asked for: "
            "see GeneralDistiller.layers_read)"
        )
    return value


@functools.lru_cache(maxsize=None)
def _takes_padded_length(loss_fn):
    """Whether a match loss accepts padded_length (a registered user loss need not)."""
    try:
        return "padded_length" in inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):  # no signature to read (e.g. a builtin)
        return False


def _project(proj, feature):
    feature = feature.float()  # losses and projections run in float32 under mixed precision
    return proj(feature) if proj is not None else feature
