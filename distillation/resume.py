"""Everything a run needs to continue where it stopped, and stopping cleanly on a signal.

A resume state is saved beside each checkpoint as resume_gs{step}.pt: the student, the
projections, the optimizer, the LR scheduler, the GradScaler, where the run was (step, epoch,
batches done in the epoch), and for each process its random number generators, its loss sums
since the last log line and its teachers' logit cache, and under 'distiller' what the
distiller's extra_state() returns (None for the core's distillers). It holds tensors and plain Python
values only, so it loads with weights_only=True.
"""

import contextlib
import os
import random
import signal
import threading

import numpy as np
import torch

from .io import atomic_torch_save, safe_torch_load
from .run_files import resume_state_path, resume_state_steps


class TrainingInterrupted(Exception):
    """Raised after a SIGINT or SIGTERM, once the current step is done and its state saved."""

    def __init__(self, signal_number, step, state_path):
        self.signal_number = signal_number
        self.step = step
        self.state_path = state_path
        super().__init__(
            f"{signal.Signals(signal_number).name} at step {step}; the run's state is saved in {state_path}"
        )


def latest_state(output_dir):
    """The path of the newest resume state in output_dir, or None."""
    steps = resume_state_steps(output_dir)
    return resume_state_path(output_dir, steps[-1]) if steps else None


def save_state(output_dir, step, keep_last, **state):
    """Write the resume state of `step` atomically, then delete all but the newest keep_last.
    Returns its path."""
    path = resume_state_path(output_dir, step)
    atomic_torch_save(state, path)
    prune_states(output_dir, keep_last)
    return path


def prune_states(output_dir, keep_last):
    """Delete all but the newest keep_last resume states of output_dir."""
    for old in resume_state_steps(output_dir)[:-keep_last]:
        os.remove(resume_state_path(output_dir, old))


def load_state(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"resume state not found: {path}")
    state = safe_torch_load(path)
    missing = {"global_step", "epoch", "batches_done", "model_S", "optimizer", "per_process"} - set(state)
    if missing:
        raise ValueError(f"{path} is not a resume state: missing {', '.join(sorted(missing))}")
    return state


def restore_rng(state):
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(
        (
            state["numpy_kind"],
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng():
    """Within the block, draw random numbers freely: the generators are put back afterwards."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


def capture_rng():
    version, values, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python_version": version,
        "python": torch.tensor(values, dtype=torch.int64),
        "python_gauss": gauss,
        "numpy_kind": kind,
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_gauss": float(cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


class StopRequest:
    """Set by SIGINT / SIGTERM; the training loop looks at it after each optimizer step."""

    def __init__(self):
        self.signal_number = None

    def __bool__(self):
        return self.signal_number is not None


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGINT and SIGTERM only set the yielded StopRequest."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # handlers need the main thread
        yield request
        return

    def handle(signal_number, frame):
        request.signal_number = signal_number

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
