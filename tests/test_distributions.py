"""Closed-form densities, KLs and likelihood normalisation."""

from __future__ import annotations

import itertools
import math

import torch
from torch.distributions import Independent, Normal, kl_divergence

from models.distributions import (
    DiagonalGaussian,
    gaussian_kl,
    gaussian_log_prob,
    inverse_positive_std,
    log_mean_exp,
    positive_std,
    precision_weighted,
)
from models.likelihoods import BernoulliLikelihood, GaussianLikelihood


def _random_gaussian(shape, scale=1.0):
    return DiagonalGaussian(torch.randn(shape) * scale, torch.rand(shape) * 2 + 0.05)


def test_analytic_kl_matches_torch_distributions():
    q, p = _random_gaussian((3, 5, 7, 4)), _random_gaussian((3, 5, 7, 4), scale=2.0)
    ours = gaussian_kl(q, p)
    ref = kl_divergence(Independent(Normal(q.mean, q.std), 1), Independent(Normal(p.mean, p.std), 1))
    assert ours.shape == (3, 5, 7)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_log_prob_matches_torch_distributions():
    g = _random_gaussian((6, 3))
    x = torch.randn(6, 3) * 3
    ref = Independent(Normal(g.mean, g.std), 1).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, g.mean, g.std), ref)


def test_sampled_kl_converges_to_analytic():
    torch.manual_seed(1)
    q, p = _random_gaussian((1, 3)), _random_gaussian((1, 3))
    z = q.rsample((200_000, 3))
    sampled = q.log_prob(z) - p.log_prob(z)
    analytic = gaussian_kl(q, p).item()
    stderr = sampled.std().item() / math.sqrt(sampled.numel())
    assert abs(sampled.mean().item() - analytic) < 4 * stderr + 1e-4
    assert analytic > 0.05  # the two Gaussians differ, so the check above means something


def test_precision_weighting_is_the_normalised_product():
    a, b = _random_gaussian((1, 1)), _random_gaussian((1, 1))
    c = precision_weighted(a, b)
    grid = torch.linspace(-15, 15, 200_001).unsqueeze(-1)
    log_prod = a.log_prob(grid) + b.log_prob(grid)
    w = torch.softmax(log_prod, 0)
    mean = (w * grid.squeeze()).sum()
    var = (w * (grid.squeeze() - mean) ** 2).sum()
    torch.testing.assert_close(mean, c.mean.squeeze(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(var.sqrt(), c.std.squeeze(), atol=1e-4, rtol=1e-4)


def test_gaussian_likelihood_integrates_to_one_on_a_grid():
    for lik, params in [
        (GaussianLikelihood("learned", output_std=1.0, min_output_std=1e-3), torch.tensor([0.3, -0.2, -1.0, 0.5])),
        (GaussianLikelihood("fixed", output_std=0.3, min_output_std=1e-3), torch.tensor([0.3, -0.2])),
    ]:
        axis = torch.linspace(-4, 4, 801, dtype=torch.float64)
        xx, yy = torch.meshgrid(axis, axis, indexing="ij")
        grid = torch.stack([xx, yy], -1).reshape(-1, 2)
        density = lik.log_prob(grid, params.double()).exp()
        cell = (axis[1] - axis[0]) ** 2
        assert abs((density.sum() * cell).item() - 1.0) < 1e-3


def test_learned_std_has_its_floor():
    lik = GaussianLikelihood("learned", output_std=1.0, min_output_std=0.01)
    params = torch.tensor([[0.0, -1e4]])
    assert lik.std(params).item() == torch.tensor(0.01).item()
    assert GaussianLikelihood("fixed", output_std=0.5, min_output_std=1e-3).std(params) is None
    torch.testing.assert_close(positive_std(inverse_positive_std(0.37, 0.01), 0.01),
                               torch.tensor(0.37))


def test_bernoulli_likelihood_sums_to_one_over_all_binary_vectors():
    lik = BernoulliLikelihood()
    logits = torch.tensor([0.3, -2.0, 1.5, 0.0, 4.0])
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))
    total = lik.log_prob(xs, logits).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0))


def test_log_mean_exp_is_stable():
    x = torch.tensor([[1000.0, 1000.0], [-1000.0, -1000.0]])
    torch.testing.assert_close(log_mean_exp(x, 1), torch.tensor([1000.0, -1000.0]))
