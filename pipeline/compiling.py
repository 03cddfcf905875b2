"""--compile: torch.compile of the training step (the distiller's compile()), and its cost.

The models' forward passes and the losses' tensor work are compiled with dynamic shapes, so a
new batch length needs no new graph; on a GPU, mode "reduce-overhead" also records each shape's
kernels once as a CUDA graph and replays it, which is what removes the host's launch overhead.
data.py pads each batch's length to a multiple of --pad_to_multiple_of, which bounds the shapes.
"""

import logging

import torch
from torch._dynamo.utils import calculate_time_spent, counters

logger = logging.getLogger("main")

BACKEND = "inductor"  # torch.compile's own default; the tests use "aot_eager" (no code generation)


def compile_training(distiller, device, gradient_accumulation_steps, backend=None):
    """Compile the distiller's models and losses for training on `device` (main.py's --compile;
    tools/benchmark.py times the same with other backends). backend: by default BACKEND, read
    at the call (the tests set it)."""
    backend = backend or BACKEND
    # A CUDA graph's outputs live until its next replay; gradients accumulated over several
    # micro-batches would be overwritten, so accumulation runs the compiled kernels without them.
    graphs = torch.device(device).type == "cuda" and gradient_accumulation_steps == 1
    mode = "reduce-overhead" if graphs else None
    distiller.compile(mode=mode, backend=backend, dynamic=True)
    logger.info(
        "torch.compile: backend %s, mode %s, dynamic shapes (compiled at the first steps)",
        backend,
        mode or "default",
    )


def graphs_compiled():
    """The graphs torch.compile has made in this process so far."""
    return counters["stats"]["unique_graphs"]


def log_compilation(step):
    """One log line: the graphs compiled by `step` and the time spent compiling them."""
    logger.info(
        "torch.compile by step %d: %d graphs, %.1f s compiling",
        step,
        graphs_compiled(),
        calculate_time_spent().get("total_wall_time", 0.0),
    )
