"""Typed records of what a trial reports: each epoch, and at its end.

A trial (``study.trial.run_trial``) produces an :class:`EpochMetrics` after every epoch and,
unless it was stopped early, an evaluation at the end. Inside Ray they travel as Tune results,
built and read only here (``epoch_result`` / ``final_result``, and the ``is_*``,
``history_of`` and ``reported`` readers), so no other module spells a result key
(``RESULT_KEYS``; tests/test_owners.py checks it):

- an epoch result carries the latest epoch's mean metrics at the top level (what Tune's
  searcher sees; Tune keeps running statistics of every top-level number in the driver, so
  nothing else goes there) and, under ``history``, every :class:`EpochMetrics` since the
  previous report, as plain dicts;
- the final result carries the search metric's value and the trial's bookkeeping; the final
  metrics themselves travel as files in the final checkpoint (``study.trial.files.FILES``);
- a progress result says only how many epochs a trial has trained before it can report any
  (its restart candidates, before the choice): the progress line's ETA paces the trial by it.
  It carries the search metric as NaN, which Ray Tune requires of every result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

_KIND = "report"  # result key: "epoch", "final" or "progress"
_EPOCH, _FINAL, _PROGRESS = "epoch", "final", "progress"
#: the keys of a Tune result that only this module may spell
RESULT_KEYS = frozenset({_KIND, "n_diverged", "node_id", "device", "restored_from",
                         "restore_note", "diverged_epoch", "history", "pack_members",
                         "trained_epochs"})


def mean_alive(values: np.ndarray, alive: np.ndarray) -> float:
    """The mean of ``values`` ``[E]`` over the members that are ``alive`` and finite (NaN if
    none): how an epoch's ``mean`` summarises its ``members``."""
    live = values[alive & np.isfinite(values)]
    return float(live.mean()) if live.size else float("nan")


@dataclass
class EpochMetrics:
    """Metrics after one epoch. ``members[name]`` has one value per ensemble member, in the
    order of the trial's seeds (NaN once that seed diverged; once a seed has stopped early, the
    values of its last trained epoch, repeated: its model is frozen); ``mean[name]`` is the
    mean over members that have not diverged, stopped ones included. Likelihoods and bounds are
    in nats per data point."""

    epoch: int
    members: dict[str, list[float]]
    mean: dict[str, float]
    n_diverged: int

    def tracked(self) -> dict[str, float]:
        """The epoch's means and its count of diverged members, as MLflow logs them."""
        return tracked_metrics(self.mean, self.n_diverged)

    def keep(self, idx: list[int]) -> EpochMetrics:
        """This epoch for the members ``idx`` alone, in that order: their values, and the means
        over those that had not diverged (other means, e.g. ``beta``, as they were)."""
        members = {k: [v[i] for i in idx] for k, v in self.members.items()}
        diverged = np.asarray(members.get("diverged", [0.0] * len(idx))) > 0
        mean = dict(self.mean) | {k: mean_alive(np.asarray(v, float), ~diverged)
                                  for k, v in members.items() if k != "diverged"}
        return EpochMetrics(self.epoch, members, mean, int(diverged.sum()))

    def rows(self, seeds: list[int]) -> list[dict[str, Any]]:
        """One row per seed (epoch, seed, then every metric), for ``epochs.parquet``."""
        out = []
        for i, seed in enumerate(seeds):
            row: dict[str, Any] = {"epoch": self.epoch, "seed": seed}
            row |= {k: v[i] for k, v in self.members.items()}
            out.append(row)
        return out


def tracked_metrics(mean: dict[str, float], n_diverged: float | None) -> dict[str, float]:
    """An epoch's metrics as MLflow logs them: the means over members, and the number of
    members diverged so far (when known)."""
    return dict(mean) | ({} if n_diverged is None else {"n_diverged": n_diverged})


@dataclass
class TrainState:
    """What a trial knows about its own training so far. ``epoch`` is the number of epochs the
    trial has run (its longest-training member's); per member, ``diverged_epoch`` is the epoch
    its loss turned non-finite and ``stopped_epoch`` the last epoch it trained before its own
    validation bound reached a plateau (``plateaued(..., member=e)``); None: not (yet)."""

    epoch: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    diverged_epoch: list[int | None] = field(default_factory=list)
    #: per seed, the initialisation training went on with (``TrialConfig.restarts``): 0 is the
    #: seed's own; empty without restarts
    restart: list[int] = field(default_factory=list)
    stopped_epoch: list[int | None] = field(default_factory=list)

    def member_epochs(self) -> list[int]:
        """``[E]`` the epochs each member trained: its stop epoch, its divergence epoch (it was
        frozen from then on), else every epoch of the trial. A seed trained alone would have
        run exactly these epochs (the final per-seed ``epochs``)."""
        stopped = self.stopped_epoch or [None] * len(self.diverged_epoch)
        return [s if s is not None else d if d is not None else self.epoch
                for s, d in zip(stopped, self.diverged_epoch)]

    def keep_members(self, idx: list[int]) -> TrainState:
        """This state for the members ``idx`` alone, in that order: every epoch's per-member
        values and their means (over the kept members that had not diverged)."""
        history = [h.keep(idx) for h in self.history]
        return TrainState(self.epoch, history, [self.diverged_epoch[i] for i in idx],
                          [self.restart[i] for i in idx] if self.restart else [],
                          [self.stopped_epoch[i] for i in idx] if self.stopped_epoch else [])


@dataclass(frozen=True)
class Restored:
    """Where a trial's training resumed: ``epoch`` 0 for a fresh start; ``note`` says why an
    older checkpoint (or none) was used when the newest could not be read."""

    epoch: int = 0
    note: str = ""


# ---------------------------------------------------------------------- Tune results
def epoch_result(pending: list[EpochMetrics], node: str, restored: Restored) -> dict[str, Any]:
    latest = pending[-1]
    return {_KIND: _EPOCH, "epoch": latest.epoch, "n_diverged": latest.n_diverged,
            **latest.mean, "node_id": node, "restored_from": restored.epoch,
            "restore_note": restored.note, "history": [asdict(m) for m in pending]}


def final_result(last: EpochMetrics, metric: str, score: float, *, device: str, node: str,
                 restored: Restored, diverged_epoch: int, pack_members: int) -> dict[str, Any]:
    return {_KIND: _FINAL, "epoch": last.epoch, metric: score, "n_diverged": last.n_diverged,
            "device": device, "node_id": node, "restored_from": restored.epoch,
            "restore_note": restored.note, "diverged_epoch": diverged_epoch,
            "pack_members": pack_members}


def progress_result(epochs: int, metric: str, node: str) -> dict[str, Any]:
    """``epochs`` trained before the first epoch result (restart candidates' epochs)."""
    return {_KIND: _PROGRESS, "trained_epochs": epochs, metric: math.nan, "node_id": node}


def progress_epochs(result: dict[str, Any] | None) -> int | None:
    """The epochs a progress result says were trained (None: not a progress result)."""
    if not result or result.get(_KIND) != _PROGRESS:
        return None
    return int(result["trained_epochs"])


def is_epoch_result(result: dict[str, Any] | None) -> bool:
    return bool(result) and result.get(_KIND) == _EPOCH


def is_final_result(result: dict[str, Any] | None) -> bool:
    return bool(result) and result.get(_KIND) == _FINAL


@dataclass(frozen=True)
class Reported:
    """What the driver reads of a trial's latest Tune result (defaults: nothing reported)."""

    epoch: int = 0
    node_id: str | None = None
    device: str | None = None
    restored_from: int = 0
    restore_note: str = ""
    n_diverged: int = 0
    diverged_epoch: int = 0
    #: the most members the trial's ensemble held (its seeds, or its pack's members)
    pack_members: int = 0
    values: dict[str, Any] = field(default_factory=dict)

    def value(self, metric: str) -> float | None:
        """The reported value of ``metric`` (the epoch's mean, or the final score), if any."""
        v = self.values.get(metric)
        return None if v is None else float(v)


def reported(result: dict[str, Any] | None) -> Reported:
    """The bookkeeping of a Tune result (an epoch's or the final one; None or {}: nothing)."""
    r = result or {}
    return Reported(epoch=int(r.get("epoch", 0) or 0), node_id=r.get("node_id"),
                    device=r.get("device"), restored_from=int(r.get("restored_from", 0) or 0),
                    restore_note=str(r.get("restore_note") or ""),
                    n_diverged=int(r.get("n_diverged", 0) or 0),
                    diverged_epoch=int(r.get("diverged_epoch") or 0),
                    pack_members=int(r.get("pack_members") or 0),
                    values={k: v for k, v in r.items() if isinstance(v, (int, float))
                            and not isinstance(v, bool)})


def epochs_trained(epoch_rows: list[dict[str, Any]], last: dict[str, Any] | None) -> int:
    """The last epoch a trial trained: its newest epoch row, else its last result's epoch."""
    return max((int(r["epoch"]) for r in epoch_rows), default=reported(last).epoch)


def history_of(result: dict[str, Any]) -> list[EpochMetrics]:
    """The epochs an epoch result carries."""
    return [EpochMetrics(**m) for m in result.get("history", [])]


def plateaued(history: list[EpochMetrics], patience: int, min_improvement: float,
              metric: str = "val_bound", member: int | None = None) -> bool:
    """Early stopping: whether ``metric`` (higher is better, nats) has not beaten its best
    before the last ``patience`` epochs by ``min_improvement`` in those epochs: member
    ``member``'s own value (how the trainer stops each seed), or with None the mean over seeds.
    Never with ``patience`` 0 or fewer than ``patience`` + 1 epochs of history."""
    if patience <= 0 or len(history) <= patience:
        return False
    values = [m.mean.get(metric, float("nan")) if member is None else
              m.members.get(metric, [float("nan")] * (member + 1))[member] for m in history]
    before = [v for v in values[:-patience] if math.isfinite(v)]
    recent = [v for v in values[-patience:] if math.isfinite(v)]
    if not before or not recent:
        return False
    return max(recent) < max(before) + min_improvement
