"""Training and distillation settings, with TextBrewer 0.2.1's names and defaults.

Neither config changes during training or touches the disk: schedules are applied per step by
the distillers, and output_dir is created when training starts.
"""

import inspect
import json
import logging

import torch

from .losses import KD_LOSS_MAP, MATCH_LOSS_MAP, PAIR_LOSSES
from .projections import PROJ_MAP
from .registry import FEATURES
from .schedulers import TEMPERATURE_SCHEDULER, TEMPERATURE_SCHEDULER_BUILDERS, WEIGHT_SCHEDULER

logger = logging.getLogger(__name__)

MIXED_PRECISION = ("no", "fp16", "bf16")
_BUILT_IN_LOSSES = frozenset(MATCH_LOSS_MAP)  # before any register_new
TEACHER_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class _Config:
    def __repr__(self):
        fields = "\n".join(f"  {key}: {value!r}" for key, value in self._public().items())
        return f"{type(self).__name__}(\n{fields}\n)"

    def _public(self):
        return {key: value for key, value in vars(self).items() if not key.startswith("_")}

    @classmethod
    def from_dict(cls, settings):
        """The config built from a dict of its arguments (TextBrewer's Config.from_dict)."""
        return cls(**settings)

    @classmethod
    def from_json_file(cls, path):
        with open(path, encoding="utf-8") as file:
            return cls.from_dict(json.load(file))


class TrainingConfig(_Config):
    """How to train: accumulation, checkpoints, logs, device and precision.

    mixed_precision ('no' | 'fp16' | 'bf16') is the modern spelling of fp16=True. fp16 needs CUDA:
    without it the run stays in float32 (bf16 autocast on CPUs without native bf16 is many times
    slower, so fp16 never turns into it); bf16 runs on the CPU only when asked for by name.
    fp16_opt_level is apex's and is ignored. data_parallel=True trains the student in
    DistributedDataParallel (processes launched by torchrun, torch.distributed initialised).
    local_rank is accepted for compatibility and ignored, with a warning when it is not -1.
    keep_resume_states: how many resume states (resume_gs{step}.pt, saved beside the
    checkpoints) are kept. teacher_dtype ('fp32' | 'fp16' | 'bf16', not in TextBrewer): the
    teachers' weights are cast to it once, when training starts, and they run under
    torch.inference_mode (and autocast to a half type); None: they run as they are, under
    torch.no_grad and the student's autocast.
    """

    def __init__(
        self,
        gradient_accumulation_steps=1,
        ckpt_frequency=1,
        ckpt_epoch_frequency=1,
        ckpt_steps=None,
        log_dir=None,
        output_dir="./saved_models",
        device="cuda",
        fp16=False,
        fp16_opt_level="O1",
        data_parallel=False,
        local_rank=-1,
        mixed_precision=None,
        keep_resume_states=2,
        teacher_dtype=None,
    ):
        for name, value in (
            ("gradient_accumulation_steps", gradient_accumulation_steps),
            ("ckpt_frequency", ckpt_frequency),
            ("ckpt_epoch_frequency", ckpt_epoch_frequency),
            ("keep_resume_states", keep_resume_states),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingConfig: {name} must be a positive integer, got {value!r}")
        if ckpt_steps is not None and (not isinstance(ckpt_steps, int) or ckpt_steps < 1):
            raise ValueError(
                f"TrainingConfig: ckpt_steps must be a positive integer or None, got {ckpt_steps!r}"
            )
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.ckpt_frequency = ckpt_frequency
        self.ckpt_epoch_frequency = ckpt_epoch_frequency
        self.ckpt_steps = ckpt_steps
        self.log_dir = log_dir
        self.output_dir = output_dir
        self.device = self._available_device(device)
        self.fp16 = fp16
        self.fp16_opt_level = fp16_opt_level
        self.data_parallel = data_parallel
        self.local_rank = local_rank
        self.mixed_precision = self._mixed_precision(fp16, mixed_precision, self.device)
        self.keep_resume_states = keep_resume_states
        if teacher_dtype is not None and teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(
                f"TrainingConfig: teacher_dtype must be None or one of {', '.join(TEACHER_DTYPES)}, "
                f"got {teacher_dtype!r}"
            )
        self.teacher_dtype = teacher_dtype
        if local_rank != -1:
            logger.warning(
                "TrainingConfig: local_rank=%r is accepted for compatibility and ignored: "
                "launch with torchrun and set data_parallel=True for several processes",
                local_rank,
            )
        if fp16_opt_level != "O1":
            logger.warning("fp16_opt_level=%r is ignored: torch.amp has no apex opt levels", fp16_opt_level)

    @staticmethod
    def _available_device(device):
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            logger.warning("CUDA is not available: training on the CPU")
            return torch.device("cpu")
        return device

    @staticmethod
    def _mixed_precision(fp16, mixed_precision, device):
        if mixed_precision is None:
            mixed_precision = "fp16" if fp16 else "no"
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"TrainingConfig: mixed_precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}"
            )
        if fp16 and mixed_precision != "fp16":
            raise ValueError(f"TrainingConfig: fp16=True conflicts with mixed_precision={mixed_precision!r}")
        if mixed_precision == "fp16" and device.type != "cuda":
            logger.warning("fp16 needs CUDA: training in float32 on %s", device)
            return "no"
        return mixed_precision


class IntermediateMatch(_Config):
    """One intermediate match: which layers, which feature, which loss, its weight and projection.

    Beyond TextBrewer's keys, a match may give its loss options (LOSS_OPTIONS), passed to the
    loss as keyword arguments when set: relation_heads and relation_weights ([Q, K, V]) of
    relation_kl.
    """

    def __init__(
        self,
        layer_T,
        layer_S,
        feature,
        loss,
        weight,
        proj=None,
        proj_group=None,
        relation_heads=None,
        relation_weights=None,
    ):
        self.layer_T = layer_T
        self.layer_S = layer_S
        self.feature = feature
        self.loss = loss
        self.weight = weight
        self.proj = proj
        self.proj_group = proj_group or {}
        self.relation_heads = relation_heads
        self.relation_weights = relation_weights

    KEYS = ("layer_T", "layer_S", "feature", "loss", "weight", "proj")
    LOSS_OPTIONS = ("relation_heads", "relation_weights")
    # Features with no vector to project: length x length matrices, or vectors split into heads.
    UNPROJECTED = ("relation", "attention_scores")

    def _public(self):  # the repr leaves out the loss options a match does not set
        unset = {key for key in self.LOSS_OPTIONS if getattr(self, key) is None}
        return {key: value for key, value in super()._public().items() if key not in unset}

    def loss_options(self):
        """{option: value} of the loss options this match sets."""
        return {key: getattr(self, key) for key in self.LOSS_OPTIONS if getattr(self, key) is not None}

    def as_dict(self):
        """The match as TextBrewer's configs take it: {layer_T, layer_S, feature, loss, weight, proj?},
        plus the loss options it sets."""
        match = {key: getattr(self, key) for key in self.KEYS if key != "proj"}
        if self.proj is not None:
            match["proj"] = list(self.proj) + ([self.proj_group] if self.proj_group else [])
        return {**match, **self.loss_options()}

    @classmethod
    def from_dict(cls, match, index):
        """The match of a dict, checked (an IntermediateMatch is taken as it is)."""
        if isinstance(match, IntermediateMatch):
            return match
        where = f"intermediate_matches[{index}]"
        if not isinstance(match, dict):
            raise ValueError(f"{where}: expected a dict, got {match!r}")
        known = cls.KEYS + cls.LOSS_OPTIONS
        unknown = sorted(set(match) - set(known))
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
            )
        missing = [key for key in cls.KEYS[:5] if key not in match]
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
        if match["feature"] not in FEATURES:
            raise ValueError(f"{where}: unknown feature {match['feature']!r}; known: {', '.join(FEATURES)}")
        if match["loss"] not in MATCH_LOSS_MAP:
            raise ValueError(f"{where}: unknown loss {match['loss']!r}; known: {', '.join(MATCH_LOSS_MAP)}")
        if not isinstance(match["weight"], (int, float)) or isinstance(match["weight"], bool):
            raise ValueError(f"{where}: weight must be a number, got {match['weight']!r}")
        layer_T, layer_S = match["layer_T"], match["layer_S"]
        pairs = match["loss"] in PAIR_LOSSES
        if not all(_is_layer(layer, pairs) for layer in (layer_T, layer_S)):
            expected = "lists of two layer indices" if pairs else "layer indices (integers)"
            raise ValueError(
                f"{where}: loss {match['loss']!r} takes {expected} as layer_T and "
                f"layer_S; got {layer_T!r} and {layer_S!r}"
            )
        proj, proj_group = match.get("proj"), None
        if proj is not None:
            if (
                not isinstance(proj, (list, tuple))
                or len(proj) not in (3, 4)
                or proj[0] not in PROJ_MAP
                or not all(isinstance(d, int) and d > 0 for d in proj[1:3])
                or (len(proj) == 4 and not isinstance(proj[3], dict))
            ):
                raise ValueError(
                    f"{where}: proj must be [kind, dim_in, dim_out] or [kind, dim_in, "
                    f"dim_out, {{options}}] with kind in {', '.join(PROJ_MAP)}; got {proj!r}"
                )
            proj, proj_group = list(proj[:3]), (proj[3] if len(proj) == 4 else {})
            if match["feature"] in cls.UNPROJECTED:
                raise ValueError(
                    f"{where}: the {match['feature']!r} feature takes no proj: its loss compares "
                    "length x length matrices, whatever the two hidden sizes"
                )
        _check_feature_and_loss(match, where)
        options = {key: match[key] for key in cls.LOSS_OPTIONS if match.get(key) is not None}
        _check_loss_options(match["loss"], options, where)
        return cls(
            layer_T, layer_S, match["feature"], match["loss"], match["weight"], proj, proj_group, **options
        )


# The features this project added, and the built-in losses that read each; a loss registered
# by the user may read any feature.
_ATTENTION_LOSSES = ("attention_mse", "attention_mse_sum", "attention_ce", "attention_ce_mean")
_LOSSES_OF_FEATURE = {
    "relation": ("relation_kl",),  # (3, batch, length, hidden): query, key and value vectors
    "attention_scores": ("att_score_mse",) + _ATTENTION_LOSSES,  # (batch, heads, length, length)
}
_FEATURES_OF_LOSS = {"relation_kl": ("relation",), "att_score_mse": ("attention_scores", "attention")}


def _check_feature_and_loss(match, where):
    feature, loss = match["feature"], match["loss"]
    if loss in _FEATURES_OF_LOSS and feature not in _FEATURES_OF_LOSS[loss]:
        raise ValueError(
            f"{where}: loss {loss!r} reads feature {' or '.join(map(repr, _FEATURES_OF_LOSS[loss]))}, "
            f"not {feature!r}"
        )
    if feature in _LOSSES_OF_FEATURE and loss in _BUILT_IN_LOSSES and loss not in _LOSSES_OF_FEATURE[feature]:
        raise ValueError(
            f"{where}: feature {feature!r} is read by loss "
            f"{' or '.join(map(repr, _LOSSES_OF_FEATURE[feature]))}, not {loss!r}"
        )


def _check_loss_options(loss, options, where):
    if "relation_heads" in options:
        heads = options["relation_heads"]
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
            raise ValueError(f"{where}: relation_heads must be a positive integer, got {heads!r}")
    if "relation_weights" in options:
        weights = options["relation_weights"]
        if (
            not isinstance(weights, (list, tuple))
            or len(weights) != 3
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
        ):
            raise ValueError(
                f"{where}: relation_weights must be a list of 3 numbers >= 0 (the Q-Q, K-K and V-V "
                f"relations' weights), got {weights!r}"
            )
    taken = _keyword_parameters(MATCH_LOSS_MAP[loss])
    refused = [key for key in options if key not in taken]
    if refused:
        raise ValueError(f"{where}: loss {loss!r} takes no {', '.join(refused)}")


def _keyword_parameters(function):
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # no signature to read (e.g. a builtin)
        return set()


def _is_layer(layer, pair):
    if pair:
        return isinstance(layer, list) and len(layer) == 2 and all(_is_layer(i, False) for i in layer)
    return isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0


class DistillationConfig(_Config):
    """What to distill: the KD loss and its temperature, hard labels, intermediate matches.

    temperature_scheduler: 'none', 'constant', or ['flsw', beta, gamma] / ['cwsm', beta]; the
      attribute holds, as in TextBrewer, None or the function (logits_S, logits_T, temperature)
      -> temperature, because distillers written for TextBrewer call it themselves.
    hard_label_weight_scheduler, kd_loss_weight_scheduler: 'none', 'linear_decay', 'linear_growth'.
    intermediate_matches: dicts {layer_T, layer_S, feature, loss, weight, proj?}, and the loss
      options relation_heads? and relation_weights? of relation_kl.
    is_caching_logits: the teachers' logits of the first epoch are reused in later epochs.
    padded_length (not in TextBrewer): the length inputs were padded to, when each batch is then
    cut to its longest example; the losses whose masked value depends on it ('mmd', 'nst',
    'attention_ce', 'attention_ce_mean') get it, so the cut leaves them as on the padded batch.
    None: the batch's own length.
    """

    def __init__(
        self,
        temperature=4,
        temperature_scheduler="none",
        hard_label_weight=0,
        hard_label_weight_scheduler="none",
        kd_loss_type="ce",
        kd_loss_weight=1,
        kd_loss_weight_scheduler="none",
        probability_shift=False,
        intermediate_matches=None,
        is_caching_logits=False,
        padded_length=None,
    ):
        self.temperature = temperature
        self.temperature_scheduler = _temperature_function(temperature_scheduler)
        self.hard_label_weight = hard_label_weight
        self.hard_label_weight_scheduler = hard_label_weight_scheduler
        self.kd_loss_type = kd_loss_type
        self.kd_loss_weight = kd_loss_weight
        self.kd_loss_weight_scheduler = kd_loss_weight_scheduler
        self.probability_shift = probability_shift
        self.intermediate_matches = [
            IntermediateMatch.from_dict(match, i) for i, match in enumerate(intermediate_matches or [])
        ]
        self.is_caching_logits = is_caching_logits
        if padded_length is not None and (
            not isinstance(padded_length, int) or isinstance(padded_length, bool) or padded_length < 1
        ):
            raise ValueError(
                f"DistillationConfig: padded_length must be a positive integer or None, got {padded_length!r}"
            )
        self.padded_length = padded_length
        if kd_loss_type not in KD_LOSS_MAP:
            raise ValueError(
                f"DistillationConfig: unknown kd_loss_type {kd_loss_type!r}; known: {', '.join(KD_LOSS_MAP)}"
            )
        # Resolved once here; the weight schedulers' settings stay as the user wrote them.
        self._hard_label_weight_fn = _weight_function(
            hard_label_weight_scheduler, "hard_label_weight_scheduler"
        )
        self._kd_loss_weight_fn = _weight_function(kd_loss_weight_scheduler, "kd_loss_weight_scheduler")

    def temperature_for(self, logits_S, logits_T):
        if self.temperature_scheduler is None:
            return self.temperature
        return self.temperature_scheduler(logits_S, logits_T, self.temperature)

    def weights_at(self, step, total_steps):
        """(kd_loss_weight, hard_label_weight) after their schedules at this optimizer step."""
        kd, hard = self.kd_loss_weight, self.hard_label_weight
        if self._kd_loss_weight_fn is not None:
            kd = kd * self._kd_loss_weight_fn(step, total_steps)
        if self._hard_label_weight_fn is not None:
            hard = hard * self._hard_label_weight_fn(step, total_steps)
        return kd, hard


def _temperature_function(scheduler):
    """The scheduler a config names: a bare name is the scheduler itself; [name, *args] (or
    [name, {kwargs}], as in TextBrewer) calls the builder registered under name with them."""
    if scheduler in ("none", None):
        return None
    listed = isinstance(scheduler, (list, tuple))
    name, args = (scheduler[0], list(scheduler[1:])) if listed else (scheduler, [])
    if name not in TEMPERATURE_SCHEDULER:
        raise ValueError(
            f"DistillationConfig: unknown temperature_scheduler {name!r}; "
            f"known: none, {', '.join(TEMPERATURE_SCHEDULER)}"
        )
    function = TEMPERATURE_SCHEDULER[name]
    if not args and name not in TEMPERATURE_SCHEDULER_BUILDERS:
        return function
    try:
        if len(args) == 1 and isinstance(args[0], dict):
            return function(**args[0])
        return function(*args)
    except TypeError as error:
        hint = (
            " ('flsw' takes [beta, gamma], 'cwsm' takes [beta], e.g. ['flsw', 1, 1])"
            if name in TEMPERATURE_SCHEDULER_BUILDERS
            else ""
        )
        raise ValueError(
            f"DistillationConfig: temperature_scheduler {scheduler!r}: the builder "
            f"'{name}' does not take these arguments{hint}: {error}"
        ) from None


def _weight_function(scheduler, key):
    if scheduler in ("none", None):
        return None
    if scheduler not in WEIGHT_SCHEDULER:
        raise ValueError(
            f"DistillationConfig: unknown {key} {scheduler!r}; known: none, {', '.join(WEIGHT_SCHEDULER)}"
        )
    return WEIGHT_SCHEDULER[scheduler]
