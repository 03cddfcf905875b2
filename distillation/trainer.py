"""The training loop every distiller shares: train -> one batch -> compute_loss -> optimizer step.

A distiller subclasses AbstractDistiller and overrides compute_loss(results_S, results_T);
everything else (devices, mixed precision, accumulation, clipping, schedules, checkpoints,
logging, the teachers' logit cache) happens here once.
"""
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .adaptors import as_list, call_model, move_to_device, post_adaptor
from . import resume
from .io import append_line, atomic_torch_save

logger = logging.getLogger("distillation")

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# A Mapping batch may carry the dataset indices of its examples under this key (a (batch,)
# integer tensor): the logit cache is then keyed by example, and the key never reaches a model.
EXAMPLE_INDEX_KEY = "index"


class AbstractDistiller:
    """Trains model_S; the teachers (model_T: a model, a list of models, or None) stay frozen.

    Attributes kept under TextBrewer's names: t_config, d_config, model_T, model_S, adaptor_T,
    adaptor_S, projs (trainable modules beside the student, None for none) and projs_group
    (their optimizer options), print_freq (as in TextBrewer: log the losses print_freq times per
    epoch, or per ckpt_steps with num_steps). log_every_steps, when set, logs every this many
    optimizer steps instead.
    """

    def __init__(self, train_config, distill_config, model_T, model_S, adaptor_T, adaptor_S):
        self.t_config = train_config
        self.d_config = distill_config
        self.model_T = model_T
        self.model_S = model_S
        self.adaptor_T = adaptor_T
        self.adaptor_S = adaptor_S
        self.projs = []
        self.projs_group = []
        self.print_freq = 20
        self.log_every_steps = None
        self.device = train_config.device
        self.model_S.to(self.device)
        for teacher in self.teachers:
            teacher.to(self.device)
            teacher.eval()
            teacher.requires_grad_(False)
        self._tensorboard = None
        self._logit_cache = []          # (batch, teacher logits) pairs, on the CPU
        self._index_cache = None        # per teacher, per head: (num_examples, classes) logits
        self._index_filled = None       # (num_examples,) bool: which rows hold logits
        self._num_examples = None       # len(dataloader.dataset): the index cache's rows
        self._building_cache = False    # filling the cache during this epoch
        self._cache_complete = False    # the cache covers a whole epoch
        self._pending_resume = None     # a resume state for the next train()
        self._student_forward = model_S  # the DistributedDataParallel wrapper while training on several processes
        # The weights in force; training updates them by their schedules at every step.
        self.kd_loss_weight, self.hard_label_weight = self._scheduled_weights(0, None)

    @property
    def teachers(self):
        if self.model_T is None:
            return []
        return list(self.model_T) if isinstance(self.model_T, (list, tuple)) else [self.model_T]

    # ----- the hook a distiller overrides --------------------------------------------------
    def compute_loss(self, results_S, results_T):
        """(total_loss, {name: unweighted loss}) from the adaptors' dicts."""
        raise NotImplementedError

    # ----- context manager: closes the metric writers ----------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._tensorboard:
            self._tensorboard.close()
        self._tensorboard = None
        return False

    # ----- training --------------------------------------------------------------------------
    def train(self, optimizer, dataloader, num_epochs=None, scheduler_class=None,
              scheduler_args=None, scheduler=None, max_grad_norm=-1.0, num_steps=None,
              callback=None, batch_postprocessor=None, **args):
        """Train for num_epochs epochs or num_steps optimizer steps (exactly one of them).

        Checkpoints gs{step}.pkl (the student's state_dict) go to t_config.output_dir:
        ckpt_frequency times per epoch (every ckpt_epoch_frequency epochs, and in the last), or
        every ckpt_steps steps with num_steps; always at the last step. callback(model=, step=)
        runs after each. A resume state is saved beside each checkpoint (see resume_from).
        SIGINT and SIGTERM end the current step, save a resume state and raise
        TrainingInterrupted. **args are passed to every model call.

        With t_config.data_parallel (one process per device, torch.distributed initialised, e.g.
        by torchrun) the student runs inside DistributedDataParallel, whose gradients are
        averaged over the processes on the last micro-batch of each accumulation group; the
        projections' gradients are averaged before each optimizer step. Each process gets its
        own share of the data from its dataloader (a DistributedSampler). Rank 0 alone writes
        checkpoints, resume states and logs and runs the callback; the logged losses are
        averaged over the processes.
        """
        if (num_epochs is None) == (num_steps is None):
            raise ValueError("train: give exactly one of num_epochs and num_steps")
        accumulation = self.t_config.gradient_accumulation_steps
        steps_per_epoch = len(dataloader) // accumulation
        if steps_per_epoch == 0:
            raise ValueError(f"train: the dataloader has {len(dataloader)} batches, fewer than "
                             f"gradient_accumulation_steps={accumulation}")
        total_steps = num_steps if num_steps is not None else int(num_epochs) * steps_per_epoch
        num_epochs = int(num_epochs) if num_epochs is not None else math.ceil(total_steps / steps_per_epoch)
        added_groups = self._add_projections_to(optimizer)
        if scheduler_class is not None:  # built now, so it also schedules the projections' groups
            scheduler = scheduler_class(optimizer, **(scheduler_args or {}))
        elif scheduler is not None and added_groups:
            raise ValueError("train: the scheduler was built before the projections' parameter "
                             "groups joined the optimizer; pass scheduler_class and "
                             "scheduler_args instead of scheduler")
        os.makedirs(self.t_config.output_dir, exist_ok=True)
        if self.t_config.log_dir:
            os.makedirs(self.t_config.log_dir, exist_ok=True)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.t_config.mixed_precision == "fp16")
        run = _Run(optimizer, scheduler, scaler, steps_per_epoch, accumulation, total_steps)
        if self._pending_resume is not None:
            self._restore(run, self._pending_resume)
            self._pending_resume = None
        logger.info("Training %s for %d steps (%d per epoch, %d epochs) from step %d\n%s\n%s",
                    type(self).__name__, total_steps, steps_per_epoch, num_epochs, run.global_step,
                    self.t_config, self.d_config if self.d_config is not None else "")

        params = self._trained_parameters()
        parallel = self._data_parallel()
        if parallel:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._student_forward = DistributedDataParallel(self.model_S, device_ids=device_ids)
        checkpoints = self._checkpoint_steps(total_steps, steps_per_epoch, num_epochs, num_steps is not None)
        # TextBrewer: every (steps per epoch, or ckpt_steps with num_steps) // print_freq steps,
        # and once per that period when print_freq exceeds it.
        period = (self.t_config.ckpt_steps if num_steps is not None and self.t_config.ckpt_steps
                  else steps_per_epoch)
        log_every = self.log_every_steps or (period // self.print_freq or period)
        running = {}  # loss terms summed on the device since the last log line
        logged_steps = 0
        self._first_nonfinite = torch.full((), -1, device=self.device)
        self.model_S.train()
        optimizer.zero_grad(set_to_none=True)
        with resume.stop_on_signals() as stop, self._unwrap_after_training():
            for epoch in range(run.epoch, num_epochs):
                run.epoch = epoch
                skip, run.batches_done = run.batches_done, 0
                batches = self._epoch_batches(dataloader, epoch, steps_per_epoch * accumulation, skip)
                progress = tqdm(total=steps_per_epoch, initial=skip // accumulation,
                                desc=f"epoch {epoch + 1}/{num_epochs}",
                                disable=not (logger.isEnabledFor(logging.INFO) and _is_main_process()),
                                leave=False)
                for batch, cached_T in batches:
                    self.kd_loss_weight, self.hard_label_weight = self._scheduled_weights(run.global_step, total_steps)
                    if batch_postprocessor is not None and cached_T is None:
                        batch = batch_postprocessor(batch)
                    closes_group = (run.batches_done + 1) % accumulation == 0
                    with self._gradient_sync(closes_group):
                        total_loss, losses = self.train_on_batch(batch, args, cached_T)
                        scaler.scale(total_loss / accumulation).backward()
                    self._accumulate(running, total_loss, losses, run.global_step + 1)
                    run.batches_done += 1
                    if run.batches_done % accumulation:
                        continue

                    if parallel:
                        self._average_projection_gradients()
                    if max_grad_norm > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    if scheduler is not None:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    run.global_step += 1
                    logged_steps += 1
                    progress.update(1)

                    if run.global_step % log_every == 0 or run.global_step == total_steps:
                        self._check_finite(running)
                        self._log(running, logged_steps * accumulation, run.global_step, epoch, optimizer, progress)
                        running, logged_steps = {}, 0
                    if run.global_step in checkpoints:
                        self._check_finite(running)
                        self._save_checkpoint(run, callback)
                    if (_any_process(bool(stop), self.device) if parallel else stop):
                        path = self._save_resume_state(run)
                        raise resume.TrainingInterrupted(stop.signal_number, run.global_step, path)
                    if run.global_step == total_steps:
                        break
                progress.close()
                run.batches_done = 0
                if self._building_cache:
                    self._building_cache = False
                    self._cache_complete = self._finish_cache(parallel, skip)
                if run.global_step == total_steps:
                    break
        logger.info("Training finished at step %d", run.global_step)

    def resume_from(self, path):
        """Continue from a resume state (resume_gs{step}.pt) at the next call of train()."""
        self._pending_resume = resume.load_state(path)
        logger.info("Resuming from %s (step %d)", path, self._pending_resume["global_step"])

    def train_on_batch(self, batch, args, cached_T=None):
        """Forward the teachers (or take their cached logits) and the student; return the loss."""
        batch, indices = _split_indices(batch)
        batch = move_to_device(batch, self.device)
        if cached_T is not None:
            results_T = move_to_device_nested(cached_T, self.device)
        elif indices is not None and self._cache_complete and self._caches_logits():
            results_T = self._indexed_logits(indices)
        else:
            results_T = self.teacher_results(batch, args)
            if self._building_cache and indices is not None:
                self._store_indexed_logits(indices, results_T)
            elif self._building_cache:
                self._logit_cache.append((move_to_device(batch, "cpu"), _logits_on_cpu(results_T)))
        with self._autocast():
            outputs_S = call_model(self._student_forward, batch, args)
        results_S = post_adaptor(self.adaptor_S(batch, outputs_S))
        return self.compute_loss(results_S, results_T)

    def teacher_results(self, batch, args):
        """The teachers' adapted outputs: a dict for one teacher, a list for several, None for none."""
        if not self.teachers:
            return None
        with torch.no_grad(), self._autocast():
            results = [post_adaptor(self.adaptor_T(batch, call_model(teacher, batch, args)))
                       for teacher in self.teachers]
        return results if isinstance(self.model_T, (list, tuple)) else results[0]

    # ----- pieces of the loop -------------------------------------------------------------------
    def _caches_logits(self):
        return bool(self.d_config is not None and self.d_config.is_caching_logits and self.teachers
                    and not self.d_config.intermediate_matches)

    def _epoch_batches(self, dataloader, epoch, num_batches, skip):
        """(batch, cached teacher results or None) pairs of one epoch, after `skip` batches.

        Batches past the last full accumulation group are left out, so every optimizer step
        sees the same number of examples. A sampler with set_epoch (DistributedSampler, or any
        seeded sampler) gets the epoch, so a resumed run sees the same order.

        A logit-caching distiller fills its cache while the teachers run, then stops running
        them. When the batches carry their examples' indices (EXAMPLE_INDEX_KEY), the cache is a
        (num_examples, classes) table per teacher, filled until every example has its row,
        and later epochs keep the dataloader's own shuffling. Otherwise the batches of the first
        whole epoch are stored with their logits and replayed in a new random order.
        """
        if self._caches_logits() and self._cache_complete and self._index_cache is None:
            order = torch.randperm(len(self._logit_cache)).tolist()
            return ((self._logit_cache[i][0], self._logit_cache[i][1]) for i in order)
        self._building_cache = self._caches_logits() and not self._cache_complete
        self._logit_cache = []
        self._num_examples = len(dataloader.dataset) if hasattr(dataloader, "dataset") else None
        _set_epoch(dataloader, epoch)
        batches = itertools.islice(dataloader, skip, num_batches)
        return ((batch, None) for batch in batches)

    def _data_parallel(self):
        if not self.t_config.data_parallel:
            return False
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("TrainingConfig(data_parallel=True) needs torch.distributed to be "
                             "initialised (launch with torchrun and call init_process_group)")
        return True

    @contextlib.contextmanager
    def _unwrap_after_training(self):
        try:
            yield
        finally:
            self._student_forward = self.model_S

    def _gradient_sync(self, closes_group):
        """DistributedDataParallel averages gradients only on the last micro-batch of a group."""
        if closes_group or self._student_forward is self.model_S:
            return contextlib.nullcontext()
        return self._student_forward.no_sync()

    def _average_projection_gradients(self):
        """One all-reduce for all projection gradients (a projection a batch missed counts 0)."""
        params = [p for proj in self.projs if proj is not None for p in proj.parameters()]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for param, averaged in zip(params, flat.split([p.numel() for p in params])):
            param.grad = averaged.view_as(param).clone()

    def _store_indexed_logits(self, indices, results_T):
        per_teacher = results_T if isinstance(results_T, list) else [results_T]
        if any("logits_mask" in results for results in per_teacher):
            raise ValueError("caching logits by example index needs one logits row per example; "
                             "the adaptor returned logits_mask")
        if self._index_cache is None:
            if self._num_examples is None:
                raise ValueError("caching logits by example index needs a dataloader with a "
                                 "dataset of known length")
            self._index_cache = [[torch.zeros(self._num_examples, *logits.shape[1:],
                                              device=self.device) for logits in results["logits"]]
                                 for results in per_teacher]
            self._index_filled = torch.zeros(self._num_examples, dtype=torch.bool, device=self.device)
        indices = indices.to(self.device, non_blocking=True)
        for table, results in zip(self._index_cache, per_teacher):
            for head, logits in zip(table, results["logits"]):
                head[indices] = logits.detach().float()
        self._index_filled[indices] = True

    def _indexed_logits(self, indices):
        indices = indices.to(self.device, non_blocking=True)
        results = [{"logits": [head[indices] for head in table]} for table in self._index_cache]
        return results if isinstance(self.model_T, (list, tuple)) else results[0]

    def _finish_cache(self, parallel, skip):
        """Whether the cache now covers the whole dataset (one host sync per epoch)."""
        if self._index_cache is None:  # batch replay: only a whole epoch can be replayed
            return skip == 0
        if parallel:  # each process filled the rows of its own share: pool them
            counts = self._index_filled.float()
            dist.all_reduce(counts)
            for table in self._index_cache:
                for head in table:
                    head.mul_(self._index_filled.unsqueeze(-1))
                    dist.all_reduce(head)
                    head.div_(counts.clamp_min(1).unsqueeze(-1))
            self._index_filled = counts > 0
        complete = bool(self._index_filled.all())
        if complete:
            logger.info("Teacher logits cached for all %d examples: the teachers stop running",
                        self._num_examples)
        return complete

    def _autocast(self):
        dtype = AUTOCAST_DTYPES.get(self.t_config.mixed_precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _scheduled_weights(self, step, total_steps):
        if self.d_config is None:
            return 1, 1
        if total_steps is None:  # outside training: the base weights
            return self.d_config.kd_loss_weight, self.d_config.hard_label_weight
        return self.d_config.weights_at(step, total_steps)

    def _trained_parameters(self):
        params = list(self.model_S.parameters())
        for proj in self.projs:
            if proj is not None:
                params += list(proj.parameters())
        return params

    def _add_projections_to(self, optimizer):
        """Each projection becomes its own parameter group, once per optimizer."""
        present = {id(p) for group in optimizer.param_groups for p in group["params"]}
        added = 0
        for proj, group in zip(self.projs, self.projs_group):
            if proj is not None and not any(id(p) in present for p in proj.parameters()):
                optimizer.add_param_group({"params": list(proj.parameters()), **group})
                added += 1
        return added

    def _checkpoint_steps(self, total_steps, steps_per_epoch, num_epochs, by_steps):
        if by_steps:
            every = self.t_config.ckpt_steps
            steps = set(range(every, total_steps + 1, every)) if every else set()
            return steps | {total_steps}
        frequency = self.t_config.ckpt_frequency
        in_epoch = {int(steps_per_epoch * i / frequency) for i in range(frequency)}
        steps = set()
        for epoch in range(num_epochs):
            if (epoch + 1) % self.t_config.ckpt_epoch_frequency == 0 or epoch + 1 == num_epochs:
                steps |= {epoch * steps_per_epoch + offset for offset in in_epoch if offset > 0}
                steps.add((epoch + 1) * steps_per_epoch)  # offset 0: the end of the epoch
        return steps

    def _save_checkpoint(self, run, callback):
        if not _is_main_process():
            return
        path = os.path.join(self.t_config.output_dir, f"gs{run.global_step}.pkl")
        atomic_torch_save(self.model_S.state_dict(), path)
        logger.info("Saved %s", path)
        self._save_resume_state(run)
        if callback is not None:
            callback(model=self.model_S, step=run.global_step)
            self.model_S.train()

    def _save_resume_state(self, run):
        path = resume.state_path(self.t_config.output_dir, run.global_step)
        if not _is_main_process():
            return path
        resume.save_state(
            path, self.t_config.keep_resume_states, global_step=run.global_step,
            epoch=run.epoch, batches_done=run.batches_done,
            model_S=self.model_S.state_dict(),
            projs=[proj.state_dict() if proj is not None else None for proj in self.projs],
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
            scaler=run.scaler.state_dict())
        return path

    def _restore(self, run, state):
        self.model_S.load_state_dict(state["model_S"])
        for proj, proj_state in zip(self.projs, state.get("projs", [])):
            if proj is not None:
                proj.load_state_dict(proj_state)
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scheduler is not None and state.get("scheduler") is not None:
            run.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        resume.restore_rng(state["rng"])
        run.global_step, run.epoch, run.batches_done = state["global_step"], state["epoch"], state["batches_done"]
        if run.batches_done >= run.steps_per_epoch * run.accumulation:  # saved at an epoch's end
            run.epoch, run.batches_done = run.epoch + 1, 0

    def _check_finite(self, running):
        """Stop before a non-finite loss reaches a log line or a checkpoint (one host sync).

        Under fp16 the GradScaler already skips the steps whose gradients are not finite.
        """
        if self.t_config.mixed_precision == "fp16":
            return
        first_nonfinite = self._first_nonfinite
        if self._student_forward is not self.model_S:  # every process stops, or none
            first_nonfinite = first_nonfinite.clone()
            dist.all_reduce(first_nonfinite, op=dist.ReduceOp.MAX)
        step = int(first_nonfinite)
        if step >= 0:
            bad = [name for name, value in running.items() if not torch.isfinite(value)]
            raise FloatingPointError(f"the loss was not finite at step {step} "
                                     f"(terms: {', '.join(bad) or 'see metrics.jsonl'}); "
                                     "no checkpoint was written after it")

    def _accumulate(self, running, total_loss, losses, step):
        """Sum the detached terms on the device and note the first non-finite step, all
        without a host synchronisation."""
        for name, value in [("loss", total_loss), *losses.items()]:
            value = value.detach().float()
            running[name] = running[name] + value if name in running else value
        nonfinite = ~torch.isfinite(running["loss"])
        self._first_nonfinite = torch.where(nonfinite & (self._first_nonfinite < 0),
                                            torch.full_like(self._first_nonfinite, step),
                                            self._first_nonfinite)

    def _log(self, running, num_batches, step, epoch, optimizer, progress):
        if not running:
            return
        names = list(running)
        values = torch.stack([running[name] for name in names]).div(num_batches)
        if self._student_forward is not self.model_S:
            dist.all_reduce(values)
            values /= dist.get_world_size()
        if not _is_main_process():
            return
        values = values.tolist()  # one sync
        record = {"step": step, "epoch": epoch + 1, **dict(zip(names, values)),
                  "lr": optimizer.param_groups[0]["lr"]}
        progress.set_postfix(loss=f"{record['loss']:.4f}")
        logger.info("step %d: %s", step, " ".join(f"{k}={v:.5g}" for k, v in record.items()
                                                   if k not in ("step",)))
        if self.t_config.log_dir:
            append_line(os.path.join(self.t_config.log_dir, "metrics.jsonl"), json.dumps(record))
            self._write_tensorboard(record, step)

    def _write_tensorboard(self, record, step):
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tensorboard = False
                return
            self._tensorboard = SummaryWriter(log_dir=self.t_config.log_dir)
        if self._tensorboard:
            for name, value in record.items():
                if name != "step":
                    self._tensorboard.add_scalar(name, value, step)


@dataclasses.dataclass
class _Run:
    """What changes during one train() call, and what a resume state records of it."""
    optimizer: object
    scheduler: object
    scaler: object
    steps_per_epoch: int
    accumulation: int
    total_steps: int
    global_step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of the current epoch already trained on


def _is_main_process():
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _any_process(flag, device):
    """Whether flag is set on any process (a signal may reach the processes a step apart)."""
    flag = torch.tensor([int(flag)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _set_epoch(dataloader, epoch):
    """Tell a seeded sampler (e.g. DistributedSampler) the epoch, wherever it sits."""
    for holder in (getattr(dataloader, "sampler", None), getattr(dataloader, "batch_sampler", None)):
        for sampler in (holder, getattr(holder, "sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
                return


def _split_indices(batch):
    """(batch without EXAMPLE_INDEX_KEY, the indices or None)."""
    if isinstance(batch, Mapping) and EXAMPLE_INDEX_KEY in batch:
        indices = batch[EXAMPLE_INDEX_KEY]
        return {key: value for key, value in batch.items() if key != EXAMPLE_INDEX_KEY}, indices
    return batch, None


def move_to_device_nested(results, device):
    if isinstance(results, list) and results and isinstance(results[0], dict):
        return [move_to_device_nested(r, device) for r in results]
    return {key: [v.to(device, non_blocking=True) for v in value] if isinstance(value, list)
            else value.to(device, non_blocking=True) for key, value in results.items()}


def _logits_on_cpu(results_T):
    """What the logit cache keeps of the teachers' results: their logits, on the CPU."""
    if isinstance(results_T, list):
        return [_logits_on_cpu(r) for r in results_T]
    return {key: [t.detach().to("cpu") for t in as_list(results_T[key])]
            for key in ("logits", "logits_mask") if key in results_T}
