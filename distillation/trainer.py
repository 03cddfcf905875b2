"""The training loop every distiller shares: train -> one batch -> compute_loss -> optimizer step.

A distiller subclasses AbstractDistiller and overrides compute_loss(results_S, results_T);
everything else (devices, mixed precision, accumulation, clipping, schedules, checkpoints,
logging, the teachers' logit cache) happens here once.
"""

import contextlib
import dataclasses
import itertools
import logging
import math
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import resume
from .adaptors import PerTeacher, call_model, move_to_device, out_of_inference_mode, post_adaptor, split_sides
from .checkpoint_writer import BackgroundWriter, CheckpointWriteError
from .configs import TEACHER_DTYPES
from .io import remove_unfinished_writes
from .logit_cache import TeacherLogitCache, split_indices
from .loss_log import LossLog
from .parallel import average_gradients, flags_of_any_process, is_main_process
from .run_files import checkpoint_path, resume_state_path

logger = logging.getLogger("distillation")

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
READS_ALL = frozenset({"hidden", "attention"})  # the features a distiller reads unless it says
# Features a model computes for the layers it is asked for only (layers_read), never by default.
PER_LAYER_FEATURES = ("relation", "attention_scores")


class AbstractDistiller:
    """Trains model_S; the teachers (model_T: a model, a list of models, or None) stay frozen.

    Attributes kept under TextBrewer's names: t_config, d_config, model_T, model_S, adaptor_T,
    adaptor_S, projs (trainable modules beside the student, None for none) and projs_group
    (their optimizer options), print_freq (as in TextBrewer: log the losses print_freq times per
    epoch, or per ckpt_steps with num_steps). log_every_steps, when set, logs every this many
    optimizer steps instead. stall_watch, when set (a StallWatch), warns when the student's loss
    comes back to a uniform prediction's and stays there (see stall_watch.py).
    """

    # The methods (or function attributes) that compute pure tensor pieces of compute_loss,
    # compiled by compile(); what reads the training step or leaves the device stays eager.
    compiled_losses = ()
    # What writes checkpoints and resume states: a copy at the step, the files in a thread.
    checkpoint_writer = BackgroundWriter

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
        self.stall_watch = None
        self.device = train_config.device
        self.model_S.to(self.device)
        for teacher in self.teachers:
            teacher.to(self.device)
            teacher.eval()
            teacher.requires_grad_(False)
        self.loss_log = None  # made by train(): the running sums of the loss terms
        self.logit_cache = None  # made by train() when caches_logits() (see logit_cache.py)
        self._pending_resume = None  # a resume state for the next train()
        self._run = None  # where the current (or last) train() stands (_Run); None before any
        self._student_forward = (
            model_S  # the DistributedDataParallel wrapper while training on several processes
        )
        self.compiled = False  # compile() was called
        self._writer = None  # made by the first train(); its host buffers serve every checkpoint

    # ----- where training stands, for a compute_loss that depends on it ---------------------
    @property
    def global_step(self):
        """Optimizer steps done; the batch being trained belongs to step global_step + 1."""
        return self._run.global_step if self._run is not None else 0

    @property
    def total_steps(self):
        """The optimizer steps of the current (or last) train() call; None before any."""
        return self._run.total_steps if self._run is not None else None

    @property
    def kd_loss_weight(self):
        """The KD weight in force: d_config's, after its schedule at the current step."""
        return self._scheduled_weights()[0]

    @property
    def hard_label_weight(self):
        """The hard-label weight in force: d_config's, after its schedule at the current step."""
        return self._scheduled_weights()[1]

    @property
    def teachers(self):
        if self.model_T is None:
            return []
        return list(self.model_T) if isinstance(self.model_T, (list, tuple)) else [self.model_T]

    # ----- the hook a distiller overrides --------------------------------------------------
    def compute_loss(self, results_S, results_T):
        """(total_loss, {name: unweighted loss}) from the adaptors' dicts."""
        raise NotImplementedError

    def features_read(self):
        """The adaptor features beyond logits and labels that compute_loss reads, e.g.
        {'hidden', 'attention'}: a pipeline may ask its models for only these. A distiller
        that does not say is taken to read them all."""
        return set(READS_ALL)

    def layers_read(self):
        """{'teacher': {feature: [layers]}, 'student': {...}}: the layers of the PER_LAYER_FEATURES
        that compute_loss reads, which a pipeline asks each model for (and for no other layer);
        nothing unless a distiller says."""
        return {"teacher": {}, "student": {}}

    def caches_logits(self):
        """Whether training keeps the teachers' logits (DistillationConfig.is_caching_logits)
        and stops running the teachers once every example has them: only when the loss reads
        nothing else of the teachers."""
        return bool(
            self.d_config is not None
            and self.d_config.is_caching_logits
            and self.teachers
            and not self.features_read()
        )

    # ----- torch.compile ------------------------------------------------------------------
    def compile(self, **options):
        """torch.compile the forward passes of the student and the teachers (nn.Module.compile:
        checkpoints keep their parameter names) and the compiled_losses, with torch.compile's
        options (mode, backend, dynamic, ...). Each training step then starts a new CUDA graph
        step (torch.compiler.cudagraph_mark_step_begin), so mode='reduce-overhead' replays them."""
        from torch.fx.experimental import _config as symbolic_shapes

        if self.compiled:
            raise RuntimeError("compile(): this distiller is compiled already")
        if options.get("mode") == "reduce-overhead" and self.t_config.gradient_accumulation_steps > 1:
            # A CUDA graph's outputs live until its next replay: the next micro-batch would
            # overwrite what the accumulated gradients are made of.
            raise ValueError(
                "compile(mode='reduce-overhead') replays CUDA graphs, which gradient accumulation "
                f"cannot use (gradient_accumulation_steps={self.t_config.gradient_accumulation_steps}): "
                "compile without the mode"
            )
        # Sizes that happen to be equal are not one size: a batch as long as it is wide would
        # otherwise give both dimensions one symbol, and the next batch a new graph.
        symbolic_shapes.use_duck_shape = False
        for model in [self.model_S, *self.teachers]:
            model.compile(**options)
        for name in self.compiled_losses:
            setattr(self, name, torch.compile(getattr(self, name), **options))
        self.compiled = True

    # ----- a distiller's own state, kept in the resume state (under the key 'distiller') -----
    def extra_state(self):
        """State of the distiller beyond its modules (tensors and plain Python values), or None."""
        return None

    def load_extra_state(self, state):
        """Restore what extra_state returned."""

    # ----- context manager: closes the metric writers ----------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.loss_log is not None:
            self.loss_log.close()
        return False

    # ----- training --------------------------------------------------------------------------
    def train(
        self,
        optimizer,
        dataloader,
        num_epochs=None,
        scheduler_class=None,
        scheduler_args=None,
        scheduler=None,
        max_grad_norm=-1.0,
        num_steps=None,
        callback=None,
        batch_postprocessor=None,
        **args,
    ):
        """Train for num_epochs epochs or num_steps optimizer steps (exactly one of them).

        Checkpoints gs{step}.pkl (the student's state_dict) go to t_config.output_dir:
        ckpt_frequency times per epoch (every ckpt_epoch_frequency epochs, and in the last), or
        every ckpt_steps steps with num_steps; always at the last step. callback(model=, step=)
        runs after each, with the student as the checkpoint holds it. A resume state is saved
        beside each checkpoint (see resume_from). Both are copied to host memory at the step
        and written in the background (checkpoint_writer.py): train() returns once the last is
        on the disk, and a failed write raises CheckpointWriteError at the next step.
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
        schedule = (scheduler_class, scheduler_args, scheduler)
        run = self._start(optimizer, dataloader, num_epochs, num_steps, schedule, max_grad_norm)
        with resume.stop_on_signals() as stop, self._training(run):
            for epoch in range(run.epoch, run.num_epochs):
                replaying, batches = self._epoch_batches(run, dataloader, epoch)
                for batch in batches:
                    if batch_postprocessor is not None and not replaying:  # replayed: already done
                        batch = batch_postprocessor(batch)
                    if self._accumulate(run, batch, args):  # the batch closed an accumulation group
                        self._optimizer_step(run)
                        if self._checkpoint_or_stop(run, callback, stop):
                            break
                self._end_epoch(run)
                if run.global_step == run.total_steps:
                    break
            self._writer.wait()  # the last checkpoint is on the disk when train() returns
        logger.info("Training finished at step %d", run.global_step)

    def _start(self, optimizer, dataloader, num_epochs, num_steps, schedule, max_grad_norm):
        """Check the arguments and make the run: its length, schedule, scaler, logs and cache.
        schedule: (scheduler_class, scheduler_args, scheduler) as train() takes them."""
        steps_per_epoch, total_steps, num_epochs = self._run_length(dataloader, num_epochs, num_steps)
        scheduler = self._scheduler_with_projections(optimizer, *schedule)
        self._prepare_files_and_logs()
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.t_config.mixed_precision == "fp16")
        by_steps = num_steps is not None
        # TextBrewer: every (steps per epoch, or ckpt_steps with num_steps) // print_freq steps,
        # and once per that period when print_freq exceeds it.
        period = self.t_config.ckpt_steps if by_steps and self.t_config.ckpt_steps else steps_per_epoch
        run = _Run(
            optimizer,
            scheduler,
            scaler,
            steps_per_epoch,
            self.t_config.gradient_accumulation_steps,
            total_steps,
            num_epochs,
            max_grad_norm,
            parallel=self._data_parallel(),
            params=self._trained_parameters(),
            checkpoints=self._checkpoint_steps(total_steps, steps_per_epoch, num_epochs, by_steps),
            log_every=self.log_every_steps or (period // self.print_freq or period),
        )
        self._restore_pending_resume(run)
        logger.info(
            "Training %s for %d steps (%d per epoch, %d epochs) from step %d\n%s\n%s",
            type(self).__name__,
            total_steps,
            steps_per_epoch,
            num_epochs,
            run.global_step,
            self.t_config,
            self.d_config if self.d_config is not None else "",
        )
        return run

    def _run_length(self, dataloader, num_epochs, num_steps):
        """(optimizer steps per epoch, steps in all, epochs) of a train() call; exactly one of
        num_epochs and num_steps is given."""
        if (num_epochs is None) == (num_steps is None):
            raise ValueError("train: give exactly one of num_epochs and num_steps")
        accumulation = self.t_config.gradient_accumulation_steps
        steps_per_epoch = len(dataloader) // accumulation
        if steps_per_epoch == 0:
            raise ValueError(
                f"train: the dataloader has {len(dataloader)} batches, fewer than "
                f"gradient_accumulation_steps={accumulation}"
            )
        total_steps = num_steps if num_steps is not None else int(num_epochs) * steps_per_epoch
        num_epochs = int(num_epochs) if num_epochs is not None else math.ceil(total_steps / steps_per_epoch)
        return steps_per_epoch, total_steps, num_epochs

    def _scheduler_with_projections(self, optimizer, scheduler_class, scheduler_args, scheduler):
        """The projections' parameters join the optimizer; the scheduler that schedules them too."""
        added_groups = self._add_projections_to(optimizer)
        if scheduler_class is not None:  # built now, so it also schedules the projections' groups
            return scheduler_class(optimizer, **(scheduler_args or {}))
        if scheduler is not None and added_groups:
            raise ValueError(
                "train: the scheduler was built before the projections' parameter "
                "groups joined the optimizer; pass scheduler_class and "
                "scheduler_args instead of scheduler"
            )
        return scheduler

    def _prepare_files_and_logs(self):
        """Once the arguments are checked: the teachers' dtype, the output folders, the teacher
        logit cache and a new loss log."""
        if self.t_config.teacher_dtype is not None:  # once; before training the teachers stay as given
            for teacher in self.teachers:
                teacher.to(TEACHER_DTYPES[self.t_config.teacher_dtype])
        os.makedirs(self.t_config.output_dir, exist_ok=True)
        if self.t_config.log_dir:
            os.makedirs(self.t_config.log_dir, exist_ok=True)
        if self.logit_cache is None and self.caches_logits():
            # A dict batch may carry its examples' dataset indices under EXAMPLE_INDEX_KEY: the
            # cache is then keyed by example.
            self.logit_cache = TeacherLogitCache(isinstance(self.model_T, (list, tuple)), self.device)
        if self.loss_log is not None:
            self.loss_log.close()
        self.loss_log = LossLog(
            self.device, self.t_config.log_dir, check_finite=self.t_config.mixed_precision != "fp16"
        )

    def _restore_pending_resume(self, run):
        """The state resume_from() named, restored into run (once)."""
        if self._pending_resume is None:
            return
        self._restore(run, self._pending_resume)
        self._pending_resume = None
        self.loss_log.note_resume(run.global_step)
        if is_main_process():  # what a killed run was writing when it died
            remove_unfinished_writes(self.t_config.output_dir)

    @contextlib.contextmanager
    def _training(self, run):
        """The student in training mode (inside DistributedDataParallel on several processes)
        while the run is the distiller's current one."""
        if run.parallel:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._student_forward = DistributedDataParallel(self.model_S, device_ids=device_ids)
        self._run = run
        if self._writer is None:
            self._writer = self.checkpoint_writer()
        self.model_S.train()
        run.optimizer.zero_grad(set_to_none=True)
        try:
            yield
        finally:  # the run stays the distiller's last one: global_step and stage() read it
            self._student_forward = self.model_S
            if run.progress is not None:
                run.progress.close()
            self._writer.close()  # a checkpoint handed to the writer is written, whatever stopped

    def _accumulate(self, run, batch, args):
        """Forward and backward one micro-batch; True when it closes an accumulation group."""
        closes_group = (run.batches_done + 1) % run.accumulation == 0
        if self.compiled:  # the outputs of the last step's CUDA graphs are no longer read
            torch.compiler.cudagraph_mark_step_begin()
        with self._gradient_sync(closes_group):
            total_loss, losses = self.train_on_batch(batch, args)
            run.scaler.scale(total_loss / run.accumulation).backward()
        self.loss_log.add(total_loss, losses, run.global_step + 1)
        if self.stall_watch is not None:
            self.stall_watch.add(losses, run.global_step + 1)
        run.batches_done += 1
        return closes_group

    def _optimizer_step(self, run):
        """Average, clip and apply the accumulated gradients, then advance the schedule."""
        if run.parallel:  # DistributedDataParallel averages the student's gradients
            average_gradients([p for proj in self.projs if proj is not None for p in proj.parameters()])
        if run.max_grad_norm > 0:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.params, run.max_grad_norm)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.scheduler is not None:
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.global_step += 1
        self.loss_log.steps += 1
        run.progress.update(1)

    def _checkpoint_or_stop(self, run, callback, stop):
        """After a step: a failed write stops the run; a log line, a checkpoint, or a stop on a
        signal. True at the last step."""
        log, step = self.loss_log, run.global_step
        stopping, write_failed = bool(stop), self._writer.failed  # rank 0 alone writes
        if run.parallel:  # every process stops at the same step
            stopping, write_failed = flags_of_any_process([stopping, write_failed], self.device)
        if write_failed:
            self._writer.check()  # rank 0: the writer's own error
            raise CheckpointWriteError(
                f"step {step}: process 0 could not write a checkpoint (its error says why)"
            )
        if step % run.log_every == 0 or step == run.total_steps:
            log.check_finite(run.parallel)
            log.write(
                step,
                run.epoch,
                run.optimizer.param_groups[0]["lr"],
                run.accumulation,
                run.parallel,
                run.progress,
            )
            self._check_stall(step)
        if step in run.checkpoints:
            log.check_finite(run.parallel)
            self._check_stall(step)  # before the callback, which may record it
            self._save_checkpoint(run, callback)
        if stopping:
            log.check_finite(run.parallel)
            if step in run.checkpoints:  # its state is with the writer already
                path = resume_state_path(self.t_config.output_dir, step)
            else:
                path = self._save_resume_state(run)
            self._writer.wait()  # the state is on the disk before the run stops
            raise resume.TrainingInterrupted(stop.signal_number, step, path)
        return step == run.total_steps

    def _check_stall(self, step):
        if self.stall_watch is not None and is_main_process():
            self.stall_watch.check(step)

    def resume_from(self, path):
        """Continue from a resume state (resume_gs{step}.pt) at the next call of train()."""
        self._pending_resume = resume.load_state(path)
        self._load_stall_watch(self._pending_resume)  # now: the resumed step's record may need it
        logger.info("Resuming from %s (step %d)", path, self.resume_step)

    def _load_stall_watch(self, state):
        local = state["per_process"][dist.get_rank() if dist.is_initialized() else 0]
        if self.stall_watch is not None and local.get("stall_watch") is not None:
            self.stall_watch.load_state_dict(local["stall_watch"], self.device)

    @property
    def resume_step(self):
        """The step the next train() resumes from (0 for a fresh run)."""
        return self._pending_resume["global_step"] if self._pending_resume is not None else 0

    def train_on_batch(self, batch, args):
        """Forward the teachers (or take their cached logits) and the student: (loss, terms)."""
        batch, indices = split_indices(batch)
        batch = move_to_device(batch, self.device)
        batch_T, batch_S = split_sides(batch)
        results_T = self.logit_cache.lookup(indices) if self.logit_cache is not None else None
        if results_T is None:
            results_T = self.teacher_results(batch_T, args)
            if self.logit_cache is not None:
                self.logit_cache.store(batch, indices, results_T)
        with self._autocast():
            outputs_S = call_model(self._student_forward, batch_S, args)
        results_S = post_adaptor(self.adaptor_S(batch_S, outputs_S))
        return self.compute_loss(results_S, results_T)

    def teacher_results(self, batch, args):
        """The teachers' adapted outputs: a dict for one teacher, a list for several, None for
        none. batch: one batch for every teacher, or a PerTeacher list of one per teacher."""
        if not self.teachers:
            return None
        batches = batch if isinstance(batch, PerTeacher) else [batch] * len(self.teachers)
        with self._teacher_mode():
            results = [
                post_adaptor(self.adaptor_T(part, call_model(teacher, part, args)))
                for teacher, part in zip(self.teachers, batches, strict=True)
            ]
        results = out_of_inference_mode(results)
        return results if isinstance(self.model_T, (list, tuple)) else results[0]

    @contextlib.contextmanager
    def _teacher_mode(self):
        """How the teachers run: with t_config.teacher_dtype, under torch.inference_mode (and
        autocast to it, for a half type); else under torch.no_grad and the student's autocast."""
        name = self.t_config.teacher_dtype
        if name is None:
            with torch.no_grad(), self._autocast():
                yield
            return
        half = name != "fp32"
        with torch.inference_mode(), torch.autocast(self.device.type, TEACHER_DTYPES[name], enabled=half):
            yield

    # ----- pieces of the loop -------------------------------------------------------------------
    def _epoch_batches(self, run, dataloader, epoch):
        """(replaying, the batches of one epoch that remain to be trained on).

        Batches past the last full accumulation group are left out, so every optimizer step
        sees the same number of examples. After a resume, the batches of this epoch already
        trained on are skipped. A sampler with set_epoch (DistributedSampler, or any seeded
        sampler) gets the epoch, so a resumed run sees the same order. A logit cache may replay
        its stored batches instead (logit_cache.py).
        """
        run.epoch = epoch
        skip, num_batches = run.batches_done, run.steps_per_epoch * run.accumulation
        if run.progress is not None:
            run.progress.close()
        run.progress = tqdm(
            total=run.steps_per_epoch,
            initial=skip // run.accumulation,
            desc=f"epoch {epoch + 1}/{run.num_epochs}",
            leave=False,
            disable=not (logger.isEnabledFor(logging.INFO) and is_main_process()),
        )

        def fresh_batches():
            _set_epoch(dataloader, epoch)
            return itertools.islice(dataloader, skip, num_batches)

        if self.logit_cache is None:
            return False, fresh_batches()
        batches = self.logit_cache.batches(dataloader, epoch, num_batches, skip, fresh_batches)
        return self.logit_cache.replaying, batches

    def _end_epoch(self, run):
        run.batches_done = 0
        if self.logit_cache is not None:
            self.logit_cache.end_epoch(run.parallel)

    def _data_parallel(self):
        if not self.t_config.data_parallel:
            return False
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "TrainingConfig(data_parallel=True) needs torch.distributed to be "
                "initialised (launch with torchrun and call init_process_group)"
            )
        return True

    def _gradient_sync(self, closes_group):
        """DistributedDataParallel averages gradients only on the last micro-batch of a group."""
        if closes_group or self._student_forward is self.model_S:
            return contextlib.nullcontext()
        return self._student_forward.no_sync()

    def _autocast(self):
        dtype = AUTOCAST_DTYPES.get(self.t_config.mixed_precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _scheduled_weights(self):
        """(kd_loss_weight, hard_label_weight) at the current step."""
        if self.d_config is None:
            return 1, 1
        if self._run is None:  # before training: the base weights
            return self.d_config.kd_loss_weight, self.d_config.hard_label_weight
        return self.d_config.weights_at(self._run.global_step, self._run.total_steps)

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
        """gs{step}.pkl and its resume state (handed to the writer), then the callback (e.g. an
        evaluation) on the student, whose weights are the checkpoint's until the next step."""
        self._save_resume_state(run, with_checkpoint=True)
        if callback is not None and is_main_process():
            # The callback may draw random numbers (a DataLoader's seed, a sampled example):
            # it must not move the generators the next step uses, or a resumed run would differ.
            with resume.preserved_rng():
                callback(model=self.model_S, step=run.global_step)
            self.model_S.train()

    def _save_resume_state(self, run, with_checkpoint=False):
        """Save where the run stands (and gs{step}.pkl before it, with_checkpoint): copied now,
        written by the writer. Every process adds its own generators, loss sums and cache;
        rank 0 writes. Returns the resume state's path."""
        local = {
            "rng": resume.capture_rng(),
            "loss_log": self.loss_log.state_dict(),
            "logit_cache": self.logit_cache.state_dict() if self.logit_cache is not None else None,
            "stall_watch": self.stall_watch.state_dict() if self.stall_watch is not None else None,
        }
        per_process = [local]
        if run.parallel:
            per_process = [None] * dist.get_world_size()
            dist.all_gather_object(per_process, local)
        output_dir, step = self.t_config.output_dir, run.global_step
        path = resume_state_path(output_dir, step)
        if not is_main_process():
            return path
        student = self.model_S.state_dict()
        state = {
            "global_step": step,
            "epoch": run.epoch,
            "batches_done": run.batches_done,
            "model_S": student,
            "projs": [proj.state_dict() if proj is not None else None for proj in self.projs],
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "scaler": run.scaler.state_dict(),
            "per_process": per_process,
            "distiller": self.extra_state(),
        }
        files = [(checkpoint_path(output_dir, step), student)] if with_checkpoint else []
        keep = self.t_config.keep_resume_states
        # The checkpoint first, then its state, then older states go: a kill at any moment leaves
        # a whole state whose checkpoints are all on the disk.
        self._writer.write(files + [(path, state)], then=lambda: resume.prune_states(output_dir, keep))
        return path

    def _restore(self, run, state):
        parallel = run.parallel
        processes = dist.get_world_size() if parallel else 1
        if len(state["per_process"]) != processes:
            raise ValueError(
                f"the resume state was saved by {len(state['per_process'])} "
                f"process(es); this run has {processes}"
            )
        local = state["per_process"][dist.get_rank() if parallel else 0]
        self.model_S.load_state_dict(state["model_S"])
        for proj, proj_state in zip(self.projs, state.get("projs", [])):
            if proj is not None:
                proj.load_state_dict(proj_state)
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scheduler is not None and state.get("scheduler") is not None:
            run.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        if state.get("distiller") is not None:
            self.load_extra_state(state["distiller"])
        resume.restore_rng(local["rng"])
        self.loss_log.load_state_dict(local["loss_log"])
        if self.logit_cache is not None and local["logit_cache"] is not None:
            self.logit_cache.load_state_dict(local["logit_cache"])
        self._load_stall_watch(state)
        run.global_step, run.epoch, run.batches_done = (
            state["global_step"],
            state["epoch"],
            state["batches_done"],
        )
        if run.batches_done >= run.steps_per_epoch * run.accumulation:  # saved at an epoch's end
            run.epoch, run.batches_done = run.epoch + 1, 0
            if self.logit_cache is not None:
                self.logit_cache.end_epoch(parallel)


@dataclasses.dataclass
class _Run:
    """One train() call: its settings, and where it stands (what a resume state records)."""

    optimizer: object
    scheduler: object
    scaler: object
    steps_per_epoch: int
    accumulation: int
    total_steps: int
    num_epochs: int
    max_grad_norm: float
    parallel: bool  # DistributedDataParallel over several processes
    params: list  # the student's and the projections' parameters, clipped together
    checkpoints: set  # the steps that save gs{step}.pkl
    log_every: int  # optimizer steps between log lines
    global_step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of the current epoch already trained on
    progress: object = None  # the epoch's progress bar


def _set_epoch(dataloader, epoch):
    """Tell a seeded sampler (e.g. DistributedSampler) the epoch, wherever it sits."""
    for holder in (getattr(dataloader, "sampler", None), getattr(dataloader, "batch_sampler", None)):
        for sampler in (holder, getattr(holder, "sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
                return
