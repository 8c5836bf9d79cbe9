"""Caps on the sizes a study may ask for, checked before anything is built or run.

A typo such as ``num_samples: 1000000000`` or ``hidden: [100000, 100000]`` must not start a
dry run that allocates 80 GB, nor promise 19 million minutes. Each cap has a flag of
``python -m study.run`` that raises it (``--max-grid``, ``--max-trials``, ``--max-seeds``,
``--max-width``, ``--max-memory``); a study above one is refused with one line naming the
file, the field, the value, the cap and the flag.

- ``grid``: configurations of the grid (checked before any cell is listed);
- ``trials``: trials of a budget (grid cells x ``num_samples`` when factors are sampled);
- ``seeds``: seeds of a configuration (checked before a seed list is built);
- ``width``: the widest hidden layer or latent layer;
- ``memory_gib``: what one trial is estimated to need (``estimated_memory``: training state
  and activations from the model's size, its data and the evaluation's chunks), against this
  machine's physical memory by default. Checked for the budget that runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.core.errors import SpecError

if TYPE_CHECKING:
    from study.spec.config import TrialConfig
    from study.spec.resolved import ResolvedStudy
    from study.spec.study_spec import StudySpec

MAX_GRID = 10_000
MAX_TRIALS = 10_000
MAX_SEEDS = 1_000
MAX_WIDTH = 16_384
GIB = 2**30
#: what the evaluation's chunked estimator holds at once besides the model: about ten live
#: float32 tensors of ``models.objectives.DEFAULT_MAX_ELEMENTS`` elements
EVAL_BYTES = 10 * 4 * 2**22
#: images held in memory per dataset (train + test, float32 pixels)
IMAGE_BYTES = 70_000 * 784 * 4


def physical_memory_gib() -> float:
    """This machine's physical memory in GiB (64 where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB
    except (ValueError, OSError, AttributeError):
        return 64.0


@dataclass(frozen=True)
class Limits:
    """The caps of one invocation (see the module docstring); None memory: this machine's."""

    grid: int = MAX_GRID
    trials: int = MAX_TRIALS
    seeds: int = MAX_SEEDS
    width: int = MAX_WIDTH
    memory_gib: float | None = None

    @property
    def memory(self) -> float:
        return self.memory_gib if self.memory_gib is not None else physical_memory_gib()


def _count(seeds: Any) -> int:
    if isinstance(seeds, bool):
        return 0
    if isinstance(seeds, int):
        return seeds
    return len(seeds) if isinstance(seeds, (list, tuple)) else 0


def check_counts(spec: StudySpec, limits: Limits) -> None:
    """Trials and seeds of every budget within their caps, before any configuration is built
    (a seed count of 10^7 would build lists of 10^7 seeds)."""
    from study.spec.study_spec import BUDGETS

    for budget in BUDGETS:
        trials = spec.num_trials(budget)
        if trials > limits.trials:
            field = f"budgets.{budget}.num_samples" if "num_samples" in spec.budget(budget) \
                else "search.num_samples"
            raise SpecError(f"{spec.source}: field {field!r}: budget {budget!r} has {trials:,} "
                            f"trials, above the limit of {limits.trials:,}; raise it with "
                            f"--max-trials {trials} if you mean it")
    places = [("seeds", spec.seeds), ("fixed.seeds", spec.fixed.get("seeds"))]
    places += [(f"budgets.{b}.seeds", spec.budget(b).get("seeds")) for b in BUDGETS]
    factor = spec.factors.get("seeds")
    if factor is not None and factor.is_grid:
        places += [("factors.seeds", v) for v in factor.values]
    for field, value in places:
        if _count(value) > limits.seeds:
            raise SpecError(f"{spec.source}: field {field!r} = {_show(value)}: "
                            f"{_count(value):,} seeds per configuration, above the limit of "
                            f"{limits.seeds:,}; raise it with --max-seeds {_count(value)} if you "
                            "mean it")


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, (list, tuple)) or len(value) <= 6 else \
        f"[{', '.join(map(str, value[:3]))}, ... ({len(value):,} values)]"


def check_widths(cfg: TrialConfig, limits: Limits, where: str) -> None:
    """The widest layer of a configuration within ``limits.width``."""
    widths = [w for block in cfg.hidden for w in block]
    for field, values in (("hidden", widths), ("latents", list(cfg.latents))):
        if values and max(values) > limits.width:
            raise SpecError(f"{where}: field {field!r} = {_show(_plain(getattr(cfg, field)))}: a "
                            f"layer of {max(values):,} units, above the limit of "
                            f"{limits.width:,}; raise it with --max-width {max(values)} if you "
                            "mean it")


def _plain(v: Any) -> Any:
    return [_plain(i) for i in v] if isinstance(v, (tuple, list)) else v


def estimated_memory(cfg: TrialConfig, bound: bool = False) -> int:
    """Bytes one trial of ``cfg`` is estimated to need at its largest: the training step of all
    its members (``models.size.training_memory``: seeds x restarts), its data, and the
    evaluation's chunks. ``bound``: an upper bound of that, with the training step's
    ``models.size.training_memory_bound`` (from the layer widths alone)."""
    from models.size import training_memory, training_memory_bound

    members = len(cfg.seeds) * cfg.restarts
    size = training_memory_bound if bound else training_memory
    train = size(cfg.architecture(), members, cfg.batch_size, cfg.iw_samples)
    if cfg.is_image:
        data = IMAGE_BYTES * (2 if cfg.ood_dataset else 1)
    else:
        points = (cfg.n_train or 10_000) + cfg.n_val + (cfg.n_test or 10_000)
        data = 4 * 2 * points * len(cfg.seeds) * (2 + len(cfg.ood_shifts) + len(cfg.ood_offsets))
    return train + data + EVAL_BYTES


def check_memory(study: ResolvedStudy, limits: Limits) -> None:
    """Every configuration of the study's budget within ``limits.memory`` (GiB): cleared by the
    upper bound where it fits (from the layer widths alone), else by the estimate itself."""
    cap, spec, budget = limits.memory, study.spec, study.budget
    for cell in study.cells:
        cfg = study.config(cell)
        if estimated_memory(cfg, bound=True) / GIB <= cap:
            continue
        need = estimated_memory(cfg) / GIB
        if need > cap:
            label = ", ".join(f"{k}={v}" for k, v in cell.items()) or "the configuration"
            raise SpecError(f"{spec.source} (budget {budget}, {label}): a trial needs about "
                            f"{need:,.1f} GiB (its {len(cfg.seeds) * cfg.restarts} members' "
                            f"training state and activations, data and evaluation), above the "
                            f"limit of {cap:,.1f} GiB; raise it with --max-memory {need:.0f} if "
                            "the machines that run it have that much")
