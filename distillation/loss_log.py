"""The loss terms of a run: summed on the device between log lines, then averaged and written.

Each log line goes to the logger, to {log_dir}/metrics.jsonl (one JSON object per line) and to
TensorBoard's event files in log_dir when the tensorboard package is installed (rank 0 alone,
flushed at each line as metrics.jsonl is; a resumed run hides the steps its interrupted run
logged after the resume state). Nothing here waits for the device except a log line and the
finite-loss check that comes with it.
"""

import json
import logging
import os

import torch
import torch.distributed as dist

from .io import append_line, atomic_write_text
from .parallel import is_main_process

logger = logging.getLogger("distillation")


class LossLog:
    def __init__(self, device, log_dir, check_finite=True):
        self.device = device
        self.log_dir = log_dir
        self.checks_finite = check_finite  # fp16: the GradScaler skips non-finite steps instead
        self.running = {}  # term -> its sum since the last log line, on the device
        self.steps = 0  # optimizer steps in those sums
        self.first_nonfinite = torch.full((), -1, device=device)  # the first bad step, or -1
        self._tensorboard = None

    def add(self, total_loss, losses, step):
        """Add one batch's terms, and note whether the loss of `step` is finite (no host sync)."""
        for name, value in [("loss", total_loss), *losses.items()]:
            value = value.detach().float()
            # A new sum is a copy: the value may live in a CUDA graph's memory (--compile), which
            # the graph's next replay overwrites.
            self.running[name] = self.running[name] + value if name in self.running else value.clone()
        nonfinite = ~torch.isfinite(self.running["loss"])
        self.first_nonfinite = torch.where(
            nonfinite & (self.first_nonfinite < 0),
            torch.full_like(self.first_nonfinite, step),
            self.first_nonfinite,
        )

    def check_finite(self, parallel):
        """Stop before a non-finite loss reaches a log line or a checkpoint (one host sync)."""
        if not self.checks_finite:
            return
        first_nonfinite = self.first_nonfinite
        if parallel:  # every process stops, or none
            first_nonfinite = first_nonfinite.clone()
            dist.all_reduce(first_nonfinite, op=dist.ReduceOp.MAX)
        step = int(first_nonfinite)
        if step >= 0:
            bad = [name for name, value in self.running.items() if not torch.isfinite(value)]
            raise FloatingPointError(
                f"the loss was not finite at step {step} "
                f"(terms: {', '.join(bad) or 'see metrics.jsonl'}); "
                "no checkpoint was written after it"
            )

    def write(self, step, epoch, lr, batches_per_step, parallel, progress):
        """Log the terms averaged over the batches since the last line, then start new sums."""
        running, num_batches = self.running, self.steps * batches_per_step
        self.running, self.steps = {}, 0
        if not running:
            return
        names = list(running)
        values = torch.stack([running[name] for name in names]).div(num_batches)
        if parallel:
            dist.all_reduce(values)
            values /= dist.get_world_size()
        if not is_main_process():
            return
        record = {"step": step, "epoch": epoch + 1, **dict(zip(names, values.tolist())), "lr": lr}
        progress.set_postfix(loss=f"{record['loss']:.4f}")
        logger.info("step %d: %s", step, " ".join(f"{k}={v:.5g}" for k, v in record.items() if k != "step"))
        if self.log_dir:
            append_line(os.path.join(self.log_dir, "metrics.jsonl"), json.dumps(record))
            self._write_tensorboard(record, step)

    def note_resume(self, step):
        """Drop the lines an interrupted run logged after its resume state, and mark the resume."""
        if not (self.log_dir and is_main_process()):
            return
        path = os.path.join(self.log_dir, "metrics.jsonl")
        kept = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by the kill
                        continue
                    if record.get("step", 0) <= step:
                        kept.append(line.rstrip("\n"))
        kept.append(json.dumps({"step": step, "resumed": True}))
        atomic_write_text(path, "\n".join(kept) + "\n")
        # TensorBoard reads a run's event files in order, and a START mark at step + 1 in the
        # new file hides the later steps of the older ones (purge_step).
        self._open_tensorboard(purge_step=step + 1)

    # ----- resume: the sums since the last log line continue after a resume -----------------
    def state_dict(self):
        return {"running": {name: value.cpu() for name, value in self.running.items()}, "steps": self.steps}

    def load_state_dict(self, state):
        self.running = {name: value.to(self.device) for name, value in state["running"].items()}
        self.steps = state["steps"]

    def close(self):
        if self._tensorboard:
            self._tensorboard.close()
        self._tensorboard = None

    def _open_tensorboard(self, purge_step=None):
        """The run's event file writer, opened at its first use; False without tensorboard."""
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tensorboard = False
            else:
                self._tensorboard = SummaryWriter(log_dir=self.log_dir, purge_step=purge_step)
        return self._tensorboard

    def _write_tensorboard(self, record, step):
        writer = self._open_tensorboard()
        if writer:
            for name, value in record.items():
                if name != "step":
                    writer.add_scalar(name, value, step)
            writer.flush()  # a killed run keeps its lines, as in metrics.jsonl
