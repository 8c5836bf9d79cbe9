"""The size of a model without building it for real: parameters, matmul FLOPs and training
memory, counted from the kind's networks (``models.networks``: plain shapes, no PyTorch), or,
for a kind that registers none, on PyTorch's ``meta`` device (shapes only: nothing is
allocated, initialised or computed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ModelConfig
from .networks import plan

if TYPE_CHECKING:
    from .base import LatentVariableModel

#: bytes of a float32
FLOAT_BYTES = 4


def _on_meta(config: ModelConfig) -> LatentVariableModel:
    """One member of ``config``'s model on the ``meta`` device (a kind without ``networks``)."""
    import torch

    from .build import build_model

    with torch.device("meta"):
        return build_model(config, [0])


def _meta_linears(model: LatentVariableModel) -> list:
    from .ensemble import EnsembleLinear

    return [m for m in model.modules() if isinstance(m, EnsembleLinear)]


def layer_widths(config: ModelConfig) -> list[tuple[int, int]]:
    """(in, out) of every ensemble linear layer, in the order the model registers them."""
    nets = plan(config)
    if nets is not None:
        return [w for group in nets.values() for net in group for w in net.linears()]
    return [(m.in_features, m.out_features) for m in _meta_linears(_on_meta(config))]


def parameter_count(config: ModelConfig) -> int:
    """Parameters of one ensemble member (every one is a linear layer's weight or bias)."""
    if plan(config) is not None:
        return sum(n_in * n_out + n_out for n_in, n_out in layer_widths(config))
    return sum(p.numel() for p in _on_meta(config).parameters())


def layer_count(config: ModelConfig) -> int:
    """Ensemble linear layers of the model (each a few PyTorch operations per step, whatever
    their width: what a small model's step time is mostly made of)."""
    return len(layer_widths(config))


def linear_shapes(config: ModelConfig, n_points: int, n_samples: int) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every ensemble layer applied in one forward pass of one member over
    ``n_points`` points with ``n_samples`` importance samples each: a network of the bottom-up
    path sees each point once, the others each sample (``models.networks.Network.per_sample``).
    A kind without ``networks``: read off a forward pass on the ``meta`` device (1-2 s of
    PyTorch's own start-up the first time)."""
    nets = plan(config)
    if nets is not None:
        return [(n_points * (n_samples if net.per_sample else 1), n_in, n_out)
                for group in nets.values() for net in group for n_in, n_out in net.linears()]
    import torch

    shapes: list[tuple[int, int, int]] = []

    def note(layer, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        shapes.append((inputs[0].numel() // layer.in_features, layer.in_features,
                       layer.out_features))

    model = _on_meta(config)
    hooks = [m.register_forward_hook(note) for m in _meta_linears(model)]
    with torch.device("meta"):
        model(torch.empty(n_points, config.x_dim), n_samples=n_samples, kl="sampled")
    for h in hooks:
        h.remove()
    return shapes


def forward_flops(config: ModelConfig, n_points: int, n_samples: int = 1) -> int:
    """Multiply-add FLOPs (2 per multiply-accumulate) of the ensemble layers in one forward
    pass of one member over ``n_points`` points with ``n_samples`` importance samples each.
    A training step (forward and backward) costs about three times this."""
    return sum(2 * rows * n_in * n_out for rows, n_in, n_out in
               linear_shapes(config, n_points, n_samples))


def training_flops(config: ModelConfig, n_points: int, n_samples: int = 1) -> int:
    """FLOPs of training one member on ``n_points`` points with ``n_samples`` importance samples
    each: the forward pass and a backward pass of twice its cost (3x ``forward_flops``)."""
    return 3 * forward_flops(config, n_points, n_samples)


def training_memory(config: ModelConfig, n_members: int, batch_size: int,
                    n_samples: int = 1) -> int:
    """Bytes a training step of an ensemble of ``n_members`` needs (float32): the weights,
    their gradients and Adam's two moments (4 copies of the parameters), and the activations
    autograd keeps for the backward pass, counted as twice every ensemble layer's input and
    output (each nonlinearity keeps a copy of its own). An estimate for refusing sizes that
    cannot fit, not an allocator's figure."""
    activations = sum(rows * (n_in + n_out) for rows, n_in, n_out in
                      linear_shapes(config, batch_size, n_samples))
    return FLOAT_BYTES * n_members * (4 * parameter_count(config) + 2 * activations)


def training_memory_bound(config: ModelConfig, n_members: int, batch_size: int,
                          n_samples: int = 1) -> int:
    """An upper bound of ``training_memory`` from the layer widths alone: every layer counted at
    the most rows any layer has, a row per point and sample (``batch_size * n_samples``; layers
    before the sampling have one per point). For a kind sized on the ``meta`` device it needs
    no forward pass; ``training_memory`` is the figure when it matters."""
    rows = batch_size * max(1, n_samples)
    activations = sum(rows * (n_in + n_out) for n_in, n_out in layer_widths(config))
    return FLOAT_BYTES * n_members * (4 * parameter_count(config) + 2 * activations)
