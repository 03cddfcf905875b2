"""AbstractDistiller.compile() refuses what would train wrongly: CUDA graphs under gradient
accumulation, and a second compilation of the same distiller."""

import pytest

from distillation import DistillationConfig, GeneralDistiller
from tests.core.tiny_models import TinyClassifier, adaptor, train_config


def test_compile_refuses_cuda_graphs_under_gradient_accumulation_and_a_second_call(tmp_path):
    # A CUDA graph's outputs are overwritten at its next replay: accumulated gradients would be.
    def distiller(accumulation):
        return GeneralDistiller(
            train_config(tmp_path / str(accumulation), gradient_accumulation_steps=accumulation),
            DistillationConfig(),
            TinyClassifier(32, seed=1),
            TinyClassifier(16, seed=2),
            adaptor,
            adaptor,
        )

    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        distiller(2).compile(mode="reduce-overhead")
    once = distiller(1)
    once.compile(backend="eager")
    with pytest.raises(RuntimeError, match="compiled already"):
        once.compile(backend="eager")
