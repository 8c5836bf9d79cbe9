"""models.member_adam: Adam with a learning rate per ensemble member."""

from __future__ import annotations

import pytest
import torch

from models.member_adam import MemberAdam


def _params(seed: int = 0, members: int = 4) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(members, 5, 3, generator=g)),
            torch.nn.Parameter(torch.randn(members, 1, 3, generator=g))]


def _grads(params, steps: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g) for p in params] for _ in range(steps)]


def _run(optimizer, params, grads) -> None:
    for step in grads:
        for p, grad in zip(params, step):
            p.grad = grad.clone()
        optimizer.step()


def test_one_learning_rate_is_torchs_adam():
    mine, theirs = _params(), _params()
    grads = _grads(mine, 50)
    _run(MemberAdam(mine, 1e-2), mine, grads)
    _run(torch.optim.Adam(theirs, 1e-2), theirs, grads)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_each_member_steps_with_its_own_learning_rate_as_it_would_alone():
    """Member e of an ensemble with lr = [1e-2, 3e-3, 0, 1e-3] ends where a one-member Adam
    with lr[e] and member e's gradients ends (torch's to 1e-6, this one's bit for bit); lr 0
    leaves a member where it was."""
    lrs = [1e-2, 3e-3, 0.0, 1e-3]
    pack = _params()
    start = [p.detach().clone() for p in pack]
    grads = _grads(pack, 30)
    _run(MemberAdam(pack, lrs), pack, grads)
    for e, lr in enumerate(lrs):
        alone = [torch.nn.Parameter(p[e : e + 1].clone()) for p in start]
        _run(torch.optim.Adam(alone, lr), alone, [[g[e : e + 1] for g in step] for step in grads])
        for a, b in zip(pack, alone):
            torch.testing.assert_close(a[e : e + 1], b, rtol=0, atol=1e-6)
        if lr:  # and bit for bit where it would be a MemberAdam of its own (one fused kernel)
            solo = [torch.nn.Parameter(p[e : e + 1].clone()) for p in start]
            _run(MemberAdam(solo, lr), solo, [[g[e : e + 1] for g in step] for step in grads])
            assert all(torch.equal(a[e : e + 1], b) for a, b in zip(pack, solo))
    assert all(torch.equal(p[2], s[2]) for p, s in zip(pack, start))


def test_state_loads_from_and_into_torchs_adam():
    """Checkpoints written with torch.optim.Adam (before this optimizer) resume with it, and
    the reverse: the same next step from the same moments."""
    a, b = _params(), _params()
    grads = _grads(a, 10)
    torch_adam = torch.optim.Adam(a, 1e-2)
    _run(torch_adam, a, grads[:5])
    mine = MemberAdam(b, 1e-2)
    with torch.no_grad():
        for p, q in zip(b, a):
            p.copy_(q)
    mine.load_state_dict(torch_adam.state_dict())
    _run(torch_adam, a, grads[5:])
    _run(mine, b, grads[5:])
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    back = torch.optim.Adam(_params(), 1e-2)
    back.load_state_dict(mine.state_dict())
    assert float(back.state_dict()["state"][0]["step"]) == 10


def test_a_wrong_number_of_learning_rates_is_refused():
    with pytest.raises(ValueError, match="3 learning rates for 4 members"):
        MemberAdam(_params(), [1e-3] * 3)
