"""Moons and Spirals: noisy 1-D curves in 2-D with labels, exactly as in DESIGN.md.

Each dataset is two arms (class 0 and class 1, equal halves). A point is drawn by picking an
arm, a curve parameter t uniformly on the arm's interval, and adding isotropic Gaussian noise of
std ``sigma`` in the original coordinates:

- Moons (the geometry of ``sklearn.datasets.make_moons``), t in [0, pi]:
  arm 0 (outer) (cos t, sin t); arm 1 (inner) (1 - cos t, 1 - sin t - 0.5).
- Spirals, theta in [0, 2 pi], rho = (theta + pi) / (2 pi):
  arm 0 rho (cos theta, sin theta); arm 1 -rho (cos theta, sin theta).

So the density is p(x) = sum_arm 1/2 * integral U(t) N(x; c_arm(t), sigma^2 I) dt, computed in
``exact_density``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Curve = Callable[[np.ndarray], np.ndarray]  # t [N] -> points [N, 2]


@dataclass(frozen=True)
class CurveDataset:
    """Two arms with parameter interval [t_min, t_max] and a speed bound |dc/dt| <= max_speed."""

    name: str
    arms: tuple[Curve, Curve]
    t_min: float
    t_max: float
    max_speed: float

    def points(self, t: np.ndarray, arm: np.ndarray) -> np.ndarray:
        """Curve points ``[N, 2]`` at parameters ``t`` ``[N]`` on arms ``arm`` ``[N]`` (0/1)."""
        out = np.empty((len(t), 2))
        for a in (0, 1):
            mask = arm == a
            out[mask] = self.arms[a](t[mask])
        return out

    def sample(self, n: int, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` noisy points ``[n, 2]`` (float64) and their arm labels ``[n]`` (int64).

        Equal halves: the first ceil(n/2) points come from arm 0, the rest from arm 1, then the
        order is shuffled."""
        arm = np.zeros(n, dtype=np.int64)
        arm[(n + 1) // 2 :] = 1
        rng.shuffle(arm)
        t = rng.uniform(self.t_min, self.t_max, size=n)
        x = self.points(t, arm) + sigma * rng.standard_normal((n, 2))
        return x, arm

    def dense_curve(self, spacing: float) -> np.ndarray:
        """Points ``[M, 2]`` along both arms no more than ``spacing`` apart (for distances)."""
        n = int(math.ceil(self.max_speed * (self.t_max - self.t_min) / spacing)) + 1
        t = np.linspace(self.t_min, self.t_max, n)
        return np.concatenate([self.arms[0](t), self.arms[1](t)])

    def normals(self, t: np.ndarray, arm: np.ndarray) -> np.ndarray:
        """Unit normals ``[N, 2]`` of the arms at ``t`` (by central differences)."""
        h = 1e-5
        tangent = self.points(t + h, arm) - self.points(t - h, arm)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        return np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _moon_outer(t: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(t), np.sin(t)], axis=-1)


def _moon_inner(t: np.ndarray) -> np.ndarray:
    return np.stack([1.0 - np.cos(t), 1.0 - np.sin(t) - 0.5], axis=-1)


def _spiral(sign: float) -> Curve:
    def arm(theta: np.ndarray) -> np.ndarray:
        rho = (theta + math.pi) / (2 * math.pi)
        return sign * rho[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=-1)

    return arm


MOONS = CurveDataset("moons", (_moon_outer, _moon_inner), 0.0, math.pi, max_speed=1.0)
# |d/dtheta rho(cos, sin)| = sqrt(rho'^2 + rho^2) <= sqrt((1/2pi)^2 + 1.5^2)
SPIRALS = CurveDataset("spirals", (_spiral(1.0), _spiral(-1.0)), 0.0, 2 * math.pi,
                       max_speed=math.hypot(1 / (2 * math.pi), 1.5))
CURVES: dict[str, CurveDataset] = {"moons": MOONS, "spirals": SPIRALS}


def distance_to_curve(x: np.ndarray, curve: CurveDataset, spacing: float = 1e-3) -> np.ndarray:
    """Euclidean distance ``[N]`` from each point to the nearest point of either arm
    (accurate to about ``spacing`` squared over the curvature radius)."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(curve.dense_curve(spacing)).query(x)
    return dist
