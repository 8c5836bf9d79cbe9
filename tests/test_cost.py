"""The cost model (study.spec.cost) and the ETA it paces (study.engine.progress), on constructed
trials whose work and time are known by hand."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.experiment import Trial

from study.engine.progress import PRIOR_S, Progress
from study.spec import cost
from study.spec.config import trial_config

SMALL = {"dataset": "spirals", "n_train": 1000, "n_val": 100, "n_test": 200, "batch_size": 100,
         "seeds": 2, "epochs": 5, "latents": [2, 2], "hidden": [[8], [8]]}


def test_restarts_are_a_wider_first_phase_and_count_in_the_work():
    cfg = trial_config(SMALL | {"restarts": 3, "restart_epochs": 2})
    work = cost.trial_work(cfg)
    assert work.phases == (cost.Phase(2, 6), cost.Phase(3, 2))
    assert work.epochs == 5 and work.train_steps == 5 * 10
    # every member's epochs: the candidates' 2 x 6 and the seeds' 3 x 2 = 2 x seed_epochs
    assert work.member_epochs == 18 == 2 * cost.seed_epochs(cfg)
    assert work.train_passes == 18 * 10 * 100
    plain = cost.trial_work(trial_config(SMALL))
    assert plain.phases == (cost.Phase(5, 2),) and plain.member_epochs == 10


def test_early_stopping_expects_a_share_of_the_epochs_but_not_less_than_it_must_train():
    long = trial_config(SMALL | {"epochs": 300, "patience": 30})
    assert cost.expected_epochs(long) == pytest.approx(cost.EARLY_STOP_FRACTION * 300)
    assert cost.trial_work(long).expected
    assert cost.trial_work(long, early_stopping=False).epochs == 300
    # 40 epochs, restarts chosen at 30, patience 30: it cannot stop before the end
    short = trial_config(SMALL | {"epochs": 40, "patience": 30, "restarts": 2,
                                  "restart_epochs": 30})
    assert cost.expected_epochs(short) == 40
    assert not cost.trial_work(trial_config(SMALL)).expected


def test_early_stopping_lasts_until_the_last_seed_stops_and_costs_the_seeds_mean_epochs():
    """Each seed stops on its own and is no longer computed: a trial of 8 seeds reports
    EARLY_STOP_FRACTION of its epochs and trains SEED_STOP_FRACTION per seed; one seed is its
    trial; restart candidates train their choice epochs whole."""
    T, S = cost.EARLY_STOP_FRACTION * 300, cost.SEED_STOP_FRACTION * 300
    eight = cost.trial_work(trial_config(SMALL | {"epochs": 300, "patience": 30, "seeds": 8}))
    assert eight.epochs == pytest.approx(T) and eight.member_epochs == pytest.approx(8 * S)
    assert [p.members for p in eight.phases] == [8, 4]
    one = cost.trial_work(trial_config(SMALL | {"epochs": 300, "patience": 30, "seeds": 1}))
    assert one.phases == (cost.Phase(pytest.approx(S), 1),)
    restarts = cost.trial_work(trial_config(SMALL | {"epochs": 300, "patience": 30, "seeds": 4,
                                                     "restarts": 3, "restart_epochs": 30}))
    assert restarts.phases[0] == cost.Phase(30, 12)
    assert restarts.epochs == pytest.approx(T)
    assert restarts.member_epochs == pytest.approx(30 * 12 + 4 * (S - 30))
    # an odd ensemble's second phase rounds up: never fewer member-epochs than the mean
    five = cost.trial_work(trial_config(SMALL | {"epochs": 300, "patience": 30, "seeds": 5}))
    assert 5 * S <= five.member_epochs <= 5 * S + (T - S)


def test_early_stopping_at_another_share_moves_the_trial_and_its_seeds():
    cfg = trial_config(SMALL | {"epochs": 100, "patience": 10, "seeds": 4, "restarts": 3,
                                "restart_epochs": 10})
    est = cost.estimate(cfg)
    assert est.stopping_at(cost.EARLY_STOP_FRACTION).work.phases == pytest.approx(
        est.work.phases)
    whole = est.stopping_at(1.0).work  # every seed trains every epoch
    assert whole.epochs == 100 and whole.member_epochs == 10 * 12 + 90 * 4
    assert whole.phases[0] == est.work.phases[0]  # the candidates' phase is what it is
    assert est.stopping_at(0.99).seconds > est.seconds > est.stopping_at(0.8).seconds
    # below the prior's share, the seeds' mean moves in proportion: 0.8 / 0.96 of 0.73
    low = est.stopping_at(0.8).work
    seed = cost.SEED_STOP_FRACTION * 0.8 / cost.EARLY_STOP_FRACTION * 100
    assert low.epochs == pytest.approx(80)
    assert low.member_epochs == pytest.approx(10 * 12 + (seed - 10) * 4)
    plain = cost.estimate(trial_config(SMALL))  # no early stopping: itself
    assert plain.stopping_at(0.5) is plain


def test_the_eta_expects_early_stopping_where_the_ended_trials_stopped():
    """The first trial ran all its 100 epochs where 96 were expected: the trials waiting are
    expected at (1 + 0.96) / 2 of theirs; a running trial past 2f - 1 of its epochs halfway
    between where it is and its last."""
    est = cost.estimate(trial_config(SMALL | {"epochs": 100, "patience": 10}))
    clock = Clock()
    progress = Progress(3, "val_bound", "max", ["depth"], lambda c: est, [est], clock=clock)
    assert progress._stopping(est) is est
    progress.trial_started("a")
    clock.t += 10.0
    progress.trial_reported("a", 100)
    progress.trial_ended("a", "finished", 100, -1.0, "depth=1", {"depth": 1})
    f = (1.0 + cost.EARLY_STOP_FRACTION) / 2
    assert progress.stopped == [1.0]
    assert progress._stopping(est).work.epochs == pytest.approx(f * 100)
    assert progress.waiting(1, [progress._stopping(est)])[0][0] == pytest.approx(
        est.stopping_at(f).seconds)
    assert progress._stopping(est, epoch=20).work.epochs == pytest.approx(f * 100)
    assert progress._stopping(est, epoch=96).work.epochs == pytest.approx(98)
    assert f"epochs 100/~{100 + 2 * f * 100:.0f}" in progress.line([], {})  # 2 waiting at f


def test_seed_epochs_and_epochs_costing_invert_each_other():
    cfg = trial_config(SMALL | {"epochs": 50, "restarts": 3, "restart_epochs": 10})
    for epochs in (10, 11, 37, 50):
        assert cost.epochs_costing(cost.seed_epochs(cfg, epochs), cfg) == epochs
    assert cost.epochs_costing(9, cfg) == 3  # under N epochs, R candidates each train E


def test_evaluation_counts_every_pass_of_the_final_evaluation():
    cfg = trial_config(SMALL | {"eval_importance": 1000, "ood_importance": 20,
                                "ood_shifts": [0.5], "ood_offsets": []})
    n = 200
    test = n * 1000
    latents = n * 16  # the latent metrics' 16 samples of (at most 2000) test points
    sets = (1 + 2 + 1) * n * (1 + 20 + 20)  # test + shifted + widened + uniform: ELBO, K, L>1
    assert cost.sample_passes(cost.evaluation_passes(cfg)) == \
        test + latents + sets + cost.N_GENERATED
    assert cost.trial_work(cfg).eval_passes == test + latents + sets + cost.N_GENERATED


def test_noisy_2d_trials_count_their_exact_densities_in_the_closing():
    """With data noise the final evaluation computes the exact density of every test point,
    and per OOD set of the reference points inside and outside under the set's density and
    the outside ones under the training density (the inside ones once), unless a worker's
    cache holds them for every trial of the same seeds; without noise or on images, none."""
    from study.data.exact_density import CACHE_SIZE

    assert cost.REFERENCE_CACHE == CACHE_SIZE
    # 8 seeds x (2 + 3 x 13 sets) = 328 densities: more than the cache holds
    sets = {"ood_shifts": [0.1 * i for i in range(1, 12)], "ood_offsets": [], "seeds": 8}
    cfg = trial_config(SMALL | sets)
    # 200 test points; inside 200 once; per set (11 shifted, widened, uniform) 3 x 200
    assert cost.reference_points(cfg) == 200 + 200 * (1 + 3 * 13)
    big = trial_config(SMALL | sets | {"n_test": 3000})
    assert cost.reference_points(big) == 3000 + 1000 * (1 + 3 * 13)
    # 8 seeds x (2 + 3 x 3) = 88: the first trial of a worker computes them for the rest
    assert cost.reference_points(trial_config(SMALL | {"ood_shifts": [0.5], "seeds": 8})) == 0
    assert cost.reference_points(trial_config(SMALL | sets | {"noise": 0.0})) == 0
    images = trial_config({"dataset": "mnist", "kind": "vae", "latents": [4], "hidden": [8]})
    assert cost.reference_points(images) == 0
    work = cost.trial_work(cfg)
    assert work.references == 8200
    rates = cost.Rates(lambda m: 0.0, 0.0, 1.0, 0.0, reference_s=1e-4)
    assert cost.closing_seconds(work, rates) == pytest.approx(1.0 + 8 * 8200 * 1e-4)


def test_seconds_add_up_phases_validation_evaluation_and_fixed_cost():
    cfg = trial_config(SMALL | {"restarts": 3, "restart_epochs": 2, "iw_samples": 4})
    work = cost.trial_work(cfg)
    rates = cost.Rates(step_s=lambda m: 1e-3 * m, pass_s=1e-6, trial_s=7.0, study_s=0.0)
    train = 2 * 10 * 6e-3 + 3 * 10 * 2e-3
    val = (2 * 6 + 3 * 2) * 100 * (1 + 4) * 1e-6
    evaluation = 2 * cost.sample_passes(cost.evaluation_passes(cfg)) * 1e-6 \
        + 2 * work.references * cost.REFERENCE_S  # none: 2 seeds' densities fit the cache
    assert cost.seconds(work, rates) == pytest.approx(train + val + evaluation + 7.0)
    est = cost.Estimate(work, rates)
    assert est.seconds_through(5) + est.closing_s == pytest.approx(est.seconds)
    assert est.seconds_through(2) == pytest.approx(2 * 10 * 6e-3 + 2 * 6 * 500 * 1e-6)
    assert est.seconds_left(5) == pytest.approx(est.closing_s)  # never less than the closing
    assert est.seconds_left(9) == pytest.approx(est.closing_s)  # past its expected epochs


def test_flops_count_the_encoder_once_per_point_and_the_rest_per_sample():
    from models.size import forward_flops

    cfg = trial_config(SMALL | {"iw_samples": 4})
    arch = cfg.architecture()
    work = cost.trial_work(cfg)
    train, forward = cost.flops(cfg, work)
    assert train == 3 * forward_flops(arch, 1, 4) * 2 * 5 * 1000  # members x epochs x points
    assert forward_flops(arch, 1, 4) < 4 * forward_flops(arch, 1, 1)  # the shared encoder
    val = 100 * (forward_flops(arch, 1, 1) + forward_flops(arch, 1, 4))
    evaluation = sum(p * forward_flops(arch, 1, s) for p, s in work.evaluation)
    assert forward == pytest.approx(2 * 5 * val + 2 * evaluation)


def test_makespan_schedules_longest_first_on_the_first_free_slot():
    assert cost.makespan([3, 5, 3, 4], slots=2, study_s=1.0) == 8 + 1.0
    assert cost.makespan([10, 1, 1], slots=3, study_s=0.0) == 10
    assert cost.makespan([2, 2, 2], slots=1, study_s=0.0) == 6
    # trials timed alone run slower beside each other; one at a time (or one trial) does not
    assert cost.makespan([3, 5, 3, 4], slots=2, study_s=1.0, shared=1.5) == 12 + 1.0
    assert cost.makespan([2, 2], slots=1, study_s=0.0, shared=1.5) == 4
    assert cost.makespan([2], slots=2, study_s=0.0, shared=1.5) == 2


def test_reference_rates_rank_bigger_models_slower():
    small = cost.estimate(trial_config(SMALL))
    wide = cost.estimate(trial_config(SMALL | {"hidden": [[64, 64], [64, 64]]}))
    iw = cost.estimate(trial_config(SMALL | {"iw_samples": 10}))
    assert small.seconds < wide.seconds and small.seconds < iw.seconds


def _fixed(seconds: float, epochs: int, evaluation: float = 0.0) -> cost.Estimate:
    """A trial of ``epochs`` epochs costing ``seconds``: 1 s of fixed cost, ``evaluation`` s of
    final evaluation, the rest training (no validation)."""
    cfg = trial_config(SMALL | {"epochs": epochs})
    work = cost.trial_work(cfg)
    work = dataclasses.replace(work, validation=())
    per_step = (seconds - 1.0 - evaluation) / (epochs * work.steps_per_epoch)
    pass_s = evaluation / (work.members * work.eval_passes)
    return cost.Estimate(work, cost.Rates(lambda m: per_step, pass_s, 1.0, 0.0))


def _eta_seconds(line: str) -> int:
    import re

    m = re.search(r"ETA (?:(\d+)m)?(\d+)s", line)
    return 60 * int(m[1] or 0) + int(m[2])


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _running(*ids: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(trial_id=i, status=Trial.RUNNING, config={"depth": i}) for i in ids]


def test_eta_paces_the_model_seconds_left_by_what_the_ended_trials_took():
    est, clock = _fixed(100.0, 10), Clock()
    progress = Progress(12, "val_bound", "max", ["depth"], lambda c: est, [est], clock=clock)
    for i in ("r0", "r1"):
        progress.trial_started(i)
    # with no work done yet the ETA is the model's own: 12 trials of 100 s, two at a time
    assert abs(_eta_seconds(progress.line(_running("r0", "r1"), {})) - 600) <= 1
    clock.t += 150.0  # both took 150 s for 100 model-seconds
    for i in ("r0", "r1"):
        progress.trial_ended(i, "finished", 10, -1.0, "depth=1", {"depth": 1})
    line = progress.line([], {})
    assert "2/12 done" in line and "10 waiting" in line and "epochs 20/120" in line
    # pace 300 s over 200 model-seconds, shrunk toward 1 by one trial's model-seconds (at most
    # PRIOR_S); the 10 trials left run two at a time on the 2 slots the study has shown
    pace = (300 + PRIOR_S) / (200 + PRIOR_S)
    assert abs(_eta_seconds(line) - 5 * 100 * pace) <= 1, line


def test_eta_counts_a_running_trial_by_its_epochs_and_a_pruned_one_by_what_it_trained():
    est, clock = _fixed(100.0, 10), Clock()  # 9.9 model-seconds per epoch, 1 s fixed cost
    progress = Progress(3, "val_bound", "max", ["depth"], lambda c: est, [est], clock=clock)
    progress.trial_started("t0")
    clock.t += 60.0
    # pruned after 5 epochs: 49.5 model-seconds and its start (half its fixed cost), no
    # evaluation and no closing
    progress.trial_ended("t0", "pruned", 5, None, "depth=1", {"depth": 1})
    assert progress.ended == [(60.0, pytest.approx(49.5 + 0.5))]
    progress.trial_started("t1")
    clock.t += 8.0
    progress.trial_reported("t1", 1)
    clock.t += 32.0
    progress.trial_reported("t1", 5)  # 49.5 + 0.5 (its start) model-seconds in 40 s
    line = progress.line(_running("t1"), {"t1": 5})
    assert "epochs 10/25" in line  # 5 + 5 trained; 5 + 10 + 10 expected
    assert "t1 5/10" in line
    # a trial with restarts reports its candidates' epochs as progress only (no epoch result
    # yet): the line shows them too
    assert "t1 5/10" in progress.line(_running("t1"), {})
    pace = (60.0 + 40.0 + PRIOR_S) / (50.0 + 50.0 + PRIOR_S)
    # t1's own pace: 40 s for 50 model-seconds, shrunk toward the study's by 25 (a quarter of
    # its 100); its time left: 5 epochs and the rest of its fixed cost, 50 model-seconds
    own = (40.0 + 25.0 * pace) / (50.0 + 25.0)
    left = 50.0 * own + 100.0 * pace  # one slot: then the waiting trial
    assert abs(_eta_seconds(line) - left) <= 1, line
    clock.t += 10.0  # ten seconds into its next epoch: ten seconds less left
    assert abs(_eta_seconds(progress.line(_running("t1"), {"t1": 5})) - (left - 10.0)) <= 1


def test_the_closing_is_paced_by_what_the_ended_trials_closings_took():
    """A trial trains at the model's pace and then evaluates 3x slower than the model says:
    its training and its closing (last report to end) set two paces, and the waiting trials'
    closings are paced by the second."""
    est, clock = _fixed(100.0, 10, evaluation=40.0), Clock()  # 59 s training, 41 s closing
    progress = Progress(3, "val_bound", "max", ["depth"], lambda c: est, [est], clock=clock)
    progress.trial_started("a")
    clock.t += 59.0
    progress.trial_reported("a", 10)  # 59 s of training and half the fixed cost: 59.5
    clock.t += 3 * 40.5  # the closing left (40 s of evaluation, 0.5 s of fixed cost), 3x slow
    progress.trial_ended("a", "finished", 10, -1.0, "depth=1", {"depth": 1})
    assert progress.ended == [(59.0, pytest.approx(59.5))]
    assert progress.closed == [(pytest.approx(121.5), pytest.approx(40.5))]
    pace = (59.0 + PRIOR_S) / (59.5 + PRIOR_S)
    # shrunk by 41 model-seconds toward the ended trial's pace from start to end
    close = (121.5 + 41.0 * 180.5 / 100.0) / (40.5 + 41.0)
    assert progress.closing_pace(pace) == pytest.approx(close)
    eta = _eta_seconds(progress.line([], {}))
    assert abs(eta - 2 * (59.0 * pace + 41.0 * close)) <= 1
    # nearer the truth (2 x (59 + 123) s) than one pace for the whole trial would be
    one_pace = 2 * 100 * (180.5 + PRIOR_S) / (100 + PRIOR_S)
    assert one_pace + 10 < eta < 2 * (59 + 123)


def test_the_restart_phase_and_the_training_after_it_are_paced_apart():
    """A trial with restarts (2 epochs of 6 candidates at 6 model-seconds each, then 3 of 2
    members at 2) runs its candidates' phase at 1.44x the model's time and the rest at 0.5x:
    the two are paced apart, the second shrunk toward the first until it shows its own, and
    the trial's own pace after the choice starts from the study's as far off as its restarts."""
    cfg = trial_config(SMALL | {"restarts": 3, "restart_epochs": 2})
    work = dataclasses.replace(cost.trial_work(cfg), validation=(), evaluation=())
    est = cost.Estimate(work, cost.Rates(lambda m: 0.1 * m, 0.0, 1.0, 0.0))
    assert (est.choice_epoch, est.restart_s, est.seconds, est.closing_s) == pytest.approx(
        (2, 12.0, 19.0, 1.0))
    clock = Clock()
    progress = Progress(2, "val_bound", "max", ["depth"], lambda c: est, [est], clock=clock)
    t0 = clock.t
    progress.trial_started("a")
    for at, epoch in ((9.0, 1), (18.0, 2), (20.0, 4)):  # a progress result, then epoch results
        clock.t = t0 + at
        progress.trial_reported("a", epoch)
    (rw, rm), (mw, mm) = progress._split("a", est)  # model: at(2), at(4) - at(2)
    assert (rw, rm, mw, mm) == pytest.approx((18.0, 12.5, 2.0, 4.0))
    prior = min(19.0, PRIOR_S)
    restart = (18.0 + prior) / (12.5 + prior)
    pace = (2.0 + prior * restart) / (4.0 + prior)
    assert progress.paces({"a": est}) == pytest.approx((restart, pace)) and pace < restart
    own_prior = 19.0 / 4
    own_restart = (18.0 + own_prior * restart) / (12.5 + own_prior)
    own = (2.0 + own_prior * pace * own_restart / restart) / (4.0 + own_prior)
    # a: one epoch (2) and its closing (0.5: its fixed cost's other half) left; then the
    # waiting trial: its candidates' phase, its training after it and its closing
    eta = 2.0 * own + 0.5 * pace + (12.0 * restart + 6.0 * pace + 1.0 * pace)
    assert abs(_eta_seconds(progress.line(_running("a"), {"a": 4})) - eta) <= 1
    clock.t = t0 + 20.5
    progress.trial_reported("a", 5)
    clock.t = t0 + 21.5
    progress.trial_ended("a", "finished", 5, -1.0, "depth=1", {"depth": 1})
    assert progress.ended_restarts == [pytest.approx((18.0, 12.5))]
    assert progress.ended == [pytest.approx((2.5, 6.0))]
    assert progress.closed == [pytest.approx((1.0, 0.5))]


def test_a_trial_restored_from_a_checkpoint_paces_from_the_epoch_it_was_restored_from():
    """A resumed study's trial restored at epoch 150: the 150 epochs it trained under an
    earlier driver do not count as done in this driver's seconds; a fresh trial whose first
    result carries its first three epochs counts from epoch 0."""
    est, clock = _fixed(1000.0, 300), Clock()
    progress = Progress(2, "val_bound", "max", ["depth"], lambda c: est, [est], clock=clock)
    progress.trial_started("t")
    progress.trial_started("fresh")
    clock.t += 5.0
    progress.trial_reported("t", 151, restored_from=150)
    progress.trial_reported("fresh", 3)
    clock.t += 6.0
    progress.trial_reported("t", 152, restored_from=150)
    per_epoch = 999.0 / 300
    assert progress.pace({"t": est}) == pytest.approx((11.0 + PRIOR_S) / (2 * per_epoch + PRIOR_S))
    assert progress.pace({"fresh": est}) == pytest.approx(
        (5.0 + PRIOR_S) / (3 * per_epoch + 0.5 + PRIOR_S))
    # a failed trial that never reported adds nothing to the pace (no negative model time)
    progress.trial_started("f")
    clock.t += 3.0
    progress.trial_ended("f", "failed", 0, None, "", {"depth": 1})
    assert progress.ended == []


def test_a_grids_waiting_trials_are_its_cheapest_and_a_resumed_studys_recorded_ones_done():
    cheap, dear = _fixed(10.0, 5), _fixed(100.0, 5)
    clock = Clock()
    progress = Progress(4, "val_bound", "max", ["depth"], lambda c: dear, [dear, dear, cheap, cheap],
                        grid=True, clock=clock)
    progress.trial_started("a")
    line = progress.line(_running("a"), {})
    assert abs(_eta_seconds(line) - (100 + 100 + 10 + 10)) <= 1  # one slot so far: in turn
    assert progress.waiting(2) == [(10.0, cheap.closing_s, 0.0)] * 2
    progress.trial_ended("old", "finished", 5)  # recorded by an earlier driver
    assert "1/4 done" in progress.line(_running("a"), {}) and "2 waiting" in progress.line(
        _running("a"), {})


@pytest.mark.parametrize("share, since, within", [(1 / 3, 0.1, 0.25), (0.5, 0.4, 0.12)])
def test_eta_of_a_simulated_study_is_within_a_quarter_of_the_time_left_from_a_tenth_on(
        share, since, within):
    """Nine trials of three costs, run two at a time (costliest first, as a grid starts
    them), each reporting its epochs and then a long final evaluation; the model is wrong in
    both: each kind takes 0.85-1.15x its model seconds (and each trial +-10%), and the
    evaluation ``share`` of a trial's time where the model says a quarter. A third: from a
    tenth of the run to three quarters the ETA is within 25% of the time left; later (under a
    quarter of the run left) within 25% or 5% of the run. A half: once the first trials have
    ended (0.35 of the run) within 12% (their closings pace the rest's; with one pace for the
    whole trial it was 13-28% short)."""
    rng = np.random.default_rng(0)
    kinds = {"a": (_fixed(100.0, 6, 25.0), 1.15), "b": (_fixed(200.0, 6, 50.0), 1.0),
             "c": (_fixed(60.0, 6, 15.0), 0.85)}
    assert kinds["b"][0].seconds == pytest.approx(200.0)
    assert kinds["b"][0].closing_s == pytest.approx(51.0)
    order = ["b", "b", "b", "a", "a", "a", "c", "c", "c"]
    events, free = [], [0.0, 0.0]
    for n, k in enumerate(order):  # the true timeline: start, epochs, then the evaluation
        est, slow = kinds[k]
        slot = free.index(min(free))
        t0, wall = free[slot], est.seconds * slow * rng.uniform(0.9, 1.1)
        events += [(t0, 2, f"t{n}", k, "start")]  # at one time: an end before a start
        events += [(t0 + wall * (1 - share) * e / 6, 1, f"t{n}", k, e) for e in range(1, 7)]
        events.append((t0 + wall, 0, f"t{n}", k, "end"))
        free[slot] = t0 + wall
    total, errors = max(free), []
    for frac in np.arange(0.1, 0.95, 0.05):
        now, clock = frac * total, Clock()
        start = clock.t
        progress = Progress(9, "val_bound", "max", ["depth"], lambda c: kinds[c["depth"]][0],
                            [kinds[k][0] for k in order], grid=True, clock=clock)
        epoch, running = {}, {}
        for t, _, i, k, what in sorted(events):
            if t > now:
                break
            clock.t = start + t
            if what == "start":
                progress.trial_started(i)
                running[i] = k
            elif what == "end":
                del running[i]
                progress.trial_ended(i, "finished", 6, -1.0, k, {"depth": k})
            else:
                epoch[i] = what
                progress.trial_reported(i, what)
            if what != 1 and len(running) > 1:  # Tune's loop sees them running together
                progress.line(_running_as(running), epoch)
        clock.t = start + now
        eta = _eta_seconds(progress.line(_running_as(running), epoch))
        errors.append((frac, eta / (total - now) - 1, (eta - (total - now)) / total))
    assert all(abs(rel) <= within or (frac > 0.75 and abs(run) <= 0.05)
               for frac, rel, run in errors if frac >= since), np.round(errors, 2).tolist()


def _running_as(running: dict[str, str]) -> list[SimpleNamespace]:
    return [SimpleNamespace(trial_id=i, status=Trial.RUNNING, config={"depth": k})
            for i, k in running.items()]


def test_dry_run_estimates_every_trial_from_the_cost_model(tmp_path):
    from study.spec.plan import dry_run
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import load_spec

    text = dry_run(ResolvedStudy(load_spec("spirals_depth"), "default"))
    assert f"~{cost.EARLY_STOP_FRACTION * 300:.0f}" in text  # early stopping's expected epochs
    assert "1,200 epochs planned" in text and "estimated" in text


def test_a_second_dry_run_in_one_process_reuses_the_rates_it_timed(monkeypatch):
    """A rate depends on the model's shapes, not on the study: a repeat of moons_depth's dry run,
    and the same study under another name, time nothing more."""
    from study.spec import plan
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import load_spec

    timed = []
    monkeypatch.setattr(plan, "RATES", {})
    monkeypatch.setattr(plan, "_timed", lambda fn, *a, **k: timed.append(fn) or 1e-3)
    spec = load_spec("moons_depth")
    first = plan.dry_run(ResolvedStudy(spec, "default"))
    n = len(timed)
    # 4 depths: a step at 3 ensemble widths (the restarts', the seeds', the seeds early stopping
    # has not ended yet), a likelihood pass
    assert n == 4 * 4, n
    assert plan.dry_run(ResolvedStudy(spec, "default")) == first and len(timed) == n
    plan.dry_run(ResolvedStudy(spec.model_copy(update={"name": "renamed"}), "default"))
    assert len(timed) == n


def test_the_dry_run_times_a_long_call_three_times_and_a_short_one_in_blocks():
    """``plan._timed``: a call of ``LONG_CALL_S`` or more is made once untimed and twice timed
    (an MNIST likelihood pass: 2-3 s a call); a short one twice untimed, then in 5 blocks of
    at least 0.06 s, the fastest block per call."""
    from study.spec import plan

    calls = []

    def sleeper(seconds):
        def fn():
            calls.append(seconds)
            time.sleep(seconds)
        return fn

    assert plan._timed(sleeper(plan.LONG_CALL_S)) >= plan.LONG_CALL_S
    assert len(calls) == 3
    calls.clear()
    assert 0.02 <= plan._timed(sleeper(0.02)) < 0.05
    assert len(calls) >= 2 + 5 * 3  # 3 calls of 0.02 s fill a block of 0.06 s
