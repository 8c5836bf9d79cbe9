"""The training settings of each member of an ensemble, as arrays (``[M]``, one per member).

A trainer's members are (configuration, seed) pairs: one configuration's seeds for a trial,
several configurations' seeds for a pack (``study.spec.packs``). The settings a member may carry
on its own (``study.spec.packs.PER_MEMBER``) are read here, per member, from its configuration;
with one configuration every array is constant and the trainer takes the scalar fast paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from study.spec.config import TrialConfig


@dataclass(frozen=True)
class MemberSettings:
    """Per member (``[M]`` each): ``config`` the index of its configuration in the trainer's
    list; the learning rate, whether it follows the cosine schedule, its epochs, KL warm-up
    epochs, free bits (nats per layer), gradient-norm cap (``inf``: none), early stopping's
    patience and minimum improvement (nats), and the Gaussian output's fixed std and the floor
    of a learned one (data units)."""

    config: np.ndarray
    lr: np.ndarray
    cosine: np.ndarray
    epochs: np.ndarray
    warmup_epochs: np.ndarray
    free_bits: np.ndarray
    grad_clip: np.ndarray
    patience: np.ndarray
    min_improvement: np.ndarray
    output_std: np.ndarray
    min_output_std: np.ndarray

    @classmethod
    def of(cls, cfgs: Sequence[TrialConfig]) -> MemberSettings:
        """The settings of the members of ``cfgs``: each configuration's seeds, in order."""
        per = [(i, c) for i, c in enumerate(cfgs) for _ in c.seeds]

        def column(get, dtype=float) -> np.ndarray:
            return np.array([get(c) for _, c in per], dtype=dtype)

        return cls(
            config=np.array([i for i, _ in per], dtype=int),
            lr=column(lambda c: c.lr),
            cosine=column(lambda c: c.lr_schedule == "cosine", bool),
            epochs=column(lambda c: c.epochs, int),
            warmup_epochs=column(lambda c: c.warmup_epochs),
            free_bits=column(lambda c: c.free_bits),
            grad_clip=column(lambda c: math.inf if c.grad_clip is None else c.grad_clip),
            patience=column(lambda c: c.patience, int),
            min_improvement=column(lambda c: c.min_improvement),
            output_std=column(lambda c: c.output_std),
            min_output_std=column(lambda c: c.min_output_std),
        )

    def learning_rate(self, epoch: int) -> np.ndarray:
        """``[M]`` each member's learning rate in 0-based ``epoch``: its ``lr``, or with the
        cosine schedule from ``lr`` at epoch 0 down to ``lr / 100`` at its last epoch
        (``CosineAnnealingLR``'s closed form)."""
        low = self.lr / 100
        cos = low + (self.lr - low) * (1 + np.cos(np.pi * epoch / self.epochs)) / 2
        return np.where(self.cosine, cos, self.lr)

    def beta(self, epoch: float) -> np.ndarray:
        """``[M]`` each member's KL weight after ``epoch`` (fractional) epochs: the linear
        warm-up from 0 to 1 over its ``warmup_epochs`` (1 without warm-up), as
        ``models.beta_schedule``."""
        w = self.warmup_epochs
        with np.errstate(divide="ignore", invalid="ignore"):
            ramp = np.minimum(1.0, max(0.0, epoch) / w)
        return np.where(w > 0, ramp, 1.0)
