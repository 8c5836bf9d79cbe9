"""Training: checkpoint-resume equality, divergence handling, callbacks, configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.core.errors import SpecError
from study.data import load_data
from study.spec.config import trial_config
from study.trial.trainer import Trainer

SMALL = dict(dataset="moons", n_train=512, n_val=128, n_test=256, latents=[2, 2],
             hidden=[[16], [16]], seeds=[0, 1], epochs=4, batch_size=64, lr=3e-3)


def _trainer(**overrides) -> Trainer:
    cfg = trial_config(SMALL | overrides)
    return Trainer(cfg, load_data(cfg.data_config()), device="cpu")


def _params(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in t.model.state_dict().items()}


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    overrides = dict(binarize="dynamic", warmup_epochs=2, lr_schedule="cosine")
    straight = _trainer(**overrides)
    straight.fit()

    first = _trainer(**overrides)
    assert first.fit(lambda m: m.epoch >= 2)  # interrupted after 2 of its 4 epochs
    first.save(tmp_path / "ckpt.pt")
    torch.manual_seed(999)  # whatever happened in between must not matter

    resumed = _trainer(**overrides)
    resumed.load(tmp_path / "ckpt.pt")
    assert resumed.state.epoch == 2
    resumed.fit()
    for key, value in _params(straight).items():
        assert torch.equal(value, _params(resumed)[key]), key
    assert [h.members for h in straight.state.history] == [h.members for h in resumed.state.history]


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    t = _trainer()
    t.save(tmp_path / "c.pt")
    other = _trainer(lr=1e-2)
    with pytest.raises(ValueError, match="different trial configuration"):
        other.load(tmp_path / "c.pt")


def test_a_nan_member_is_marked_diverged_and_the_others_train_on():
    ref = _trainer(epochs=3)  # each trainer seeds the global RNG: build and run one at a time
    ref.fit()
    t = _trainer(epochs=3)
    with torch.no_grad():
        t.model.decoder[0].weight[1].fill_(float("nan"))  # poison member 1 only
    t.fit()
    assert t.state.diverged_epoch == [None, 1]
    last = t.state.history[-1]
    assert last.n_diverged == 1 and last.members["diverged"] == [0.0, 1.0]
    assert np.isnan(last.members["val_elbo"][1]) and np.isfinite(last.members["val_elbo"][0])
    assert last.mean["val_elbo"] == last.members["val_elbo"][0]
    # member 0 trained exactly as it would have without the poisoned neighbour
    for key, value in _params(ref).items():
        assert torch.equal(value[0], _params(t)[key][0]), key
    # member 1 was frozen, not updated with NaN gradients
    assert torch.isnan(t.model.decoder[0].weight[1]).all()
    assert torch.isfinite(t.model.decoder[2].weight[1]).all()


def test_when_every_member_diverges_the_epoch_is_recorded_and_training_ends():
    """No member left to compute (each one's loss non-finite in the first epoch): the epoch is
    still recorded, with the same keys, every member diverged and NaN, and training ends."""
    t = _trainer(epochs=3)
    with torch.no_grad():
        t.model.decoder[0].weight.fill_(float("nan"))
    assert t.fit() is False
    assert t.state.diverged_epoch == [1, 1] and t.state.epoch == 1
    last = t.state.history[-1]
    assert last.n_diverged == 2 and {"val_bound", "val_elbo", "train_loss"} <= set(last.members)
    assert np.isnan(last.members["val_bound"]).all()


def test_callback_can_stop_training_and_sees_every_epoch():
    t = _trainer(epochs=10)
    seen = []
    stopped = t.fit(lambda m: seen.append(m.epoch) or m.epoch == 3)
    assert stopped and seen == [1, 2, 3] and t.state.epoch == 3


def test_training_improves_the_validation_elbo():
    t = _trainer(epochs=15)
    t.fit()
    first, last = t.state.history[0].mean["val_elbo"], t.state.history[-1].mean["val_elbo"]
    assert last > first + 0.3


def test_bad_trial_configs_name_the_field_and_value():
    with pytest.raises(SpecError, match=r"field 'noise' = -1"):
        trial_config(SMALL | {"noise": -1})
    with pytest.raises(SpecError, match=r"field 'widths' = 3: Extra inputs"):
        trial_config(SMALL | {"widths": 3})
    with pytest.raises(SpecError, match="bernoulli likelihood needs binarized image data"):
        trial_config(SMALL | {"likelihood": "bernoulli"})
    assert trial_config(SMALL | {"seeds": 3}).seeds == (0, 1, 2)
    assert trial_config(SMALL).flat()["hidden"] == "[[16], [16]]"


def _history(values: list[float]) -> list:
    from study.trial.records import EpochMetrics

    return [EpochMetrics(i + 1, {}, {"val_bound": v}, 0) for i, v in enumerate(values)]


def test_a_plateau_is_no_gain_of_min_improvement_within_patience_epochs():
    from study.trial.records import plateaued

    rising = _history([-3.0, -2.0, -1.5, -1.2, -1.1])
    assert not plateaued(rising, patience=2, min_improvement=0.05)  # +0.4 in the last 2 epochs
    flat = _history([-3.0, -2.0, -1.5, -1.49, -1.52])
    assert plateaued(flat, patience=2, min_improvement=0.05)  # +0.01 < 0.05
    assert not plateaued(flat, patience=2, min_improvement=0.0)  # any gain counts
    assert not plateaued(flat, patience=0, min_improvement=0.05)  # off
    assert not plateaued(flat[:2], patience=2, min_improvement=0.05)  # too short to tell
    assert plateaued(_history([-1.0, float("nan"), -1.2]), patience=1, min_improvement=0.0)


def test_early_stopping_ends_training_at_the_plateau_and_the_trial_is_evaluated():
    t = _trainer(epochs=50, patience=3, min_improvement=100.0)  # nothing improves by 100 nats
    assert t.fit() is False  # not stopped by a callback: the trial goes on to evaluation
    assert t.state.epoch == 4  # one epoch to set the best, three without a 100-nat gain
    assert _trainer(epochs=6, patience=0).fit() is False
