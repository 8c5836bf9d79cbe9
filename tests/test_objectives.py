"""Bounds and estimators: IW monotonicity, exact marginals, chunking, L>k, warm-up, free bits."""

from __future__ import annotations

import math

import pytest
import torch
from configs import model_config

from models import (
    VAE,
    beta_schedule,
    build_model,
    estimate_log_likelihood,
    hierarchical_bound,
    iw_bound,
    likelihood_ratio,
    training_objective,
)
from models.distributions import inverse_positive_std
from models.objectives import chunk_sizes


def _linear_gaussian(W: torch.Tensor, b: torch.Tensor, s: float, q_std_scale: float = 1.0) -> VAE:
    """A VAE with linear encoder/decoder: p(z)=N(0,I), p(x|z)=N(Wz+b, s^2 I), and the encoder set
    to the posterior mean (exact, linear in x) with the mean-field std times q_std_scale."""
    D, d = W.shape
    cfg = model_config(x_dim=D, latents=[d], hidden=[], kind="vae", variance="fixed", output_std=s)
    model = VAE(cfg, [0])
    M = torch.eye(d) + W.T @ W / s**2
    A = torch.linalg.solve(M, W.T) / s**2  # posterior mean = A (x - b)
    q_std = q_std_scale / torch.diagonal(M).sqrt()
    with torch.no_grad():
        head = model.q_heads[0].net[0]
        head.weight.zero_()
        head.weight[0, :, :d] = A.T
        head.bias[0, 0, :d] = -(A @ b)
        head.bias[0, 0, d:] = inverse_positive_std(q_std, model.config.latent_min_std)
        dec = model.decoder[0]
        dec.weight[0] = W.T
        dec.bias[0, 0] = b
    return model


def _exact_marginal(x, W, b, s):
    cov = W @ W.T + s**2 * torch.eye(W.shape[0])
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


def test_k1000_estimate_matches_the_exact_linear_gaussian_marginal():
    torch.manual_seed(3)
    W = torch.tensor([[1.0, 0.5], [0.3, -0.8], [0.2, 0.9]])
    b = torch.tensor([0.5, -1.0, 0.2])
    s = 0.4
    model = _linear_gaussian(W, b, s, q_std_scale=1.2)
    x = torch.distributions.MultivariateNormal(b, W @ W.T + s**2 * torch.eye(3)).sample((200,))
    est = estimate_log_likelihood(model, x, n_importance=1000)
    exact = _exact_marginal(x, W, b, s)
    err = (est.log_px[0] - exact).abs()
    assert err.mean() < 0.05 and err.max() < 0.2
    # the decomposition: mean log p(x|z) - mean KL is the ELBO, below log p(x)
    assert (est.log_px_z - est.kl)[0].mean() < exact.mean()


def test_chunking_accumulates_exactly():
    """With orthogonal W the mean-field posterior is exact and every weight equals log p(x); so
    any chunking must give log p(x) to float precision."""
    W = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    b = torch.tensor([0.1, 0.2, 0.3])
    s = 0.5
    model = _linear_gaussian(W, b, s)
    x = torch.randn(37, 3)
    exact = _exact_marginal(x, W, b, s)
    for max_elements in (10, 1000, 10**7):
        est = estimate_log_likelihood(model, x, n_importance=250, max_elements=max_elements)
        torch.testing.assert_close(est.log_px[0], exact, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(est.log_px_z[0] - est.kl[0], exact, atol=1e-4, rtol=1e-5)


def test_chunk_sizes_respect_the_budget():
    for E, B, K, width, budget in [(5, 10_000, 1000, 64, 2**22), (1, 3, 1000, 512, 100), (3, 7, 5, 8, 10**9)]:
        points, samples = chunk_sizes(E, B, K, width, budget)
        assert 1 <= points <= B and 1 <= samples <= K
        assert E * points * samples * width <= max(budget, E * width)


@pytest.mark.parametrize("kind,latents,hidden", [("hvae", [2, 2], [[32], [32]]), ("avae", [2], [32])])
def test_iw_bound_does_not_decrease_with_k(kind, latents, hidden):
    torch.manual_seed(0)
    model = build_model(model_config(x_dim=2, latents=latents, hidden=hidden, kind=kind), [0, 1])
    x = torch.randn(64, 2) * 2
    with torch.no_grad():
        bounds = [torch.stack([iw_bound(model, x, k).mean() for _ in range(40)]).mean() for k in (1, 5, 50)]
    assert bounds[0] < bounds[1] < bounds[2]
    assert bounds[2] - bounds[0] > 0.1  # an untrained model has a loose ELBO: the gap is real


def test_sampled_and_analytic_kl_agree_in_expectation_per_layer():
    model = build_model(model_config(x_dim=2, latents=[2, 3], hidden=[[16], [16]]), [4])
    x = torch.randn(8, 2)
    with torch.no_grad():
        with model.noise.forked(1):
            analytic = model(x, n_samples=20_000, kl="analytic")
        with model.noise.forked(1):  # same z samples: only the estimator differs
            sampled = model(x, n_samples=20_000, kl="sampled")
    for a, s in zip(analytic.kl, sampled.kl):
        diff = (s - a).mean(1)  # [E, B]
        stderr = (s - a).std(1) / math.sqrt(20_000)
        assert (diff.abs() < 5 * stderr + 1e-3).all()


def test_hierarchical_bound_and_llr():
    model = build_model(model_config(x_dim=2, latents=[2, 2, 2], hidden=[[16], [16], [16]]), [0, 1])
    x = torch.randn(10, 2)
    with model.noise.forked(5):
        l0 = hierarchical_bound(model, x, 0, 1)
    with model.noise.forked(5):
        fp = model(x, kl="sampled")
    torch.testing.assert_close(l0, fp.log_weight[:, 0])  # L>0 with K=1 is the ELBO (sampled)
    fp2 = model(x, kl="analytic", prior_layers=2)
    assert (fp2.kl[0] == 0).all() and (fp2.kl[1] == 0).all() and (fp2.kl[2] != 0).all()
    # z1 of L>2 is the conditional prior's mean given z2, itself the prior mean given z3
    mean_z2 = model.p_heads[1](fp2.z[2]).mean
    torch.testing.assert_close(fp2.z[1], mean_z2)
    torch.testing.assert_close(fp2.z[0], model.p_heads[0](mean_z2).mean)
    assert likelihood_ratio(model, x, 1, 10).shape == (2, 10)
    with pytest.raises(ValueError, match="0 <= k < 3"):
        hierarchical_bound(model, x, 3, 10)
    with pytest.raises(ValueError, match="k >= 1"):
        likelihood_ratio(model, x, 0, 10)
    avae = build_model(model_config(x_dim=2, latents=[2], hidden=[8], kind="avae"), [0])
    with pytest.raises(ValueError, match="hierarchical"):
        hierarchical_bound(avae, x, 1, 10)
    with pytest.raises(ValueError, match="hierarchical"):
        estimate_log_likelihood(avae, x, 10, prior_layers=1)


def test_beta_schedule_is_linear_then_flat():
    assert beta_schedule(0, 10) == 0.0
    assert beta_schedule(2.5, 10) == 0.25
    assert beta_schedule(10, 10) == 1.0 and beta_schedule(50, 10) == 1.0
    assert beta_schedule(0, 0) == 1.0


def test_free_bits_and_beta_enter_the_loss_per_layer():
    model = build_model(model_config(x_dim=2, latents=[2, 2], hidden=[[16], [16]]), [0, 1])
    x = torch.randn(2, 32, 2)
    with model.noise.forked(9):
        plain = training_objective(model, x, beta=0.5)
    with model.noise.forked(9):  # the same draws
        fb = training_objective(model, x, beta=0.5, free_bits=100.0)
    torch.testing.assert_close(plain.loss_per_member, -(plain.log_px_z - 0.5 * plain.kl_layers.sum(-1)))
    torch.testing.assert_close(fb.loss_per_member, -(fb.log_px_z - 0.5 * 2 * 100.0))
    torch.testing.assert_close(plain.bound, fb.bound)  # the reported bound is beta=1, no free bits
    with pytest.raises(ValueError, match="free bits"):
        training_objective(model, x, n_samples=5, free_bits=0.5)


def test_a_vae_learns_a_gaussian():
    """Training reduces the loss and the K-sample estimate approaches the true log-density."""
    torch.manual_seed(0)
    target = torch.distributions.MultivariateNormal(torch.tensor([1.0, -1.0]),
                                                    torch.tensor([[1.0, 0.8], [0.8, 1.0]]))
    model = build_model(model_config(x_dim=2, latents=[2], hidden=[32], kind="vae"), [0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1500):
        opt.zero_grad()
        training_objective(model, target.sample((2, 128))).loss.backward()
        opt.step()
    x = target.sample((500,))
    est = estimate_log_likelihood(model, x, n_importance=200)
    gap = (target.log_prob(x) - est.log_px).mean(-1)
    assert (gap.abs() < 0.1).all(), gap


def test_fewer_samples_of_one_pass_are_the_estimates_of_their_own():
    """The IW=1 and K=100 estimates taken from the first samples of a K=1000 pass are those
    estimators: all K of them is the full estimate, and their means match separate passes
    within Monte Carlo noise, whatever the chunking."""
    model = build_model(model_config(x_dim=2, latents=[2, 2], hidden=[[16], [16]]), [0, 1])
    x = torch.randn(400, 2) * 1.5
    for chunk in (3000, 10**7):  # 100-sample chunks, or one chunk for all
        one = estimate_log_likelihood(model, x, 1000, max_elements=chunk, fewer=(1, 100, 1000))
        torch.testing.assert_close(one.fewer[1000], one.log_px)
        for k in (1, 100):
            alone = estimate_log_likelihood(model, x, k, max_elements=chunk).log_px
            diff = one.fewer[k] - alone  # [E, points]: independent draws of one estimator
            se = diff.std(1) / math.sqrt(diff.shape[1])
            assert (diff.mean(1).abs() < 4 * se + 1e-6).all(), (k, diff.mean(1), se)
