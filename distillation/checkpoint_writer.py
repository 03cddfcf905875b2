"""Checkpoints written beside training, not in its way.

At a checkpoint the training thread copies what is to be saved (the student, the resume state)
into host memory and goes on training; a thread of its own writes each file to a temporary name,
flushes it to the disk (fsync) and renames it into place (io.atomic_torch_save). One write is in
flight at a time: the next checkpoint waits for it, so none is ever dropped. A write that fails
is raised in the training thread at its next step (AbstractDistiller._checkpoint_or_stop).

The copy must be a copy: a state_dict() shares its tensors with the live model and optimizer,
which the next step changes in place. The host buffers are kept from one checkpoint to the next
(pinned on a GPU, whose copies then run asynchronously on the training stream), so a
checkpoint's copy costs a memory copy, not an allocation.
"""

import collections
import copy
import logging
import threading

import torch

from .io import atomic_torch_save

logger = logging.getLogger("distillation")


class CheckpointWriteError(OSError):
    """A checkpoint or resume state could not be written: training stops with it."""


class HostCopy:
    """Copies of nested state (dicts, lists and tuples of tensors and plain values) in host
    memory, made into buffers kept from one call to the next."""

    def __init__(self):
        self._buffers = {}  # the place of a tensor in the state (a tuple of keys) -> its buffer
        self._events = []  # CUDA events after the last call's copies

    def __call__(self, state):
        """A copy of state whose tensors are host tensors of their own (tensors that shared
        memory share their copy); from a GPU, valid once ready() returns."""
        self._copied = {}
        self._devices = set()
        with torch.no_grad():
            copied = self._copy(state, ())
        self._events = []
        for device in self._devices:  # marks the end of the copies queued on each device
            with torch.cuda.device(device):
                event = torch.cuda.Event()
                event.record()
                self._events.append(event)
        del self._copied
        return copied

    def ready(self):
        """Wait until the copies from a GPU have landed."""
        for event in self._events:
            event.synchronize()

    def _copy(self, value, place):
        if isinstance(value, torch.Tensor):
            return self._tensor(value, place)
        if type(value) in (dict, collections.OrderedDict):
            copied = type(value)((key, self._copy(item, (*place, key))) for key, item in value.items())
            if hasattr(value, "_metadata"):  # a module's state_dict: the versions load_state_dict reads
                copied._metadata = copy.deepcopy(value._metadata)
            return copied
        if type(value) in (list, tuple):
            return type(value)(self._copy(item, (*place, index)) for index, item in enumerate(value))
        return copy.deepcopy(value)  # a plain value, or a container of a kind not walked here

    def _tensor(self, tensor, place):
        tensor = tensor.detach()
        if tensor.layout != torch.strided:
            return tensor.to("cpu", copy=True)
        shared = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape,
                  tensor.stride(), tensor.dtype, tensor.device)  # fmt: skip
        if shared in self._copied:
            return self._copied[shared]
        from_gpu = tensor.device.type == "cuda"
        buffer = self._buffers.get(place)
        if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
            buffer = torch.empty_like(tensor, device="cpu", pin_memory=from_gpu)
            self._buffers[place] = buffer
        buffer.copy_(tensor, non_blocking=from_gpu)  # pinned: queued on the training stream
        if from_gpu:
            self._devices.add(tensor.device)
        self._copied[shared] = buffer
        return buffer


class BackgroundWriter:
    """Writes a checkpoint's files in a thread of its own, one checkpoint at a time."""

    def __init__(self):
        self._copy = HostCopy()
        self._thread = None
        self._error = None  # of the last write, until raised

    def write(self, files, then=None):
        """files: [(path, state)], written in order after a copy made now; then(): called in the
        writer once they are all in place (e.g. deleting older files). Waits first for the
        write in flight, and raises its error."""
        self.wait()
        copies = self._copy([state for _, state in files])
        jobs = [(path, state) for (path, _), state in zip(files, copies)]
        self._thread = threading.Thread(target=self._run, args=(jobs, then), name="checkpoint-writer")
        self._thread.start()

    @property
    def failed(self):
        return self._error is not None

    def check(self):
        """Raise the error of a write that failed (once)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def wait(self):
        """Wait for the write in flight, and raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.check()

    def close(self):
        """Wait for the write in flight; log an error that was not raised (training is ending
        on an error of its own)."""
        try:
            self.wait()
        except CheckpointWriteError as error:
            logger.error("%s", error)

    def _run(self, jobs, then):
        path = None
        try:
            self._copy.ready()
            for path, state in jobs:
                atomic_torch_save(state, path, sync=True)
            path = None
            logger.info("Saved %s", " and ".join(path for path, _ in jobs))
            if then is not None:
                then()
        except Exception as error:  # noqa: BLE001 - any failure stops training, with its message
            where = f"writing {path}" if path is not None else "after writing a checkpoint"
            self._error = CheckpointWriteError(f"{where} failed: {error}")
            self._error.__cause__ = error
