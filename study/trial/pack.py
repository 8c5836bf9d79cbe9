"""A pack: several configurations of one shape trained as one ensemble, each ending on its own.

Every configuration keeps its own :class:`~study.trial.trainer.Trainer`, which is what its
checkpoints, evaluation, files and records see, exactly as when it trains alone. ``merge`` builds
one trainer of all their members (``study.spec.packs``: each member with its own weights, Adam
moments, data order, noise streams and settings) that does the computing; after every epoch each
configuration's trainer takes its members' epoch back (``Follower.follow``), and its weights,
moments and random streams whenever they are read (a checkpoint, the end). A configuration ends
on its own, when none of its members trains any more (each stopped, diverged or through its
epochs) or when its ``TrialIO`` stops it (pruning); its members then leave the pack
(``Trainer.released``) and cost nothing, and the pack goes on until its last configuration ends.

``run_pack`` is ``study.trial.run_trial.run_trial`` for a pack: configurations restore from
their own checkpoints, those at the same epoch train together, and each one is evaluated and
handed to its own ``TrialIO`` when it ends. A member's numbers do not depend on its pack
(tests/test_packs.py: parameters after 3 epochs alone and in a pack of 20, to float rounding).
Restarts are chosen per configuration, before packing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models import beta_schedule
from study.data import DataBundle
from study.spec.config import TrialConfig
from study.spec.packs import KNEE_MEMBERS, shape_key
from study.trial.evaluate import evaluate
from study.trial.records import EpochMetrics, TrainState
from study.trial.run_trial import TrialIO, TrialResult, restore_newest, write_trial_files
from study.trial.trainer import Trainer


def merge(trainers: Sequence[Trainer]) -> Trainer:
    """One trainer whose members are those of ``trainers`` (configurations of one shape, at one
    epoch), in order, with their weights, Adam moments, data-order and noise streams, stop and
    divergence epochs and histories."""
    epochs = {t.state.epoch for t in trainers}
    if len(epochs) != 1:
        raise ValueError(f"a pack's configurations must be at one epoch, got {sorted(epochs)}")
    first = trainers[0]
    packed = Trainer([t.cfg for t in trainers], [t.data for t in trainers],
                     device=str(first.device))
    states = [t.model.state_dict() for t in trainers]
    with torch.no_grad():
        packed.model.load_state_dict({k: torch.cat([s[k] for s in states]) for k in states[0]})
    opts = [t.optimizer.state_dict() for t in trainers]
    merged = opts[0]
    merged["state"] = {i: {k: v if v.dim() == 0 else torch.cat([o["state"][i][k] for o in opts])
                           for k, v in st.items()} for i, st in opts[0]["state"].items()}
    packed.optimizer.load_state_dict(merged)
    for g, s in zip(packed.order_rngs, [g.get_state() for t in trainers for g in t.order_rngs]):
        g.set_state(s)
    packed.model.noise.set_state([s for t in trainers for s in t.model.noise.get_state()])
    offsets = np.cumsum([0] + [t.n_members for t in trainers])
    packed.state = _concat_states([t.state for t in trainers])
    packed._frozen = {int(o + e): p for t, o in zip(trainers, offsets) for e, p in t._frozen.items()}
    return packed


def _concat_states(states: Sequence[TrainState]) -> TrainState:
    """The states of a pack's configurations side by side (histories epoch by epoch)."""
    history = []
    for epochs in zip(*(s.history for s in states)):
        members = {k: [x for h in epochs for x in h.members[k]] for k in epochs[0].members}
        history.append(EpochMetrics(epochs[0].epoch, members, dict(epochs[0].mean),
                                    sum(h.n_diverged for h in epochs)))
    return TrainState(
        epoch=states[0].epoch, history=history,
        diverged_epoch=[d for s in states for d in s.diverged_epoch],
        restart=[r for s in states for r in s.restart] if all(s.restart for s in states) else [],
        stopped_epoch=[d for s in states for d in s.stopped_epoch])


def config_epoch(metrics: EpochMetrics, rows: np.ndarray, cfg: TrialConfig) -> EpochMetrics:
    """A pack's epoch as configuration ``cfg`` (members ``rows``) records it: its members'
    values and their means, its own KL weight."""
    kept = metrics.keep([int(i) for i in rows])
    kept.mean["beta"] = beta_schedule(metrics.epoch, cfg.warmup_epochs)
    return kept


@dataclass
class Follower:
    """A configuration of a pack: its own trainer, following the members ``rows`` of the
    packed one."""

    trainer: Trainer
    packed: Trainer
    rows: np.ndarray

    def follow(self) -> EpochMetrics:
        """Take the pack's newest epoch: this configuration's metrics, epoch, stop and
        divergence epochs (weights and streams stay in the pack until ``take_weights``)."""
        p, t = self.packed, self.trainer
        metrics = config_epoch(p.state.history[-1], self.rows, t.cfg)
        t.state.history.append(metrics)
        t.state.epoch = p.state.epoch
        t.state.diverged_epoch = [p.state.diverged_epoch[i] for i in self.rows]
        t.state.stopped_epoch = [p.state.stopped_epoch[i] for i in self.rows]
        return metrics

    @property
    def ended(self) -> bool:
        """No member of this configuration trains any more: each stopped, diverged or through
        its epochs (the plateau test of the next epoch applied now, as ``Trainer.fit`` would
        at the start of that epoch)."""
        return not self.packed.training[self.rows].any()

    def take_weights(self) -> None:
        """Copy this configuration's weights, Adam moments, data-order and noise streams and
        frozen members from the pack into its own trainer."""
        self.trainer.take_members(self.packed, self.rows.tolist())


@dataclass
class _Member:
    """A configuration in the loop: its own trainer, its ``TrialIO``, its data and, while it
    trains in a pack, how it follows the packed trainer."""

    trainer: Trainer
    io: TrialIO
    data: DataBundle
    result: TrialResult
    follower: Follower | None = None


class PackLoop:
    """Configurations that join and leave at any time, trained in packs.

    ``join`` restores a configuration from its ``TrialIO``'s checkpoints (and chooses its
    restarts on a fresh start); ``step`` trains one epoch of one pack: the configurations of one
    shape (``study.spec.packs.shape_key``) at the lowest epoch any configuration is at, at most
    ``max_members`` members, so a configuration that joins late catches up and then trains in
    the pack of the others; ``leave`` takes a configuration out (its trial was stopped
    elsewhere). A configuration that ends is evaluated and handed to its ``TrialIO`` within
    ``step``."""

    def __init__(self, *, device: str = "auto", threads: int | None = None, plots: bool = True,
                 max_members: int = KNEE_MEMBERS) -> None:
        self.device, self.threads, self.plots = device, threads, plots
        self.max_members = max_members
        self.members: dict[str, _Member] = {}
        #: the packed trainers, each with the followers of its configurations
        self.packs: list[tuple[Trainer, dict[str, Follower]]] = []

    def join(self, key: str, cfg: TrialConfig, io: TrialIO, data: DataBundle) -> TrialResult:
        """Add configuration ``cfg`` under ``key``; its result object, which is filled in as
        it trains (``evaluation`` when it has ended, ``stopped_early`` when its ``TrialIO``
        stopped it)."""
        t = Trainer(cfg, data, device=self.device, threads=self.threads)
        restored = restore_newest(t, io.checkpoints())
        io.begin(t, restored)
        result = TrialResult(t, None, False, restored)
        if t.cfg.choice_epoch and t.state.epoch == 0:  # restarts: chosen alone, then packed
            t.choose_restarts(io.on_progress)
            if any(io.on_epoch(t, m) for m in t.state.history):
                result.stopped_early = True
                return result
            if not t.alive.any():  # every candidate diverged: ends as Trainer.fit does
                _finish(result, io, data, self.plots)
                return result
        self.members[key] = _Member(t, io, data, result)
        return result

    def leave(self, key: str) -> None:
        """Take configuration ``key`` out (not evaluated); unknown keys are ignored."""
        m = self.members.pop(key, None)
        if m is not None and m.follower is not None:
            _release(m)

    @property
    def busy(self) -> bool:
        return bool(self.members)

    def step(self) -> bool:
        """One epoch of one pack (see the class docstring); False when there is nothing to
        train."""
        if not self.members:
            return False
        packed, followers = self._next_pack()
        packed._stop_plateaued()
        for key, f in list(followers.items()):
            if f.ended:  # as Trainer.fit ends: no member left training
                m = self.members.pop(key)
                del followers[key]
                _release(m)
                _finish(m.result, m.io, m.data, self.plots)
        if not followers:
            return True
        packed.run_epoch()
        packed._stop_plateaued()
        for key, f in list(followers.items()):
            m = self.members[key]
            if m.io.on_epoch(m.trainer, f.follow()):  # stopped (pruned): not evaluated
                self.members.pop(key)
                _release(m)
                m.result.stopped_early = True
        return True

    def _next_pack(self) -> tuple[Trainer, dict[str, Follower]]:
        """The pack to train now: the configurations at the lowest epoch of the first shape
        there, packed anew when one of them is not yet in a pack with the others."""
        def key_of(m: _Member) -> tuple[int, str]:
            return m.trainer.state.epoch, shape_key(m.trainer.cfg)

        lowest = min(key_of(m) for m in self.members.values())
        chosen, size = [], 0
        for key, m in self.members.items():
            if key_of(m) == lowest and (not chosen or size + m.trainer.n_members
                                        <= self.max_members):
                chosen.append(key)
                size += m.trainer.n_members
        packs = {id(self.members[k].follower.packed) if self.members[k].follower else None
                 for k in chosen}
        if len(packs) == 1 and None not in packs:
            packed = self.members[chosen[0]].follower.packed
            followers = {k: self.members[k].follower for k in chosen}
            if all(self.members[k].follower is f for k, f in followers.items()):
                return packed, followers
        for k in chosen:  # a new pack of the chosen: each takes its weights out first
            if self.members[k].follower is not None:
                _release(self.members[k])
        packed = merge([self.members[k].trainer for k in chosen])
        offsets = np.cumsum([0] + [self.members[k].trainer.n_members for k in chosen])
        followers = {}
        for j, k in enumerate(chosen):
            f = Follower(self.members[k].trainer, packed, np.arange(offsets[j], offsets[j + 1]))
            self.members[k].follower = followers[k] = f
            f.trainer.pack_members = max(f.trainer.pack_members, packed.n_members)
            f.trainer.following = f  # its checkpoints take the weights from the pack first
        return packed, followers


def _release(m: _Member) -> None:
    """``m`` leaves its pack with its weights; its members there are no longer trained."""
    f = m.follower
    f.packed.released[f.rows] = True
    f.take_weights()
    f.trainer.following = None
    m.follower = None


def run_pack(cfgs: Sequence[TrialConfig], ios: Sequence[TrialIO], datas: Sequence[DataBundle],
             *, device: str = "auto", threads: int | None = None,
             plots: bool = True) -> list[TrialResult]:
    """Train ``cfgs`` to their ends in a ``PackLoop``, each resuming from its own ``ios``'
    newest readable checkpoint; results in the order of ``cfgs``."""
    loop = PackLoop(device=device, threads=threads, plots=plots)
    results = [loop.join(str(i), c, io, d) for i, (c, io, d) in enumerate(zip(cfgs, ios, datas))]
    while loop.step():
        pass
    return results


def _finish(result: TrialResult, io: TrialIO, data: DataBundle, plots: bool) -> None:
    """Evaluate an ended configuration and hand it to its ``TrialIO``."""
    t = result.trainer
    io.trained(t)
    result.evaluation = ev = evaluate(t.model, data, t.cfg, t.state)
    io.end(t, ev, lambda folder: write_trial_files(folder, t.cfg, t, data, ev, plots))
