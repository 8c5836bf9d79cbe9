"""Moons/Spirals definitions, exact densities, OOD sets, and the MNIST files."""

from __future__ import annotations

import gzip
import http.server
import math
import shutil
import threading
from functools import partial

import numpy as np
import pytest

from study.core.errors import DatasetError
from study.data import DataConfig, load_data
from study.data.exact_density import exact_log_density
from study.data.idx import ensure_file, load_split
from study.data.ood import offset, shifted
from study.data.synthetic import MOONS, SPIRALS, distance_to_curve
from study.spec.config import TrialConfig


def _data(**settings) -> DataConfig:
    """The data of a trial with these settings (the trial configuration holds the defaults)."""
    return TrialConfig(latents=[2], hidden=[8], **settings).data_config()


def test_moons_geometry_labels_and_halves():
    rng = np.random.default_rng(0)
    x, y = MOONS.sample(1001, 0.0, rng)
    assert x.shape == (1001, 2) and set(np.unique(y)) == {0, 1}
    assert (y == 0).sum() == 501 and (y == 1).sum() == 500
    outer, inner = x[y == 0], x[y == 1]
    np.testing.assert_allclose(np.hypot(*outer.T), 1.0, atol=1e-12)  # (cos t, sin t)
    assert (outer[:, 1] >= -1e-12).all()
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1, inner[:, 1] - 0.5), 1.0, atol=1e-12)
    assert (inner[:, 1] <= 0.5 + 1e-12).all()


def test_spiral_arms_follow_rho_of_theta():
    x, y = SPIRALS.sample(2000, 0.0, np.random.default_rng(1))
    for arm, sign in ((0, 1.0), (1, -1.0)):
        p = sign * x[y == arm]
        theta = np.mod(np.arctan2(p[:, 1], p[:, 0]), 2 * np.pi)
        rho = np.hypot(*p.T)
        # rho = (theta + pi) / 2 pi with theta in [0, 2 pi]: rho in [0.5, 1.5]
        np.testing.assert_allclose(rho, (theta + np.pi) / (2 * np.pi), atol=1e-9)


@pytest.mark.parametrize("curve", [MOONS, SPIRALS])
def test_noise_really_is_sigma(curve):
    rng = np.random.default_rng(2)
    clean, y = curve.sample(20000, 0.0, np.random.default_rng(3))
    noisy, y2 = curve.sample(20000, 0.05, np.random.default_rng(3))
    assert (y == y2).all()
    # same stream: the same t and arms, noise added on top (drawn after them)
    residual = noisy - clean
    assert abs(residual.std() - 0.05) < 0.001 and abs(residual.mean()) < 0.001
    assert rng is not None


def test_splits_are_deterministic_and_distinct():
    a = load_data(_data(dataset="spirals", n_train=500, n_val=100, n_test=200, data_seed=4))
    b = load_data(_data(dataset="spirals", n_train=500, n_val=100, n_test=200, data_seed=4))
    c = load_data(_data(dataset="spirals", n_train=500, n_val=100, n_test=200, data_seed=5))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_train[:, :100], a.x_val)
    assert a.x_train.dtype == np.float32 and a.x_train.shape == (3, 500, 2)  # per seed


@pytest.mark.parametrize("curve,sigma,reference", [
    (MOONS, 0.05, -0.291), (MOONS, 0.01, 1.342), (MOONS, 0.1, -1.010),
    (SPIRALS, 0.05, -0.942), (SPIRALS, 0.01, 0.680), (SPIRALS, 0.1, -1.633),
])
def test_mean_exact_log_likelihood_matches_design_numbers(curve, sigma, reference):
    x, _ = curve.sample(20000, sigma, np.random.default_rng(11))
    lp = exact_log_density(x, curve, sigma)
    stderr = lp.std() / math.sqrt(len(lp))
    assert abs(lp.mean() - reference) < 4 * stderr + 0.005


@pytest.mark.parametrize("curve,sigma", [(MOONS, 0.05), (MOONS, 0.01), (SPIRALS, 0.02), (SPIRALS, 0.1)])
def test_exact_density_matches_adaptive_quadrature(curve, sigma):
    """Brute force: scipy's adaptive Gauss-Kronrod per point and arm, split at the nearest
    curve parameter, against the fixed-grid trapezoid rule: within 0.01 nats."""
    from scipy.integrate import quad

    rng = np.random.default_rng(5)
    x, _ = curve.sample(12, sigma, rng)
    x = np.r_[x, x[:4] + 0.1]  # a few points off the curve too
    grid = np.linspace(curve.t_min, curve.t_max, 20001)
    brute = np.zeros(len(x))
    for arm in (0, 1):
        c = curve.arms[arm](grid)
        for i, p in enumerate(x):
            t_near = grid[np.argmin(((c - p) ** 2).sum(1))]

            def density(t, p=p):
                d2 = ((curve.arms[arm](np.array([t]))[0] - p) ** 2).sum()
                return np.exp(-0.5 * d2 / sigma**2)

            pts = [v for v in (t_near - 5 * sigma, t_near, t_near + 5 * sigma)
                   if curve.t_min < v < curve.t_max]
            val, _ = quad(density, curve.t_min, curve.t_max, points=pts, limit=500,
                          epsabs=0, epsrel=1e-10)
            brute[i] += 0.5 * val / (curve.t_max - curve.t_min) / (2 * np.pi * sigma**2)
    np.testing.assert_allclose(exact_log_density(x, curve, sigma), np.log(brute), atol=0.01)


def test_exact_density_needs_noise():
    with pytest.raises(ValueError, match="sigma > 0"):
        exact_log_density(np.zeros((1, 2)), MOONS, 0.0)


def test_ood_sets_are_at_the_requested_distance():
    rng = np.random.default_rng(0)
    x, _ = MOONS.sample(5000, 0.0, np.random.default_rng(0))
    moved = shifted(MOONS, 5000, 0.0, 0.7, np.random.default_rng(0))
    np.testing.assert_allclose(np.hypot(*(moved - x).T), 0.7, atol=1e-9)
    for d in (0.05, 0.2):
        pts = offset(SPIRALS, 3000, 0.0, d, rng)
        dist = distance_to_curve(pts, SPIRALS)
        assert abs(np.median(dist) - d) < 0.005
    far = load_data(_data(dataset="moons", n_train=500, n_test=500, ood_shifts=(0.5, 3.0)))
    near_d = distance_to_curve(far.ood["shifted_0.5"][0], MOONS).mean()
    far_d = distance_to_curve(far.ood["shifted_3"][0], MOONS).mean()
    assert near_d < far_d and far_d > 1.5
    widened = distance_to_curve(far.ood["widened"][0], MOONS).mean()
    assert widened > 2.5 * distance_to_curve(far.x_test[0], MOONS).mean()  # 3x the noise


def test_mnist_exclude_label_and_cross_dataset(shared_data):
    b = load_data(_data(dataset="mnist", n_train=0, n_val=1000, n_test=0, exclude_label=4,
                        ood_dataset="fashion_mnist", data_dir=str(shared_data)))
    assert b.x_dim == 784
    assert len(b.x_train) + len(b.x_val) == 60000 - 5842  # MNIST has 5842 training fours
    assert 4 not in b.y_train and 4 not in b.y_val and 4 not in b.y_test
    assert b.ood["heldout"].shape == (982, 784)  # the 982 test fours
    assert b.ood["fashion_mnist"].shape == (10000, 784)
    assert set(np.unique(b.x_test)) == {0.0, 1.0}  # evaluation sets binarised once
    assert 0.0 < b.x_train.mean() < 0.2 and len(np.unique(b.x_train)) > 2  # dynamic: grey


def _copy_mnist(src, dst):
    (dst / "mnist").mkdir(parents=True)
    for f in (src / "mnist").iterdir():
        shutil.copy(f, dst / "mnist" / f.name)
    return dst / "mnist"


def test_corrupt_files_give_one_clear_error(shared_data, tmp_path):
    folder = _copy_mnist(shared_data, tmp_path)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-100])  # truncated
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: md5 .* does not match"):
        load_split("mnist", "test", tmp_path, allow_download=False)
    target.unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: file not found"):
        load_split("mnist", "test", tmp_path, allow_download=False)


def test_bad_gzip_and_bad_magic_are_named(tmp_path):
    from study.data.idx import read_idx

    bad = tmp_path / "x.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="x.gz: not a readable gzip"):
        read_idx(bad)
    bad.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + b"\x00" * 20))
    with pytest.raises(DatasetError, match="bad IDX magic"):
        read_idx(bad)
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"\x00" * 5))
    with pytest.raises(DatasetError, match="holds 5 bytes"):
        read_idx(bad)


def test_missing_file_is_downloaded_from_the_mirror_and_checked(shared_data, tmp_path, monkeypatch):
    """A real HTTP download from a mirror on loopback (the official one is not reachable here)."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_data / "mnist"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HVAE_MNIST_MIRROR", f"http://127.0.0.1:{server.server_port}/")
        path = ensure_file("mnist", "t10k-labels-idx1-ubyte.gz", tmp_path)
        assert path.read_bytes() == (shared_data / "mnist" / path.name).read_bytes()
        # a mirror that serves the wrong bytes: error, and nothing left behind
        monkeypatch.setenv("HVAE_MNIST_MIRROR", f"http://127.0.0.1:{server.server_port}/nope/")
        with pytest.raises(DatasetError, match="download from .* failed"):
            ensure_file("mnist", "train-labels-idx1-ubyte.gz", tmp_path)
        assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [path.name]
    finally:
        server.shutdown()


def test_the_offset_sets_density_integrates_to_one():
    """The OOD set offset_d (each arm moved d along its normal, plus noise) has the density
    study.data.ood.log_density computes: it integrates to 1 over the plane (midpoint rule)."""
    from study.data.ood import log_density

    h = 0.025
    xs, ys = np.arange(-2.0, 3.0, h) + h / 2, np.arange(-1.7, 2.2, h) + h / 2
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    density = np.exp(log_density("offset_0.3", grid, MOONS, 0.1, np.zeros((2, 2))))
    assert abs(density.sum() * h * h - 1.0) < 0.01


def test_seeds_get_their_own_draw_the_same_in_every_configuration():
    a = load_data(_data(dataset="spirals", n_train=300, n_val=50, n_test=100, seeds=[0, 1]))
    b = load_data(_data(dataset="spirals", n_train=300, n_val=50, n_test=100, seeds=[1, 7],
                        lr=0.1))
    assert a.x_train.shape == (2, 300, 2) and a.ood["uniform"].shape == (2, 100, 2)
    assert not np.array_equal(a.x_train[0], a.x_train[1])  # seeds are independent draws
    np.testing.assert_array_equal(a.x_train[1], b.x_train[0])  # seed 1 alike in both
    np.testing.assert_array_equal(a.member(1).ood["shifted_1"], b.member(0).ood["shifted_1"])


def test_exact_density_cache_keys_on_the_points_and_the_curve():
    """The process cache returns the computed values for the same points, never another
    set's (points, curve, sigma or offset differ), and a caller cannot alter what it keeps."""
    from study.data import exact_density

    x = MOONS.sample(300, 0.05, np.random.default_rng(3))[0]
    fresh = exact_density._log_density(np.ascontiguousarray(x, dtype=np.float64), MOONS, 0.05,
                                       0.0, 1024)
    first = exact_log_density(x, MOONS, 0.05)
    first[:] = 0.0  # the caller's copy
    np.testing.assert_array_equal(exact_log_density(x.copy(), MOONS, 0.05), fresh)
    moved = x + np.array([1e-3, 0.0])
    assert not np.allclose(exact_log_density(moved, MOONS, 0.05), fresh)
    assert not np.allclose(exact_log_density(x, MOONS, 0.1), fresh)
    assert not np.allclose(exact_log_density(x, MOONS, 0.05, offset=0.25), fresh)
    np.testing.assert_allclose(exact_log_density(x[:200], MOONS, 0.05), fresh[:200])
