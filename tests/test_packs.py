"""Packs (study.spec.packs, study.trial.pack): configurations of one shape train as one
ensemble, and a configuration's numbers do not depend on its pack."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from study.data import load_data
from study.spec.config import trial_config
from study.spec.packs import plan_packs, shape_key
from study.trial.pack import run_pack
from study.trial.records import EpochMetrics
from study.trial.run_trial import NoCheckpoints, run_trial
from study.trial.trainer import Trainer

SMALL = dict(dataset="spirals", n_train=256, n_val=128, n_test=300, latents=[2, 2],
             hidden=[[16], [16]], batch_size=64, lr=3e-3, epochs=3, eval_importance=50,
             ood_importance=10, ood_shifts=[1.0], ood_offsets=[])
#: what the other configurations of the pack change: every per-member setting, and the data
OTHERS = [
    dict(lr=1e-3), dict(warmup_epochs=2.0), dict(free_bits=0.1), dict(noise=0.1),
    dict(dataset="moons"), dict(grad_clip=0.5), dict(lr_schedule="cosine"), dict(epochs=2),
    dict(data_seed=3, lr=5e-3, min_output_std=0.05),
]


def _cfg(**changes):
    return trial_config(SMALL | {"seeds": [0, 1]} | changes)


class _Recording(NoCheckpoints):
    """A TrialIO that keeps the epochs it sees and may stop the trial after ``stop_at``."""

    def __init__(self, stop_at: int = 0) -> None:
        self.epochs: list[EpochMetrics] = []
        self.stop_at = stop_at
        self.ended = False
        self.calls: list[str] = []  # epoch, trained, end: in the order they came

    def on_epoch(self, trainer, metrics: EpochMetrics) -> bool:
        self.epochs.append(metrics)
        self.calls.append("epoch")
        return metrics.epoch == self.stop_at

    def trained(self, trainer) -> None:
        self.calls.append("trained")

    def end(self, trainer, evaluation, write_files) -> None:
        self.ended = True
        self.calls.append("end")


def _pack(cfgs, ios=None):
    ios = ios or [_Recording() for _ in cfgs]
    datas = [load_data(c.data_config()) for c in cfgs]
    return run_pack(cfgs, ios, datas, device="cpu", threads=1, plots=False), ios


def test_a_configuration_trains_the_same_alone_and_in_a_pack_of_20():
    """Configuration 0 (2 seeds) alone and inside a pack of 10 configurations (20 members) that
    differ in learning rate, schedule, warm-up, free bits, clipping, epochs, the floor of the
    learned output std and data: bit for bit the same parameters after 3 epochs, epoch metrics
    and evaluation (each configuration's members step in one fused Adam kernel of their own,
    as alone); each other configuration too, and the 2-epoch one ends after its 2 epochs."""
    cfgs = [_cfg()] + [_cfg(**o) for o in OTHERS]
    assert sum(len(c.seeds) for c in cfgs) == 20
    packed, ios = _pack(cfgs)
    for i, cfg in enumerate(cfgs):
        alone = run_trial(cfg, NoCheckpoints(), device="cpu", threads=1, plots=False)
        inside = packed[i]
        assert inside.trainer.state.epoch == cfg.epochs == len(ios[i].epochs)
        assert ios[i].ended and inside.evaluation is not None
        for key, value in alone.trainer.model.state_dict().items():
            assert torch.equal(inside.trainer.model.state_dict()[key], value), (i, key)
        for a, b in zip(alone.trainer.state.history, inside.trainer.state.history):
            assert a.epoch == b.epoch and b.members["val_bound"] == a.members["val_bound"]
            assert b.mean["beta"] == a.mean["beta"]
        # the evaluation draws from each member's own streams: the same numbers
        assert inside.evaluation.members["test_ll"] == alone.evaluation.members["test_ll"]


def test_configurations_of_different_shapes_train_in_packs_of_their_own():
    cfgs = [_cfg(), _cfg(iw_samples=3)]
    with pytest.raises(ValueError, match="one shape"):
        Trainer(cfgs, [load_data(c.data_config()) for c in cfgs], device="cpu")
    results, ios = _pack(cfgs)
    assert [r.trainer.state.epoch for r in results] == [3, 3] and all(i.ended for i in ios)


def test_a_pruned_configuration_leaves_and_the_pack_goes_on():
    """Its TrialIO stops configuration 1 after epoch 1: it is not evaluated; the other one
    trains its 3 epochs exactly as alone."""
    cfgs = [_cfg(), _cfg(lr=1e-3)]
    ios = [_Recording(), _Recording(stop_at=1)]
    results, _ = _pack(cfgs, ios)
    assert results[1].stopped_early and results[1].evaluation is None and not ios[1].ended
    assert [m.epoch for m in ios[1].epochs] == [1]
    # training's end is told before the evaluation (a TuneIO then sends the epochs it holds),
    # and not to a configuration stopped early
    assert ios[0].calls == ["epoch"] * 3 + ["trained", "end"] and ios[1].calls == ["epoch"]
    alone = _Recording()
    run_trial(cfgs[0], alone, device="cpu", threads=1, plots=False)
    assert alone.calls == ["epoch"] * 3 + ["trained", "end"]
    assert results[0].trainer.state.epoch == 3 and ios[0].ended
    alone = run_trial(cfgs[0], NoCheckpoints(), device="cpu", threads=1, plots=False)
    for key, value in alone.trainer.model.state_dict().items():
        torch.testing.assert_close(results[0].trainer.model.state_dict()[key], value,
                                   atol=2e-5, rtol=1e-4)


def test_early_stopping_inside_a_pack_stops_each_configuration_as_alone():
    """Per-member patience: the seeds of the patient configuration stop at the epochs they stop
    at alone, beside a configuration without early stopping."""
    stopping = _cfg(epochs=25, patience=3, min_improvement=0.02, seeds=[1, 2, 3])
    results, ios = _pack([stopping, _cfg(epochs=6)])
    alone = run_trial(stopping, NoCheckpoints(), device="cpu", threads=1, plots=False)
    assert results[0].trainer.state.stopped_epoch == alone.trainer.state.stopped_epoch
    assert results[0].trainer.state.epoch == alone.trainer.state.epoch < 25
    assert len(ios[0].epochs) == alone.trainer.state.epoch
    assert results[1].trainer.state.epoch == 6


def test_plan_packs_groups_by_shape_and_bounds_the_members():
    a = [_cfg(lr=lr) for lr in (1e-3, 2e-3, 3e-3)]
    b = [_cfg(iw_samples=3, lr=lr) for lr in (1e-3, 2e-3)]
    cfgs = [a[0], b[0], a[1], b[1], a[2]]
    assert shape_key(a[0]) == shape_key(a[2]) != shape_key(b[0])
    assert plan_packs(cfgs) == [[0, 2, 4], [1, 3]]
    assert plan_packs(cfgs, max_members=4) == [[0, 2], [4], [1, 3]]
    # at least two packs for two workers: 6 members, at most 3 per pack, 2 per configuration
    assert plan_packs(a, min_packs=2) == [[0], [1], [2]]
    assert plan_packs(a + a, min_packs=2) == [[0, 1, 2], [3, 4, 5]]
    # the shape is everything but the per-member, evaluation-only and 2-D data settings
    assert json.loads(shape_key(_cfg(noise=0.2, n_test=10, eval_importance=7)))["n_train"] == 256
    assert shape_key(_cfg(noise=0.2, n_test=10)) == shape_key(_cfg())
    assert shape_key(_cfg(batch_size=32)) != shape_key(_cfg())


class _Saving(_Recording):
    """Saves the trainer's checkpoint after ``save_at`` (a Follower's weights come from its
    pack) and resumes from ``resume_from``, if given."""

    def __init__(self, tmp, save_at: int = 0, resume_from=None) -> None:
        super().__init__()
        self.path, self.save_at, self.resume_from = tmp, save_at, resume_from

    def checkpoints(self):
        from contextlib import nullcontext

        return [("saved", lambda: nullcontext(self.resume_from))] if self.resume_from else []

    def on_epoch(self, trainer, metrics) -> bool:
        if metrics.epoch == self.save_at:
            trainer.save(self.path)
        return super().on_epoch(trainer, metrics)


def test_a_late_configuration_catches_up_and_a_resumed_one_rejoins(tmp_path):
    """B joins after A has trained 2 epochs: B trains alone until it is at A's epoch, then in
    A's pack; A's checkpoint of epoch 2, taken inside the pack, resumes in a new loop beside a
    fresh C. Every configuration ends exactly as when it trains alone."""
    from study.trial.pack import PackLoop

    a, b, c = _cfg(epochs=5), _cfg(epochs=5, lr=1e-3), _cfg(epochs=5, noise=0.1)
    loop = PackLoop(device="cpu", threads=1, plots=False)
    io_a = _Saving(tmp_path / "a.pt", save_at=2)
    res_a = loop.join("a", a, io_a, load_data(a.data_config()))
    sizes = []
    for _ in range(2):
        loop.step()
    res_b = loop.join("b", b, _Recording(), load_data(b.data_config()))
    while loop.step():
        sizes.append(sum(1 for m in loop.members.values() if m.follower is not None))
    assert max(sizes) == 2  # A and B trained in one pack once B had caught up
    loop2 = PackLoop(device="cpu", threads=1, plots=False)
    io_again = _Saving(tmp_path / "unused.pt", resume_from=tmp_path / "a.pt")
    again = loop2.join("a", a, io_again, load_data(a.data_config()))
    res_c = loop2.join("c", c, _Recording(), load_data(c.data_config()))
    assert again.restored.epoch == 2
    while loop2.step():
        pass
    assert [m.epoch for m in io_again.epochs] == [3, 4, 5]
    for cfg, res in [(a, res_a), (b, res_b), (a, again), (c, res_c)]:
        alone = run_trial(cfg, NoCheckpoints(), device="cpu", threads=1, plots=False)
        assert res.trainer.state.epoch == 5 and res.evaluation is not None
        for key, value in alone.trainer.model.state_dict().items():
            torch.testing.assert_close(res.trainer.model.state_dict()[key], value,
                                       atol=2e-5, rtol=1e-4)


def test_fixed_output_stds_are_per_member_in_a_pack():
    """Fixed output std 0.01 and 1 (variance_mode's two fixed levels) share a pack: each trains
    and is validated as alone."""
    cfgs = [_cfg(variance="fixed", output_std=0.01), _cfg(variance="fixed", output_std=1.0)]
    assert shape_key(cfgs[0]) == shape_key(cfgs[1])
    results, _ = _pack(cfgs)
    for cfg, inside in zip(cfgs, results):
        alone = run_trial(cfg, NoCheckpoints(), device="cpu", threads=1, plots=False)
        for key, value in alone.trainer.model.state_dict().items():
            torch.testing.assert_close(inside.trainer.model.state_dict()[key], value,
                                       atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(inside.trainer.state.history[-1].members["val_bound"],
                                   alone.trainer.state.history[-1].members["val_bound"],
                                   rtol=1e-5)
