"""Model shapes, configuration parsing, per-member seeding and ensemble independence."""

from __future__ import annotations

import pytest
import torch
from configs import model_config

from models import HVAE, VAE, build_model, training_objective
from models.config import normalize_hidden

CONFIGS = {
    "vae": dict(kind="vae", latents=[2], hidden=[64, 64, 32, 32]),
    "hvae": dict(kind="hvae", latents=[2, 2], hidden=[[64, 64], [32, 32]]),
    "avae": dict(kind="avae", latents=[2], hidden=[32, 32], aux_latents=3),
    "hvae_bernoulli": dict(kind="hvae", latents=[8, 4], hidden=[[32], [16]], likelihood="bernoulli"),
}


def _model(name: str, seeds, x_dim: int = 2):
    spec = dict(CONFIGS[name])
    if spec.get("likelihood") == "bernoulli":
        x_dim = 20
    return build_model(model_config(x_dim=x_dim, **spec), seeds)


def _data(model, batch: int = 5) -> torch.Tensor:
    x = torch.randn(model.n_members, batch, model.config.x_dim)
    return (x > 0).float() if model.config.likelihood == "bernoulli" else x


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("n_members", [1, 3])
def test_shapes(name, n_members):
    model = _model(name, list(range(n_members)))
    x = _data(model)
    E, B, D = x.shape
    n_layers = len(model.layer_names)
    fp = model(x, n_samples=4)
    assert fp.log_px_z.shape == (E, 4, B)
    assert len(fp.kl) == n_layers and all(k.shape == (E, 4, B) for k in fp.kl)
    assert fp.log_weight.shape == (E, 4, B)
    means = model.posterior_means(x)
    assert [m.shape[:2] for m in means] == [(E, B)] * n_layers
    s = model.sample(6)
    assert s.x.shape == (E, 6, D) and s.x_mean.shape == (E, 6, D)
    assert [z.shape[:2] for z in s.z] == [(E, 6)] * n_layers
    # a [B, D] input is shared by all members
    assert model(x[0]).log_px_z.shape == (E, 1, B)


@pytest.mark.parametrize("n_layers", range(1, 7))
def test_hvae_reports_one_kl_per_layer(n_layers):
    cfg = model_config(x_dim=2, latents=[2] * n_layers, hidden=[[16]] * n_layers, kind="hvae")
    model = HVAE(cfg, [0, 1])
    fp = model(torch.randn(7, 2), n_samples=3)
    assert model.layer_names == [f"z{i + 1}" for i in range(n_layers)]
    assert len(fp.kl) == n_layers
    assert all(torch.isfinite(k).all() for k in fp.kl)
    assert all(k.abs().sum() > 0 for k in fp.kl)


def test_flat_and_nested_hidden_forms():
    assert normalize_hidden([2], [64, 64, 32, 32]) == ((64, 64, 32, 32),)
    assert normalize_hidden([2, 2], [64, 64, 32, 32]) == ((64, 64), (32, 32))
    assert normalize_hidden([2, 2], [[64, 64], [32, 32]]) == ((64, 64), (32, 32))
    with pytest.raises(ValueError, match="ambiguous"):
        normalize_hidden([2, 2, 2], [64, 64, 32, 32])
    with pytest.raises(ValueError, match="3 blocks"):
        normalize_hidden([2, 2], [[8], [8], [8]])
    with pytest.raises(ValueError, match="one stochastic layer"):
        build_model(model_config(x_dim=2, latents=[2, 2], hidden=[8, 8], kind="vae"), [0])


def test_architecture_mirrors_the_log():
    """1-layer VAE h=[64,64,32,32]: x-64-64-32-32-z and z-32-32-64-64-x."""
    model = VAE(model_config(x_dim=2, latents=[2], hidden=[64, 64, 32, 32], kind="vae"), [0])
    enc = [l.weight.shape[1:] for l in model.up[0] if hasattr(l, "weight")]
    dec = [l.weight.shape[1:] for l in model.decoder if hasattr(l, "weight")]
    assert enc == [(2, 64), (64, 64), (64, 32), (32, 32)]
    assert dec == [(2, 32), (32, 32), (32, 64), (64, 64), (64, 4)]  # mean and std of x


@pytest.mark.parametrize("name", ["hvae", "avae"])
def test_member_depends_only_on_its_seed(name):
    alone = _model(name, [11])
    inside = _model(name, [5, 11, 7])
    for key, value in alone.state_dict().items():
        assert torch.equal(value[0], inside.state_dict()[key][1]), key
    assert not torch.equal(inside.state_dict()["decoder.0.weight"][0],
                           inside.state_dict()["decoder.0.weight"][1])


@pytest.mark.parametrize("name", ["hvae", "avae"])
@pytest.mark.parametrize("kl", ["analytic", "sampled"])
def test_members_are_independent(name, kl):
    """Changing member 0's data and parameters leaves member 1's loss and gradients bit-identical."""

    def member_loss_and_grads(model, x):
        model.zero_grad()
        with model.noise.forked(123):  # the same draws both times
            terms = training_objective(model, x, n_samples=2, kl=kl)
        terms.loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        return terms.loss_per_member, grads

    model = _model(name, [0, 1, 2])
    x = _data(model, batch=16)
    loss_a, grads_a = member_loss_and_grads(model, x)

    x_changed = x.clone()
    x_changed[0] = torch.randn_like(x_changed[0]) * 5
    with torch.no_grad():
        for p in model.parameters():
            p[0].add_(torch.randn_like(p[0]))
    loss_b, grads_b = member_loss_and_grads(model, x_changed)

    assert loss_a[0] != loss_b[0]  # member 0 really changed
    assert torch.equal(loss_a[1], loss_b[1]) and torch.equal(loss_a[2], loss_b[2])
    for key in grads_a:
        assert not torch.equal(grads_a[key][0], grads_b[key][0]), key
        assert torch.equal(grads_a[key][1:], grads_b[key][1:]), key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_subset_of_members_computes_as_in_the_full_ensemble(name):
    """``model.only([1, 3])``: a pass of members 1 and 3 alone gives their rows of the full
    pass (same parameters, same noise draws), gradients reach only their parameters, members
    0 and 2 draw no noise, and afterwards the model is the full ensemble again."""
    model = _model(name, [0, 1, 2, 3])
    x = _data(model, batch=16)

    def pass_(members, rows):
        model.zero_grad()
        with model.noise.forked(7), model.only(members):
            terms = training_objective(model, rows, n_samples=3, kl="sampled")
            states = model.noise.get_state()
        terms.loss.backward()
        return terms, {k: p.grad.clone() for k, p in model.named_parameters()}, states

    full, grads_full, _ = pass_(None, x)
    part, grads_part, states = pass_([1, 3], x[[1, 3]])
    assert part.loss_per_member.shape == (2,)
    torch.testing.assert_close(part.loss_per_member, full.loss_per_member[[1, 3]],
                               rtol=1e-6, atol=1e-6)
    for key, g in grads_part.items():
        torch.testing.assert_close(g[[1, 3]], grads_full[key][[1, 3]], rtol=1e-5, atol=1e-6)
        assert not g[[0, 2]].any(), key
    fresh = model.noise  # members 0 and 2 drew nothing inside ``only``
    with fresh.forked(7):
        untouched = fresh.get_state()
    assert torch.equal(states[0], untouched[0]) and torch.equal(states[2], untouched[2])
    assert not torch.equal(states[1], untouched[1])
    assert model.n_members == 4 and model(x).log_px_z.shape[0] == 4


def test_learned_output_std_is_reported_and_fixed_is_not():
    learned = _model("hvae", [0])
    fixed = build_model(model_config(x_dim=2, latents=[2], hidden=[8], variance="fixed",
                                    output_std=0.01), [0])
    fp = learned(torch.randn(4, 2))
    assert learned.likelihood.std(fp.px_params).min() >= learned.config.min_output_std
    assert fixed.likelihood.std(fixed(torch.randn(4, 2)).px_params) is None
    assert fixed.decoder.out_features == 2 and learned.decoder.out_features == 4  # mean (, std)


def test_bad_input_shape_names_the_expected_shape():
    model = _model("hvae", [0, 1])
    with pytest.raises(ValueError, match=r"\[2, B, 2\]"):
        model(torch.randn(3, 4, 2))


@pytest.mark.parametrize("out_features", [2, 4, 15, 16, 64])
def test_ensemble_linear_values_and_gradients_do_not_depend_on_its_layout(out_features):
    """Narrow outputs are computed transposed (``NARROW_OUT``); every width gives the per-member
    affine map ``x[e] @ W[e] + b[e]`` and its gradients, for inputs with sample dimensions and
    for a subset of members."""
    from models.ensemble import NARROW_OUT, EnsembleLinear

    torch.manual_seed(0)
    layer = EnsembleLinear(3, 32, out_features)
    x = torch.randn(3, 5, 7, 32, requires_grad=True)
    y = layer(x)
    assert y.shape == (3, 5, 7, out_features)
    assert y.is_contiguous() == (out_features >= NARROW_OUT)
    want = torch.einsum("esbi,eio->esbo", x, layer.weight) + layer.bias.unsqueeze(1)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, layer.weight, layer.bias), g)
    wants = torch.autograd.grad(want, (x, layer.weight, layer.bias), g)
    for got, expected in zip(grads, wants):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    layer.active = torch.tensor([2, 0])
    torch.testing.assert_close(layer(x[[2, 0]]), y[[2, 0]], rtol=1e-5, atol=1e-5)
