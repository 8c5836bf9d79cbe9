"""The Ray Tune runs of a study, one per round: round 0 is the study as its file defines it;
with ``--until-decided`` (``study.judge.sequential``) each later round gives the configurations of the
claims still open their next seeds, as trials of their own (Parquet, MLflow and Optuna record
them like any other). The rounds planned so far are kept in ``study.json`` (``rounds``), so
``--resume`` restores the round it was in and then goes on deciding."""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.spec.resolved import ResolvedStudy
from study.store.folder import RAY_DIR, ROUNDS_DIR, StudyFolder
from study.store.results import read_scores, read_trials

if TYPE_CHECKING:
    from ray import tune

    from study.engine.options import RunOptions
    from study.engine.outbox import MlflowOutbox
    from study.engine.recorder import StudyRecorder
    from study.judge.sequential import Design, Round
    from study.store.folder import StudyState
    from study.store.storage import Mirror


class Rounds:
    """Hands out the next round's ``Tuner`` until the study (and its design) is done."""

    def __init__(self, study: ResolvedStudy, opts: RunOptions, folder: StudyFolder,
                 design: Design | None, resumed: StudyState | None) -> None:
        self.study, self.spec, self.opts, self.folder, self.design = \
            study, study.spec, opts, folder, design
        self.planned: list[Round] = []
        if design is not None:  # SciPy (study.judge.stats) only for a sequential study
            from study.judge.sequential import Round

            self.planned = [Round(**r) for r in (resumed.rounds if resumed else None) or []]
        self.total = study.num_trials + sum(len(r.cells) for r in self.planned)
        self.recorders: list[StudyRecorder] = []
        self.handed_out = 0  # trials of the rounds handed out so far
        self._next = 0

    def seen(self) -> set[str]:
        """Every Ray trial any round's Tune has shown."""
        return set().union(*(r.seen for r in self.recorders))

    def next_tuner(self, parent_run_id: str, outbox: MlflowOutbox, mirror: Mirror | None,
                   gpus: float) -> tuple[tune.Tuner, StudyRecorder] | None:
        """The next round's Tuner (restored where ``--resume`` finds it started), or None."""
        from ray import tune

        from study.engine.tuner import build_tuner

        k = self._next
        root = mirror.uri if mirror is not None else str(self.folder.path)
        round_: Round | None = None
        if k == 0:  # a study interrupted before its Tuner saved anything starts it anew
            restore = self.opts.resume and tune.Tuner.can_restore(f"{root}/{RAY_DIR}")
        elif self.design is None:
            return None
        elif k <= len(self.planned):
            round_ = self.planned[k - 1]
            restore = self.opts.resume and tune.Tuner.can_restore(
                f"{root}/{ROUNDS_DIR}/round_{k}")
        else:
            from study.judge.sequential import next_round

            round_ = next_round(self.spec.claims, self.study.cells,
                                read_trials(self.folder.path), self.design, done=k,
                                gates=self.spec.gates, scores=read_scores(self.folder.path))
            if round_ is None:
                return None
            self.planned.append(round_)
            self.total += len(round_.cells)
            self.folder.update(rounds=[r.to_state() for r in self.planned])
            restore = False
        self._next += 1
        self.handed_out += self.study.num_trials if round_ is None else len(round_.cells)
        if round_ is not None and not self.opts.quiet:
            print(f"round {round_.index}: seeds {round_.start}-{round_.stop - 1} for "
                  f"{len(round_.cells)} configurations whose claims are still open "
                  f"(at most {self.design.max_seeds} seeds)", flush=True)
        tuner, recorder = build_tuner(self.study, self.opts, self.folder,
                                      parent_run_id=parent_run_id, outbox=outbox, mirror=mirror,
                                      gpus=gpus, round_=round_, restore=restore)
        self.recorders.append(recorder)
        return tuner, recorder

