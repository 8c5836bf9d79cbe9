"""Out-of-distribution sets for the 2-D datasets, at a controllable distance from the data.

- ``shifted_d``: the training distribution translated by distance d along a fixed direction
  (unit vector at ``angle`` radians, 45 degrees by default); d=0 is in-distribution.
- ``offset_d``: points on the curve moved by exactly d along the curve's normal (random side),
  plus the training noise: every point is d from where it was generated.
- ``widened``: the curves with the noise std multiplied by ``factor``.
- ``uniform``: uniform on the data's bounding box widened by ``margin`` on every side.
"""

from __future__ import annotations

import math

import numpy as np

from .synthetic import CurveDataset


def shifted(curve: CurveDataset, n: int, sigma: float, d: float, rng: np.random.Generator,
            angle: float = math.pi / 4) -> np.ndarray:
    """``[n, 2]``: the data distribution translated by ``d`` along ``(cos angle, sin angle)``."""
    x, _ = curve.sample(n, sigma, rng)
    return x + d * np.array([math.cos(angle), math.sin(angle)])


def offset(curve: CurveDataset, n: int, sigma: float, d: float,
           rng: np.random.Generator) -> np.ndarray:
    """``[n, 2]``: curve points moved ``d`` along the normal (random side), plus noise ``sigma``."""
    arm = rng.integers(0, 2, size=n)
    t = rng.uniform(curve.t_min, curve.t_max, size=n)
    side = rng.choice([-1.0, 1.0], size=(n, 1))
    x = curve.points(t, arm) + side * d * curve.normals(t, arm)
    return x + sigma * rng.standard_normal((n, 2))


def widened(curve: CurveDataset, n: int, sigma: float, factor: float,
            rng: np.random.Generator) -> np.ndarray:
    """``[n, 2]``: the curves with noise std ``factor * sigma`` (``factor * 0.05`` if sigma=0)."""
    x, _ = curve.sample(n, factor * (sigma if sigma > 0 else 0.05), rng)
    return x


def uniform_box(x_train: np.ndarray, n: int, rng: np.random.Generator,
                margin: float = 0.5) -> np.ndarray:
    """``[n, 2]``: uniform on the bounding box of ``x_train`` widened by ``margin``."""
    lo, hi = x_train.min(0) - margin, x_train.max(0) + margin
    return rng.uniform(lo, hi, size=(n, 2))
