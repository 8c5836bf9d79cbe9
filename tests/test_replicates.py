"""Seeds are independent replicates: a seed trains, stops early and is evaluated as it would be
alone, whatever the other seeds of its ensemble (own initialisation, data, data order, noise
streams and early stopping)."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from study.data import load_data
from study.spec.config import trial_config
from study.trial.evaluate import evaluate
from study.trial.files import METRICS
from study.trial.run_trial import NoCheckpoints, run_trial, write_trial_files
from study.trial.trainer import Trainer

SEEDS = [1, 2, 3, 4, 5]
SMALL = dict(dataset="moons", n_train=256, n_val=128, n_test=1000, latents=[2, 2],
             hidden=[[16], [16]], batch_size=64, lr=3e-3, iw_samples=3, kl="sampled",
             warmup_epochs=2, eval_importance=100, ood_importance=10, ood_shifts=[1.0],
             ood_offsets=[])
#: small patience: the seeds of this configuration stop at different epochs (11 to 16)
STOPPING = SMALL | dict(epochs=25, patience=3, min_improvement=0.02, iw_samples=1,
                        kl="analytic")


def _trainer(settings: dict, seeds: list[int]) -> Trainer:
    cfg = trial_config(settings | {"seeds": seeds})
    return Trainer(cfg, load_data(cfg.data_config()), device="cpu")


def _member(t: Trainer, e: int) -> dict[str, torch.Tensor]:
    return {k: v[e] for k, v in t.model.state_dict().items()}


def _assert_same_member(alone: Trainer, inside: Trainer, e: int) -> None:
    for key, value in _member(alone, 0).items():
        torch.testing.assert_close(_member(inside, e)[key], value, atol=1e-6, rtol=1e-5,
                                   msg=lambda m, key=key: f"{key}: {m}")


def test_a_seed_trains_and_evaluates_the_same_alone_and_beside_others():
    """Seed 3 alone and as member 2 of seeds 1-5: the same parameters after 3 epochs and the
    same validation curve (per-member noise streams: reparameterisation, IW samples); the same
    evaluation, exactly where the estimator's chunks do not depend on the ensemble size and
    within Monte Carlo noise where they do (test_ll: K-sample chunks sized by E)."""
    settings = SMALL | {"epochs": 3}
    alone = run_trial(trial_config(settings | {"seeds": [3]}), NoCheckpoints(), plots=False,
                      device="cpu", threads=1)
    inside = run_trial(trial_config(settings | {"seeds": SEEDS}), NoCheckpoints(), plots=False,
                       device="cpu", threads=1)
    _assert_same_member(alone.trainer, inside.trainer, 2)
    for a, b in zip(alone.trainer.state.history, inside.trainer.state.history):
        np.testing.assert_allclose(b.members["val_bound"][2], a.members["val_bound"][0],
                                   rtol=0, atol=1e-5)
    # the noise streams themselves: member 2's generator went through the same draws
    assert torch.equal(alone.trainer.model.noise.get_state()[0],
                       inside.trainer.model.noise.get_state()[2])

    mine, theirs = alone.evaluation.members, inside.evaluation.members
    # batches of points that do not depend on E (latents, samples of the prior, the ELBO
    # scores): the same draws whatever the ensemble
    for key in ("kl_from_z1", "kl_from_z2", "class_acc_z1", "active_units_z2", "pocket_mass",
                "wrong_sample_frac", "curve_coverage", "auroc_neg_elbo_shifted_1",
                "auroc_neg_elbo_uniform"):
        assert math.isclose(theirs[key][2], mine[key][0], rel_tol=1e-4, abs_tol=1e-5), key
    # 1000 points: one chunk alone, two in the ensemble (objectives.chunk_sizes scales them by
    # 1/E), so the same draws fall on other (point, sample) pairs; K=100 samples per point:
    # the mean's Monte Carlo error is about 1e-3 nats (measured difference: 1.3e-3)
    assert abs(theirs["test_ll"][2] - mine["test_ll"][0]) < 0.01

    # evaluation is a function of the weights: again, the same numbers
    again = evaluate(inside.trainer.model, load_data(inside.trainer.cfg.data_config()),
                     inside.trainer.cfg, inside.trainer.state)
    np.testing.assert_equal(again.members, inside.evaluation.members)  # NaN == NaN here


def test_each_seed_stops_on_its_own_validation_bound_as_it_would_alone(tmp_path):
    """With a small patience the seeds stop at different epochs; each stops at the epoch it
    stops at when trained alone, with the same parameters (frozen from its stop on, while the
    others train on), and the final per-seed ``epochs`` says so."""
    cfg = trial_config(STOPPING | {"seeds": SEEDS})
    data = load_data(cfg.data_config())
    result = run_trial(cfg, NoCheckpoints(), data=data, plots=False, device="cpu", threads=1)
    t = result.trainer
    stops = t.state.stopped_epoch
    assert all(s is not None for s in stops) and len(set(stops)) > 2, stops
    assert t.state.epoch == max(stops) < cfg.epochs  # the trial ended with its last seed
    assert t.state.member_epochs() == stops

    for e, seed in enumerate(SEEDS):
        alone = _trainer(STOPPING, [seed])
        assert alone.fit() is False
        assert alone.state.stopped_epoch == [alone.state.epoch] == [stops[e]], seed
        _assert_same_member(alone, t, e)
        # a stopped seed is no longer computed: its noise stream stops where it stops alone
        # (were it still run, masked, its generator would have drawn on for every later epoch)
        assert torch.equal(alone.model.noise.get_state()[0], t.model.noise.get_state()[e]), seed

    # a stopped seed's epoch metrics repeat its last trained epoch's; the means stay over all
    first = int(np.argmin(stops))
    at_stop = t.state.history[stops[first] - 1]
    for h in t.state.history[stops[first]:]:
        for key, values in h.members.items():
            assert values[first] == at_stop.members[key][first], key
        assert math.isclose(h.mean["val_bound"], float(np.mean(h.members["val_bound"])))

    write_trial_files(tmp_path, cfg, t, data, result.evaluation, plots=False)
    written = json.loads((tmp_path / METRICS).read_text())
    assert written["members"]["epochs"] == [float(s) for s in stops]
    assert written["mean"]["epochs"] == float(np.mean(stops))


def test_a_run_resumed_after_some_seeds_stopped_equals_an_uninterrupted_one(tmp_path):
    straight = _trainer(STOPPING, SEEDS)
    straight.fit()
    first, last = min(straight.state.stopped_epoch), max(straight.state.stopped_epoch)
    assert first < last - 1

    part = _trainer(STOPPING, SEEDS)
    assert part.fit(lambda m: m.epoch >= first + 1)  # one seed has stopped, the others train
    assert part.state.stopped_epoch.count(None) < len(SEEDS)
    part.save(tmp_path / "ckpt.pt")
    torch.manual_seed(123)
    resumed = _trainer(STOPPING, SEEDS)
    resumed.load(tmp_path / "ckpt.pt")
    assert resumed.state.stopped_epoch == part.state.stopped_epoch
    resumed.fit()
    assert resumed.state.stopped_epoch == straight.state.stopped_epoch
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [h.members for h in straight.state.history] == \
        [h.members for h in resumed.state.history]
