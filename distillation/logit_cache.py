"""The teachers' logits, kept after their first pass so that later epochs skip the teachers.

Only a distiller that learns from logits alone can use it (DistillationConfig.is_caching_logits
with no intermediate matches). Two ways to key the cache:

- by example: when each batch carries its examples' dataset indices (a Mapping batch with the
  key EXAMPLE_INDEX_KEY), the cache is one (num_examples, classes) table per teacher and head,
  filled until every example has its row. Later epochs keep the dataloader's own shuffling.
- by batch ("replay"): otherwise the batches of the first whole epoch are stored with their
  logits, and each later epoch replays them in a new random order.

The training loop calls batches() at the start of an epoch, lookup() and store() for each
batch, end_epoch() at its end, and saves state_dict() in every resume state, so that a resumed
run neither runs the teachers again for cached examples nor sees other logits.
"""

import logging
from collections.abc import Mapping

import torch
import torch.distributed as dist

from .adaptors import as_list, move_to_device

EXAMPLE_INDEX_KEY = "index"  # the batch key of the examples' dataset indices

logger = logging.getLogger("distillation")


class TeacherLogitCache:
    def __init__(self, several_teachers, device):
        self.several_teachers = several_teachers  # results are a list (one dict per teacher)
        self.device = device
        self.complete = False  # the cache covers a whole epoch: the teachers stop running
        self.building = False  # filling the cache during this epoch
        self.replaying = False  # this epoch replays stored batches
        self.tables = None  # by example: per teacher, per head, (num_examples, ...) logits
        self.filled = None  # by example: (num_examples,) bool
        self.num_examples = None
        self.stored = []  # replay: (batch, logits) pairs on the CPU
        self.order, self.order_epoch = None, None  # replay: the order of the epoch being replayed
        self._replayed = None  # replay: the logits of the batch being trained on

    # ----- one epoch ------------------------------------------------------------------------
    def batches(self, dataloader, epoch, num_batches, skip, fresh_batches):
        """The epoch's batches after the first `skip`: replayed ones, or fresh_batches()."""
        self.replaying = self.complete and self.tables is None
        if self.replaying:
            return self._replay(epoch, skip)
        self.building = not self.complete
        if self.num_examples is None and hasattr(dataloader, "dataset"):
            self.num_examples = len(dataloader.dataset)
        return fresh_batches()

    def _replay(self, epoch, skip):
        if self.order_epoch != epoch:  # a resumed run keeps the order its epoch started with
            self.order, self.order_epoch = torch.randperm(len(self.stored)).tolist(), epoch
        for i in self.order[skip:]:
            batch, self._replayed = self.stored[i]
            yield batch

    def end_epoch(self, parallel):
        """Close the epoch; the cache is complete once every example (or a whole epoch) is in."""
        if not self.building:
            return
        self.building = False
        if self.tables is None:
            self.complete = bool(self.stored)
            return
        if parallel:
            self.pool()
        self.complete = bool(self.filled.all())  # one host sync per epoch
        if self.complete:
            logger.info(
                "Teacher logits cached for all %d examples: the teachers stop running", self.num_examples
            )

    def pool(self):
        """Share the rows each process filled with all of them (torchrun).

        A row unfilled on a process counts as -inf, so MAX takes the filled value: exact, and
        the same whenever it runs again.
        """
        if self.tables is None:
            return
        for table in self.tables:
            for head in table:
                masked = head.masked_fill(~self.filled.view(-1, *[1] * (head.dim() - 1)), float("-inf"))
                dist.all_reduce(masked, op=dist.ReduceOp.MAX)
                head.copy_(masked.nan_to_num(neginf=0.0))
        filled = self.filled.to(torch.uint8)
        dist.all_reduce(filled, op=dist.ReduceOp.MAX)
        self.filled = filled.bool()

    # ----- one batch ------------------------------------------------------------------------
    def lookup(self, indices):
        """The cached results for this batch, or None when the teachers must run."""
        if not self.complete:
            return None
        if self.tables is None:
            return _to_device(self._replayed, self.device)
        if indices is None:
            raise ValueError(
                f"the logit cache is keyed by example index, but this batch has no '{EXAMPLE_INDEX_KEY}'"
            )
        indices = indices.to(self.device, non_blocking=True)
        results = [{"logits": [head[indices] for head in table]} for table in self.tables]
        return results if self.several_teachers else results[0]

    def store(self, batch, indices, results_T):
        if not self.building:
            return
        if indices is None:
            self.stored.append((move_to_device(batch, "cpu"), _logits_on_cpu(results_T)))
            return
        per_teacher = results_T if isinstance(results_T, list) else [results_T]
        if any("logits_mask" in results for results in per_teacher):
            raise ValueError(
                "caching logits by example index needs one logits row per example; "
                "the adaptor returned logits_mask"
            )
        if self.tables is None:
            if self.num_examples is None:
                raise ValueError(
                    "caching logits by example index needs a dataloader with a dataset of known length"
                )
            self.tables = [
                [
                    torch.zeros(self.num_examples, *logits.shape[1:], device=self.device)
                    for logits in as_list(results["logits"])
                ]
                for results in per_teacher
            ]
            self.filled = torch.zeros(self.num_examples, dtype=torch.bool, device=self.device)
        indices = indices.to(self.device, non_blocking=True)
        for table, results in zip(self.tables, per_teacher):
            for head, logits in zip(table, as_list(results["logits"])):
                head[indices] = logits.detach().float()
        self.filled.index_fill_(0, indices, True)  # (filled[indices] = True copies True from the host)

    # ----- resume ---------------------------------------------------------------------------
    def state_dict(self):
        cpu = (lambda t: t.cpu()) if self.tables is not None else None
        return {
            "complete": self.complete,
            "building": self.building,
            "num_examples": self.num_examples,
            "tables": [[cpu(head) for head in table] for table in self.tables] if cpu else None,
            "filled": self.filled.cpu() if self.filled is not None else None,
            "stored": self.stored,
            "order": self.order,
            "order_epoch": self.order_epoch,
        }

    def load_state_dict(self, state):
        self.complete, self.building = state["complete"], state["building"]
        self.num_examples, self.stored = state["num_examples"], list(state["stored"])
        self.order, self.order_epoch = state["order"], state["order_epoch"]
        if state["tables"] is not None:
            self.tables = [[head.to(self.device) for head in table] for table in state["tables"]]
            self.filled = state["filled"].to(self.device)


def split_indices(batch):
    """(the batch without EXAMPLE_INDEX_KEY, its indices or None): the key never reaches a model."""
    if isinstance(batch, Mapping) and EXAMPLE_INDEX_KEY in batch:
        indices = batch[EXAMPLE_INDEX_KEY]
        return {key: value for key, value in batch.items() if key != EXAMPLE_INDEX_KEY}, indices
    return batch, None


def _to_device(results, device):
    if isinstance(results, list):
        return [_to_device(r, device) for r in results]
    return {key: [v.to(device, non_blocking=True) for v in value] for key, value in results.items()}


def _logits_on_cpu(results_T):
    """What the replay cache keeps of the teachers' results: their logits, on the CPU."""
    if isinstance(results_T, list):
        return [_logits_on_cpu(r) for r in results_T]
    return {
        key: [t.detach().to("cpu") for t in as_list(results_T[key])]
        for key in ("logits", "logits_mask")
        if key in results_T
    }
