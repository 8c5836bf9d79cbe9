"""The size of a model without building it for real: parameters and matmul FLOPs, counted on
PyTorch's ``meta`` device (shapes only: nothing is allocated, initialised or computed)."""

from __future__ import annotations

import torch

from .config import ModelConfig
from .ensemble import EnsembleLinear
from .registry import build_model


def parameter_count(config: ModelConfig) -> int:
    """Parameters of one ensemble member."""
    with torch.device("meta"):
        model = build_model(config, [0])
    return sum(p.numel() for p in model.parameters())


def forward_flops(config: ModelConfig, n_points: int, n_samples: int = 1) -> int:
    """Multiply-add FLOPs (2 per multiply-accumulate) of the ensemble layers in one forward
    pass of one member over ``n_points`` points with ``n_samples`` importance samples each.
    A training step (forward and backward) costs about three times this."""
    flops = 0

    def count(layer: EnsembleLinear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops
        rows = inputs[0].numel() // layer.in_features
        flops += 2 * rows * layer.in_features * layer.out_features

    with torch.device("meta"):
        model = build_model(config, [0])
        hooks = [m.register_forward_hook(count) for m in model.modules()
                 if isinstance(m, EnsembleLinear)]
        model(torch.empty(n_points, config.x_dim), n_samples=n_samples, kl="sampled")
    for h in hooks:
        h.remove()
    return flops


def training_flops(config: ModelConfig, n_points: int, n_samples: int = 1) -> int:
    """FLOPs of training one member on ``n_points`` points with ``n_samples`` importance samples
    each: the forward pass and a backward pass of twice its cost (3x ``forward_flops``)."""
    return 3 * forward_flops(config, n_points, n_samples)
