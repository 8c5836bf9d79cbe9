"""Ensemble layers: E independent networks evaluated with one batched matmul.

Every parameter carries a leading member dimension E. Inputs are ``[E, *, in]`` (any number of
middle dimensions, e.g. ``[E, B, in]`` or ``[E, S, B, in]`` with S importance samples) and
outputs ``[E, *, out]``. Member e only ever touches slice e of the parameters and of the input,
so members share no computation, no gradient, no initialisation (see ``init_members``) and no
random numbers (``MemberNoise``: one generator per member).

A subset of the members can be computed alone (``active``: ``[A]`` member indices, set by
``LatentVariableModel.only``): inputs and outputs are then ``[A, *, ...]``, the layers gather
the active members' slices of their parameters (the others get no gradient) and only the
active members' generators draw. Member e's numbers are the same in either form.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .networks import Network

#: Tells a member's noise stream apart from the other streams seeded by its seed (the
#: initialisation uses the seed itself, the trainer's data order too): entropy word of
#: ``numpy.random.SeedSequence([seed, NOISE_STREAM, *salt])``.
NOISE_STREAM = 0x6E6F6973  # "nois"

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


#: Outputs narrower than this many columns are computed transposed (``W^T x^T``): BLAS's
#: batched matmul of a tall input into 2-8 columns runs 1.3-4.7x slower than the same product
#: laid out as 2-8 rows (measured 2026-12-05 on this project's CPU, one thread, E=5: 64->4 over
#: 6,000 rows 2.56 against 0.54 ms, forward and backward over 1,280 rows 1.14 against 0.71 ms;
#: from 16 columns on the plain layout is as fast or faster). The 2-D models' Gaussian heads
#: (2-4 columns) are where this matters.
NARROW_OUT = 16


class EnsembleLinear(nn.Module):
    """Affine map per member: ``y[e] = x[e] @ weight[e] + bias[e]``.

    Parameters: ``weight`` ``[E, in, out]``, ``bias`` ``[E, 1, out]``. An output narrower than
    ``NARROW_OUT`` is computed as ``(weight[e]^T x[e]^T)^T`` and returned as a transposed view
    (same values, to float rounding; not contiguous).
    """

    def __init__(self, n_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.n_members = n_members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_features))
        #: ``[A]`` the members computed (None: all), set by ``LatentVariableModel.only``
        self.active: Tensor | None = None
        with torch.no_grad():
            for member in range(n_members):
                self.init_member(member, generator=None)

    def init_member(self, member: int, generator: torch.Generator | None) -> None:
        """Initialise member ``member`` like ``nn.Linear`` does: U(-1/sqrt(in), 1/sqrt(in))."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        self.weight[member].uniform_(-bound, bound, generator=generator)
        self.bias[member].uniform_(-bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[E, *, in]`` -> ``[E, *, out]`` (``[A, *, ...]`` with ``active`` set)."""
        weight, bias = self.weight, self.bias
        if self.active is not None:
            weight, bias = weight.index_select(0, self.active), bias.index_select(0, self.active)
        lead = x.shape[:-1]
        flat = x.reshape(weight.shape[0], -1, self.in_features)
        if self.out_features < NARROW_OUT:  # [E, out, rows], viewed as [E, rows, out]
            out = torch.baddbmm(bias.transpose(1, 2), weight.transpose(1, 2),
                                flat.transpose(1, 2)).transpose(1, 2)
        else:
            out = torch.baddbmm(bias, flat, weight)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"members={self.n_members}, in={self.in_features}, out={self.out_features}"


class EnsembleMLP(nn.Sequential):
    """``in -> hidden[0] -> ... -> hidden[-1] (-> out)`` with an activation after every hidden layer.

    With ``out_features=None`` the MLP ends on the activation of the last hidden layer (a feature
    extractor); otherwise it ends on a plain linear layer. ``hidden=[]`` with an output is a single
    affine map; with no output it is the identity.
    """

    def __init__(
        self,
        n_members: int,
        in_features: int,
        hidden: Sequence[int],
        out_features: int | None = None,
        activation: str = "silu",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [EnsembleLinear(n_members, width, h), ACTIVATIONS[activation]()]
            width = h
        if out_features is not None:
            layers.append(EnsembleLinear(n_members, width, out_features))
            width = out_features
        super().__init__(*layers)
        self.out_features = width

    @classmethod
    def of(cls, n_members: int, net: Network, activation: str) -> EnsembleMLP:
        """The MLP ``net`` describes (``models.networks``), with ``n_members`` members."""
        return cls(n_members, net.in_features, net.hidden, net.out_features, activation)


def init_members(module: nn.Module, seeds: Sequence[int]) -> None:
    """Re-initialise every ``EnsembleLinear`` in ``module`` so member e depends only on ``seeds[e]``.

    Layers are visited in ``module.modules()`` order with one generator per member, so the member
    built from seed s has the same initial weights whatever the ensemble size or the other seeds.
    """
    linears = [m for m in module.modules() if isinstance(m, EnsembleLinear)]
    with torch.no_grad():
        for member, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for layer in linears:
                layer.init_member(member, generator)


def noise_seed(seed: int, *salt: int) -> int:
    """The 64-bit seed of member ``seed``'s noise stream (``salt``: a further stream of it, e.g.
    the evaluation's), distinct from the seed's initialisation and data-order streams."""
    entropy = [int(seed), NOISE_STREAM, *(int(s) for s in salt)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


class MemberNoise:
    """The random numbers of an ensemble: one ``torch.Generator`` per member, on the model's
    device, seeded by ``noise_seed(seed)`` of that member's seed.

    Every draw is ``[E, *shape]``: member e's slice comes from generator e alone, one call per
    member, so member e draws the same numbers whatever the ensemble size or the other members
    (given the same sequence of draw shapes, which never depends on E). ``normal`` draws the
    noise of several tensors at once (one call per member for all of them: a forward pass draws
    every layer's noise in one go). On the ``meta`` device (shapes only, ``models.size``) there
    are no generators and a draw is an empty meta tensor.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.generators = self._seeded(())
        #: the members that draw (indices; None: all), set by ``LatentVariableModel.only``
        self.active: list[int] | None = None

    @property
    def n_members(self) -> int:
        return len(self.seeds)

    def _seeded(self, salt: tuple[int, ...]) -> list[torch.Generator]:
        if self.device.type == "meta":
            return []
        return [torch.Generator(device=self.device).manual_seed(noise_seed(s, *salt))
                for s in self.seeds]

    def to(self, device: torch.device | str) -> None:
        """Move the streams to ``device``. Generators cannot carry their state across device
        types, so a move to another device starts every stream again from its seed (a model is
        moved once, right after it is built, before any draw)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device != self.device:
            self.device = device
            self.generators = self._seeded(())

    def _fill(self, shapes: Sequence[Sequence[int]], dtype: torch.dtype,
              fill: str) -> list[Tensor]:
        sizes = [math.prod(s) for s in shapes]
        generators = self.generators if self.active is None or not self.generators else \
            [self.generators[e] for e in self.active]
        E = self.n_members if self.active is None else len(self.active)
        buf = torch.empty(E, sum(sizes), dtype=dtype, device=self.device)
        for e, g in enumerate(generators):  # none on the meta device
            getattr(buf[e], fill)(generator=g)
        return [part.view(E, *s) for part, s in zip(buf.split(sizes, dim=1), shapes)]

    def normal(self, shapes: Sequence[Sequence[int]],
               dtype: torch.dtype = torch.float32) -> list[Tensor]:
        """Standard normal noise ``[E, *shape]`` for each of ``shapes`` (shapes without E),
        one draw per member for all of them."""
        return self._fill(shapes, dtype, "normal_")

    def uniform(self, shapes: Sequence[Sequence[int]],
                dtype: torch.dtype = torch.float32) -> list[Tensor]:
        """U[0, 1) noise ``[E, *shape]`` for each of ``shapes``, one draw per member."""
        return self._fill(shapes, dtype, "uniform_")

    def get_state(self) -> list[Tensor]:
        """Every member's generator state (CPU byte tensors, in member order)."""
        return [g.get_state() for g in self.generators]

    def set_state(self, states: Sequence[Tensor]) -> None:
        """Restore ``get_state``'s states, one per member. A state of another device type
        (a checkpoint written on a GPU and resumed on a CPU, or the reverse) cannot be
        continued: that member's stream starts afresh from a seed derived from its seed and
        the stored state (deterministic, not the stream it would have had)."""
        if len(states) != self.n_members:
            raise ValueError(f"{len(states)} noise states for {self.n_members} members")
        for e, (g, state) in enumerate(zip(self.generators, states)):
            state = state.detach().to("cpu", torch.uint8)
            if state.numel() == g.get_state().numel():
                g.set_state(state)
            else:
                g.manual_seed(noise_seed(self.seeds[e], zlib.crc32(state.numpy().tobytes())))

    @contextlib.contextmanager
    def forked(self, *salt: int) -> Iterator[None]:
        """Inside the block every member draws from its own stream seeded by
        ``noise_seed(seed, *salt)`` (e.g. the evaluation's fixed seed), so what is drawn there
        is a function of the member's seed and ``salt`` alone; afterwards the streams go on
        where they were."""
        saved = self.generators
        self.generators = self._seeded(tuple(int(s) for s in salt))
        try:
            yield
        finally:
            self.generators = saved
