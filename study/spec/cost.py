"""One cost model of a trial: the work it does, counted from its settings, and the time that work
takes at a machine's rates.

Everything that sizes, orders or schedules trials uses it: the dry run and the study's first
line (``study.spec.plan``), the progress line's ETA (``study.engine.progress``), the order
trials start in (``study.engine.search``), matched compute (``StudySpec.matched_epochs``) and the
GPU hours of docs/cluster.md (``benchmarks/gpu_hours.py``).

The work (``TrialWork``) is counted in what a trial does, in order:

- *training phases*: with restarts (R > 1), ``choice_epoch`` epochs of an ensemble of E x R
  members (every seed's candidates side by side), then the rest of the epochs with E members;
  each epoch is ``ceil(n_train / batch_size)`` optimizer steps of the whole ensemble, and a
  validation pass of ``n_val`` points per member (the ELBO, plus the k-sample bound for k > 1);
- *early stopping*: with ``patience`` > 0 a trial trains until its last seed stops,
  ``EARLY_STOP_FRACTION`` of its epochs on average, while a seed trains ``SEED_STOP_FRACTION``
  of them (measured on the published runs, below; at least ``choice_epoch + patience``): the
  whole ensemble for a first phase, then half of it, the phases' lengths set so that the trial
  reports the one and costs the other;
- *the final evaluation*: forward sample-passes (one data point through one member with one
  importance sample) of the test likelihood (K = max(eval_importance, 100)), the latent
  metrics, and per OOD set (and the test set) the ELBO, the K_ood likelihood and LLR>k; for
  noisy 2-D data also the exact densities of the test points and of each OOD set's reference
  points (``reference_points``; 30-36 s of ood_distance's noisy trials on 2026-12-05).

Time (``Rates``, ``seconds``) = steps x the seconds of one step of an ensemble of that width +
sample-passes x the seconds of one + a fixed cost per trial. A step of a small model costs
PyTorch's per-operation overhead more than its arithmetic (docs/benchmarks.md: the 2-D HVAE
runs at 3-22% of a core's matmul peak), so a step's time is a function of the ensemble's width,
measured (``study.spec.plan``) or modelled (``reference_rates``: a per-layer overhead plus FLOPs
at a sustained rate), never FLOPs alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from models.registry import model_kind
from study.spec.config import TrialConfig
from study.spec.evaluation_counts import EMBED_POINTS, EMBED_SAMPLES, N_GENERATED, REFERENCE_POINTS

#: with early stopping (``patience`` > 0) each seed stops on its own, and a stopped seed is no
#: longer computed: a trial reports epochs until its last seed stops (EARLY_STOP_FRACTION of its
#: epochs on average: the default runs of moons_depth, ood_distance and spirals_depth with
#: per-seed stopping, 2026-12-05, 12 configurations x 8 seeds, trained 259-300 of 300 epochs,
#: mean 0.96, ``benchmarks/cost_model.py --run`` journals; 0.87 before, from runs of
#: 2026-11-26 whose seeds all stopped together) and costs its seeds' mean epochs
#: (SEED_STOP_FRACTION: the published runs of 2026-12-04, moons_depth, ood_distance and
#: spirals_depth, 12 configurations x 8 seeds, docs/results, trained 137-300 epochs per seed on
#: average by configuration, mean 219 of 300)
EARLY_STOP_FRACTION = 0.96
SEED_STOP_FRACTION = 0.73
#: how much slower a trial runs beside another on this 2-core machine than alone (two plain
#: processes: 1.12-1.15x one alone, ``benchmarks/study_overhead.py``); the dry run times its
#: rates alone
SHARED_SLOWDOWN = 1.12
#: images of the full training and test sets (``n_train`` / ``n_test`` 0 means all)
IMAGE_TRAIN, IMAGE_TEST = 60_000, 10_000
#: exact densities a process keeps (``study.data.exact_density``'s CACHE_SIZE, a copy: that
#: module needs PyTorch, the cost model must not; tests/test_cost.py checks they are equal): a
#: worker computes a seed's references once for every trial of the same data when they fit
REFERENCE_CACHE = 256
#: seconds of one point's exact density (quadrature along the curve, one thread) where the dry
#: run has not timed it: 61-205 us on Moons and Spirals at noise 0.02-0.1, 2026-12-05
#: (``study.data.exact_density``; it is not a function of the noise alone)
REFERENCE_S = 1e-4


@dataclass(frozen=True)
class Phase:
    """``epochs`` (possibly fractional: an expectation) trained by an ensemble of ``members``."""

    epochs: float
    members: int


#: forward passes of (points, importance samples per point): the bottom-up encoder runs once per
#: point, the rest once per sample, so FLOPs are counted per group (``models.size``)
Passes = tuple[tuple[int, int], ...]


def sample_passes(passes: Passes) -> int:
    """Sample-passes (one point through one member with one importance sample) of ``passes``."""
    return sum(points * samples for points, samples in passes)


@dataclass(frozen=True)
class TrialWork:
    """What one trial does (see the module docstring). Sample-passes count one data point
    through one member with one importance sample; steps train the whole ensemble at once."""

    phases: tuple[Phase, ...]
    steps_per_epoch: int
    batch_size: int
    iw_samples: int
    validation: Passes  # per member and epoch
    evaluation: Passes  # per member, the final evaluation
    members: int  # the seeds, E
    planned_epochs: int  # the budget's epochs
    expected: bool  # epochs are an expectation (early stopping)
    references: int = 0  # exact densities of one member's final evaluation (noisy 2-D data)

    @property
    def epochs(self) -> float:
        """Epochs the trial reports (the restarts' epochs are the seeds' first epochs)."""
        return sum(p.epochs for p in self.phases)

    @property
    def train_steps(self) -> float:
        return self.epochs * self.steps_per_epoch

    @property
    def member_epochs(self) -> float:
        """Epochs trained summed over members (restart candidates included)."""
        return sum(p.epochs * p.members for p in self.phases)

    @property
    def train_passes(self) -> float:
        """Sample-passes through a training step, every member."""
        return self.member_epochs * self.steps_per_epoch * self.batch_size * self.iw_samples

    @property
    def val_passes(self) -> int:
        """Sample-passes of one member's validation epoch."""
        return sample_passes(self.validation)

    @property
    def eval_passes(self) -> int:
        """Sample-passes of one member's final evaluation."""
        return sample_passes(self.evaluation)

    @property
    def epochs_text(self) -> str:
        """The epochs as the dry run and the progress line show them: "~N" when expected."""
        return f"~{self.epochs:.0f}" if self.expected else f"{self.planned_epochs}"


def expected_epochs(cfg: TrialConfig, fraction: float = EARLY_STOP_FRACTION) -> float:
    """Epochs a trial is expected to train (until its last seed stops): all of them, or with
    early stopping ``fraction`` of them (at least the restarts' and the patience's);
    ``SEED_STOP_FRACTION``: the epochs of one seed on average."""
    if not cfg.patience:
        return float(cfg.epochs)
    least = min(cfg.epochs, cfg.choice_epoch + cfg.patience)
    return max(float(least), fraction * cfg.epochs)


def _stopping_phases(trial: float, seed: float, members: int) -> tuple[Phase, ...]:
    """Epochs after the restarts' choice, ``trial`` of them until the last seed stops and
    ``seed`` per seed on average: all ``members`` for ``2 seed - trial`` epochs, then half of
    them (rounded up) for the rest, so the trial lasts ``trial`` epochs and trains ``members x
    seed`` member-epochs (exactly for an even ensemble)."""
    if members == 1 or trial <= seed:
        return (Phase(seed if members == 1 else trial, members),)
    whole = max(2 * seed - trial, 0.0)
    return Phase(whole, members), Phase(trial - whole, math.ceil(members / 2))


def seed_epochs(cfg: TrialConfig, epochs: float | None = None) -> float:
    """Epochs trained per seed over ``epochs`` (default the budget's), its restart candidates'
    counted: E + (R - 1) N with R restarts chosen after N epochs."""
    epochs = cfg.epochs if epochs is None else epochs
    return epochs + (cfg.restarts - 1) * cfg.choice_epoch


def epochs_costing(seed_epochs_: float, cfg: TrialConfig) -> int:
    """The epochs whose training costs ``seed_epochs_`` epochs per seed, restart candidates
    included (the inverse of ``seed_epochs``; rounded, at least 1): E epochs cost E + (R - 1) N
    when E >= N, else R E."""
    R, N = cfg.restarts, cfg.restart_epochs
    epochs = seed_epochs_ - (R - 1) * N
    return max(1, round(epochs if epochs >= N else seed_epochs_ / R))


def _ood_sets(cfg: TrialConfig) -> int:
    if cfg.is_image:
        return (cfg.exclude_label is not None) + (cfg.ood_dataset is not None)
    return len(cfg.ood_shifts) + len(cfg.ood_offsets) + 2  # + widened, uniform


def test_points(cfg: TrialConfig) -> int:
    n = cfg.n_test or IMAGE_TEST
    return min(n, cfg.eval_points) if cfg.eval_points else n


def train_points(cfg: TrialConfig) -> int:
    return cfg.n_train or (IMAGE_TRAIN if cfg.is_image else 0)


def evaluation_passes(cfg: TrialConfig) -> Passes:
    """Forward passes of one member's final evaluation: the test likelihood, the latent metrics,
    and on the test set and each OOD set the ELBO, the K_ood likelihood and, for a
    hierarchical model, L>k with K_ood samples for each k < L (LLR>k reuses the likelihood);
    for 2-D data the decoded prior samples."""
    n = test_points(cfg)
    K = cfg.eval_importance
    sets = _ood_sets(cfg) + 1
    passes = [(n, max(K, 100)), *([(n, K)] if K < 100 else []),
              (min(n, EMBED_POINTS), EMBED_SAMPLES),
              (sets * n, 1), (sets * n, cfg.ood_importance)]
    if model_kind(cfg.kind).hierarchical:  # L>k with K_ood samples for each k < L
        passes += [(sets * n, cfg.ood_importance)] * max(len(cfg.latents) - 1, 0)
    if not cfg.is_image:
        passes.append((N_GENERATED, 1))  # decoder passes, counted as forward passes
    return tuple(passes)


def reference_points(cfg: TrialConfig) -> int:
    """Points whose exact density one member's final evaluation computes (noisy 2-D data only,
    ``study.trial.evaluate``): its test points, and per OOD set the reference points inside
    and outside under the OOD set's density and the outside ones under the training density,
    the inside ones once. None when a trial's densities (2 + 3 per OOD set, per seed) fit in
    a worker's cache: then the first trial of each worker computes them for every later
    trial of the same seeds and data (moons_depth, spirals_depth: 10-20 s once per worker),
    whereas ood_distance's 13 OOD sets do not fit and each noisy trial spent 30-36 s on
    them (2026-12-05)."""
    if cfg.is_image or not cfg.noise:
        return 0
    sets = _ood_sets(cfg)
    if len(cfg.seeds) * (2 + 3 * sets) <= REFERENCE_CACHE:
        return 0
    inside = min(cfg.n_test, REFERENCE_POINTS) if cfg.n_test else REFERENCE_POINTS
    return test_points(cfg) + inside * (1 + 3 * sets)


def trial_work(cfg: TrialConfig, *, early_stopping: bool = True) -> TrialWork:
    """The work of one trial of ``cfg``; ``early_stopping=False``: every epoch (what training is
    planned to cost, as matched compute counts it)."""
    E, N = len(cfg.seeds), cfg.choice_epoch
    expected = early_stopping and bool(cfg.patience)
    trial = expected_epochs(cfg) if expected else float(cfg.epochs)
    seed = expected_epochs(cfg, SEED_STOP_FRACTION) if expected else trial
    phases = _stopping_phases(max(trial - N, 0.0), max(seed - N, 0.0), E)
    if N:
        phases = (Phase(N, E * cfg.restarts), *phases)
    k = cfg.iw_samples
    return TrialWork(
        phases=phases, steps_per_epoch=math.ceil(train_points(cfg) / cfg.batch_size),
        batch_size=cfg.batch_size, iw_samples=k,
        validation=((cfg.n_val, 1), *([(cfg.n_val, k)] if k > 1 else [])),
        evaluation=evaluation_passes(cfg), members=E, planned_epochs=cfg.epochs,
        expected=expected, references=reference_points(cfg))


def training_flops_per_epoch(cfg: TrialConfig) -> float:
    """Matmul FLOPs of one member's training epoch (forward and backward, ``iw_samples``
    samples per point; ``models.size``, which imports PyTorch)."""
    from models.size import training_flops

    return float(training_flops(cfg.architecture(), 1, cfg.iw_samples)) * max(train_points(cfg), 1)


def flops(cfg: TrialConfig, work: TrialWork | None = None) -> tuple[float, float]:
    """(training, forward-only) matmul FLOPs of a trial, every member (``models.size``: the
    encoder once per point, the rest once per sample)."""
    from models.size import forward_flops

    work = work or trial_work(cfg)
    arch = cfg.architecture()

    def of(passes: Passes) -> float:
        return sum(float(forward_flops(arch, 1, s)) * points for points, s in passes)

    train = 3 * float(forward_flops(arch, 1, work.iw_samples)) * work.member_epochs \
        * work.steps_per_epoch * work.batch_size
    return train, work.member_epochs * of(work.validation) + work.members * of(work.evaluation)


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work on one machine: ``step_s(members)`` one training step of an
    ensemble that wide; ``pass_s`` one forward sample-pass (large no-grad chunks);
    ``trial_s`` a trial's fixed cost (starting it in a worker, loading data, the plots and
    the records); ``study_s`` a study's (Ray, MLflow, imports); ``reference_s`` one point's
    exact density (noisy 2-D data)."""

    step_s: Callable[[int], float]
    pass_s: float
    trial_s: float
    study_s: float
    reference_s: float = REFERENCE_S


def training_seconds(work: TrialWork, rates: Rates, through: float | None = None) -> float:
    """The time of training and validating the first ``through`` epochs (default: all)."""
    left, total = math.inf if through is None else through, 0.0
    for p in work.phases:
        epochs = min(p.epochs, max(left, 0.0))
        left -= epochs
        total += epochs * (work.steps_per_epoch * rates.step_s(p.members)
                           + p.members * work.val_passes * rates.pass_s)
    return total


def closing_seconds(work: TrialWork, rates: Rates) -> float:
    """The final evaluation (its sample-passes and exact densities) and the trial's fixed
    cost: what is left after the last epoch."""
    return work.members * (work.eval_passes * rates.pass_s + work.references * rates.reference_s) \
        + rates.trial_s


def seconds(work: TrialWork, rates: Rates) -> float:
    """The time of one trial's ``work`` at ``rates``: training, validation, the final
    evaluation and the trial's fixed cost."""
    return training_seconds(work, rates) + closing_seconds(work, rates)


@dataclass(frozen=True)
class Estimate:
    """A trial's work at some rates, and how much of its time is done at a given epoch."""

    work: TrialWork
    rates: Rates

    @property
    def seconds(self) -> float:
        return seconds(self.work, self.rates)

    @property
    def closing_s(self) -> float:
        """The final evaluation and the fixed cost: what is left after the last epoch."""
        return closing_seconds(self.work, self.rates)

    def seconds_through(self, epochs: float) -> float:
        """The time of a running trial's first ``epochs`` epochs."""
        return training_seconds(self.work, self.rates, epochs)

    @property
    def choice_epoch(self) -> int:
        """The epochs of the restart candidates' phase (0: no restarts)."""
        phases = self.work.phases
        return int(phases[0].epochs) if phases[0].members > self.work.members else 0

    def stopping_at(self, fraction: float) -> Estimate:
        """This trial if early stopping ends it at ``fraction`` of its planned epochs (what a
        study's ended trials have shown) instead of ``EARLY_STOP_FRACTION``; its seeds' mean
        moves with it: from ``SEED_STOP_FRACTION`` there linearly to all epochs at 1, and below
        it in proportion (a trial that ends at 0.9 of the prior's fraction has seeds that
        train 0.9 of the prior's). A trial without early stopping is itself."""
        w, N = self.work, self.choice_epoch
        if not w.expected:
            return self
        if fraction >= EARLY_STOP_FRACTION:
            left = (1 - fraction) / (1 - EARLY_STOP_FRACTION)
            seed_fraction = 1 - (1 - SEED_STOP_FRACTION) * left
        else:
            seed_fraction = SEED_STOP_FRACTION * fraction / EARLY_STOP_FRACTION
        trial = max(fraction * w.planned_epochs, N)
        seed = min(max(seed_fraction * w.planned_epochs, N), trial)
        phases = _stopping_phases(trial - N, seed - N, w.members)
        if N:
            phases = (w.phases[0], *phases)
        return Estimate(replace(w, phases=phases), self.rates)

    @property
    def restart_s(self) -> float:
        """The time of the restart candidates' phase (0: no restarts)."""
        return self.seconds_through(self.choice_epoch)

    def started_s(self, epochs: float) -> float:
        """The part of the fixed cost a running trial has spent once it trains: half (its
        start: worker, data), the rest comes with its closing."""
        return self.rates.trial_s / 2 if epochs else 0.0

    def seconds_left(self, epochs: float) -> float:
        """The time left of a trial at epoch ``epochs``: at least its closing."""
        return max(self.seconds - self.seconds_through(epochs), self.closing_s)

    def seconds_ended(self, epochs: float, evaluated: bool = True) -> float:
        """The time of a trial that ended after ``epochs`` epochs (pruned, stopped early)."""
        return self.seconds_through(epochs) + (self.closing_s if evaluated else 0.0)


def estimate(cfg: TrialConfig) -> Estimate:
    """``cfg``'s trial at this machine kind's reference rates (no timing)."""
    return Estimate(trial_work(cfg), reference_rates(cfg))


#: this machine kind (2 cores, one per trial), fitted to the step and pass times the dry run
#: measures for the configurations of the default budgets (``benchmarks/cost_model.py --fit``,
#: 2026-12-05: 135 steps, 111 passes): a training step costs STEP_LAYER_S per ensemble layer
#: (its forward, backward and Adam operations), STEP_ROW_S per row through a layer (member x
#: point, and x importance sample after the encoder: the elementwise work) and its matmul FLOPs
#: at STEP_FLOPS; a forward sample-pass PASS_S plus its FLOPs at PASS_FLOPS. A step within
#: 0.76-1.12x, a pass within 0.64-1.45x of the time measured for one model (the ETA is paced by
#: the time the study has taken: only ratios between trials matter there; the dry run times
#: each model instead). Counting every layer's rows x samples put IW=10 steps of the MNIST VAE
#: at 1.9x IW=1's against the time measured (the step fit was 0.73-1.47x).
STEP_LAYER_S = 8.1e-5
STEP_ROW_S = 1.77e-7
STEP_FLOPS = 84e9
PASS_S = 0.19e-6
PASS_FLOPS = 132e9
#: fixed costs: per trial (worker, data, references, plots, records): latent_pockets at
#: `default`, 2026-12-04, 48 trials' start-to-end wall time less their work at the dry run's
#: rates (x SHARED_SLOWDOWN): mean 4.8 s, median 4.1 s (was 12 s before actors were reused and
#: the start-up trimmed); per study (Ray, MLflow's store, imports; ``benchmarks/cost_model.py
#: --run``)
TRIAL_S = 5.0
STUDY_S = 15.0


def step_terms(cfg: TrialConfig) -> tuple[int, int, float]:
    """(ensemble layers, rows through them, matmul FLOPs) of one member's training step on one
    point with its importance samples: the encoder's layers see the point once, the rest once
    per sample (``models.size.linear_shapes``); the FLOPs forward and backward."""
    from models.size import linear_shapes

    shapes = linear_shapes(cfg.architecture(), 1, cfg.iw_samples)
    return len(shapes), sum(r for r, _, _ in shapes), 3.0 * sum(2 * r * i * o
                                                                for r, i, o in shapes)


def reference_rates(cfg: TrialConfig) -> Rates:
    """Rates of ``cfg``'s model on this machine kind, from its layer count, rows and FLOPs (no
    timing: what the ETA and the start order use; the dry run measures instead)."""
    from models.size import forward_flops

    per_pass = float(forward_flops(cfg.architecture(), 1, 1))
    layers, rows, step_flops = step_terms(cfg)
    per_member = cfg.batch_size * (rows * STEP_ROW_S + step_flops / STEP_FLOPS)

    def step_s(members: int) -> float:
        return layers * STEP_LAYER_S + members * per_member

    return Rates(step_s, per_pass / PASS_FLOPS + PASS_S, TRIAL_S, STUDY_S)


def makespan(trial_seconds: list[float], slots: int, study_s: float,
             shared: float = 1.0, busy: list[float] | None = None) -> float:
    """Wall time of trials run ``slots`` at a time, longest first (the order trials start in),
    each on the first free slot, plus the study's fixed cost; ``shared``: how much slower a
    trial runs beside others than its ``trial_seconds`` (``SHARED_SLOWDOWN`` for times
    measured alone on this machine), when more than one runs at a time; ``busy``: the seconds
    left of trials already running, one slot each."""
    scale = shared if slots > 1 and len(trial_seconds) > 1 else 1.0
    free = list(busy or [])
    free += [0.0] * max(max(slots, 1) - len(free), 0)
    for s in sorted((t * scale for t in trial_seconds), reverse=True):
        i = free.index(min(free))
        free[i] += s
    return max(free) + study_s
