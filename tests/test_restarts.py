"""Restarts: each seed tries several initialisations and keeps the one of the best validation bound."""

from __future__ import annotations

import numpy as np
import torch

from study.data import load_data
from study.spec.config import trial_config
from study.spec.cost import seed_epochs
from study.trial.trainer import Trainer, restart_candidates

SMALL = dict(dataset="moons", n_train=384, n_val=128, n_test=128, latents=[2], hidden=[[16]],
             seeds=[3, 5], epochs=5, batch_size=64, lr=3e-3, iw_samples=3, kl="sampled",
             warmup_epochs=2, lr_schedule="cosine", restarts=3, restart_epochs=2)


def _trainer(**overrides) -> Trainer:
    cfg = trial_config(SMALL | overrides)
    return Trainer(cfg, load_data(cfg.data_config()), device="cpu")


def test_each_seed_keeps_the_candidate_with_the_best_validation_bound():
    """The candidates trained alone (same initialisations, same data) give the same validation
    bounds; the trainer keeps each seed's best one and its whole epoch history."""
    t = _trainer(restart_epochs=3)
    seen: list[int] = []
    progress: list[int] = []
    t.fit(lambda m: seen.append(m.epoch), progress.append)
    assert seen == [1, 2, 3, 4, 5]  # the candidates' epochs are reported after the choice
    assert progress == [1, 2]  # before it, only how many they have trained

    ccfg, seed_of = restart_candidates(t.cfg)
    assert list(seed_of) == [0, 1, 0, 1, 0, 1]
    assert ccfg.seeds[:2] == (3, 5) and len(set(ccfg.seeds)) == 6  # r = 0 is the seed itself
    alone = Trainer(ccfg, load_data(t.cfg.data_config()).members(seed_of), device="cpu")
    alone.fit(lambda m: m.epoch >= 3)
    bounds = np.array(alone.state.history[-1].members["val_bound"]).reshape(3, 2)
    best = bounds.argmax(0)
    assert t.state.restart == [int(r) for r in best]
    for epoch in range(3):
        cand = np.array(alone.state.history[epoch].members["val_bound"]).reshape(3, 2)
        kept = t.state.history[epoch]
        assert np.allclose(kept.members["val_bound"], cand[best, [0, 1]])
        assert np.isclose(kept.mean["val_bound"], cand[best, [0, 1]].mean())
    assert t.state.epoch == 5 and len(t.state.history) == 5
    assert all(len(h.members["val_bound"]) == 2 for h in t.state.history)


def test_the_kept_weights_and_adam_moments_are_the_chosen_candidates():
    t = _trainer(epochs=2, restart_epochs=2)
    t.fit()
    ccfg, seed_of = restart_candidates(t.cfg)
    alone = Trainer(ccfg, load_data(t.cfg.data_config()).members(seed_of), device="cpu")
    alone.fit()
    keep = [r * 2 + e for e, r in enumerate(t.state.restart)]
    for name, value in t.model.state_dict().items():
        assert torch.equal(value, alone.model.state_dict()[name][keep]), name
    mine, theirs = t.optimizer.state_dict()["state"], alone.optimizer.state_dict()["state"]
    for i in mine:
        assert torch.equal(mine[i]["exp_avg_sq"], theirs[i]["exp_avg_sq"][keep])
    assert float(mine[0]["step"]) == float(theirs[0]["step"]) > 0  # Adam's step count too


def test_a_run_resumed_after_the_choice_equals_an_uninterrupted_one(tmp_path):
    straight = _trainer()
    straight.fit()

    first = _trainer()
    assert first.fit(lambda m: m.epoch >= 3)  # stopped after the choice, at epoch 3
    first.save(tmp_path / "ckpt.pt")
    torch.manual_seed(123)
    resumed = _trainer()
    resumed.load(tmp_path / "ckpt.pt")
    assert resumed.state.epoch == 3 and resumed.state.restart == straight.state.restart
    resumed.fit()
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert [h.members for h in straight.state.history] == [h.members for h in resumed.state.history]


def test_restarts_cost_their_candidates_epochs_and_none_without_them():
    cfg = trial_config(SMALL)
    assert cfg.choice_epoch == 2 and seed_epochs(cfg) == 5 + 2 * 2
    assert trial_config(SMALL | {"restart_epochs": 50}).choice_epoch == 5  # at most the epochs
    plain = trial_config(SMALL | {"restarts": 1})
    assert plain.choice_epoch == 0 and seed_epochs(plain) == 5
