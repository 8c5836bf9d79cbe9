"""``python -m study.train``: train and evaluate one configuration (all seeds), no Ray/MLflow.

Every ``TrialConfig`` field is a flag (``--n-train``, ``--iw-samples``, ...), with its help text
and default; ``--hidden`` takes one comma-separated group per layer and ``--seeds N`` means seeds
0..N-1. Example, the experiment log's 2-layer HVAE on noisy Spirals with 3 seeds:

    python -m study.train --dataset spirals --noise 0.05 --latents 2 2 \\
        --hidden 64,64 32,32 --seeds 3 --epochs 200

The output folder (``--out``, default ``runs/<dataset>-<kind>-z<latents>-<hash>``: the hash
identifies the configuration) holds the trial's files (``study.trial.files.FILES``) and its
checkpoints; running the same configuration again resumes it.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from study.core.errors import UserError
from study.spec.config import TrialConfig, trial_config
from study.spec.metric_names import detection_key
from study.trial.evaluate import Evaluation
from study.trial.files import CHECKPOINT
from study.trial.records import EpochMetrics, Restored
from study.trial.run_trial import Candidate, WriteFiles, run_trial
from study.trial.trainer import Trainer

PREVIOUS = "trainer.prev.pt"


class FolderIO:
    """A trial in a folder: checkpoints every ``every`` epochs (``trainer.pt``, and the one
    before it as ``trainer.prev.pt``), progress lines, the files at the end."""

    def __init__(self, out: Path, resume: bool, every: int = 10,
                 progress: Callable[[EpochMetrics], None] | None = None) -> None:
        self.out, self.resume, self.every, self.progress = out, resume, every, progress

    def checkpoints(self) -> Iterable[Candidate]:
        if not self.resume:
            return []
        files = [self.out / CHECKPOINT, self.out / PREVIOUS]
        return [(str(p), lambda p=p: nullcontext(p)) for p in files if p.exists()]

    def begin(self, trainer: Trainer, restored: Restored) -> None:
        if restored.epoch or restored.note:
            print(f"resumed at epoch {restored.epoch}" + (f" ({restored.note})" if restored.note
                                                         else ""), flush=True)

    def on_epoch(self, trainer: Trainer, metrics: EpochMetrics) -> bool:
        if self.progress:
            self.progress(metrics)
        if metrics.epoch % self.every == 0 and metrics.epoch < trainer.cfg.epochs:
            self._save(trainer)
        return False

    def on_progress(self, epochs: int) -> None:
        pass

    def trained(self, trainer: Trainer) -> None:
        pass

    def end(self, trainer: Trainer, evaluation: Evaluation, write_files: WriteFiles) -> None:
        self._save(trainer)
        write_files(self.out)

    def _save(self, trainer: Trainer) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if (self.out / CHECKPOINT).exists():
            os.replace(self.out / CHECKPOINT, self.out / PREVIOUS)
        trainer.save(self.out / CHECKPOINT)


# ---------------------------------------------------------------------- the flags
#: flags whose command-line form differs from the field's type
_SPECIAL: dict[str, dict[str, Any]] = {
    "hidden": {"nargs": "+", "metavar": "W,W", "type": str},
    "seeds": {"nargs": "+", "type": int, "metavar": "SEED"},
}


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_kwargs(name: str, annotation: Any) -> dict[str, Any]:
    if name in _SPECIAL:
        return dict(_SPECIAL[name])
    if annotation is bool:
        return {"type": _boolean, "metavar": "true|false"}
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_kwargs(name, args[0])
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        item = next((a for a in typing.get_args(item) if isinstance(a, type)), item) \
            if typing.get_origin(item) is typing.Annotated else item
        return {"nargs": "*", "type": item if isinstance(item, type) else float}
    if annotation in (int, float, str):
        return {"type": annotation}
    if typing.get_origin(annotation) is typing.Annotated:
        return {"type": typing.get_args(annotation)[0]}
    return {"type": str}


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return " ".join(",".join(map(str, d)) if isinstance(d, tuple) else str(d) for d in default)
    return "unset" if default is None else str(default)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.train", description=__doc__.split("\n")[0],
                                epilog="Every setting is a TrialConfig field (study/spec/config.py).")
    settings = p.add_argument_group("trial settings (TrialConfig)")
    for name, field in TrialConfig.model_fields.items():
        kwargs = _flag_kwargs(name, field.annotation)
        if name == "kind":
            from models import model_kinds

            kwargs = {"choices": list(model_kinds()), "type": str}
        settings.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                              help=f"{field.description} (default: {_shown(field.default)})",
                              **kwargs)
    run = p.add_argument_group("this run")
    run.add_argument("--out", default=None,
                     help="output folder (default: runs/<dataset>-<kind>-z<latents>-<hash of the "
                          "configuration>)")
    run.add_argument("--no-resume", action="store_true",
                     help="start from epoch 0 even if --out holds a checkpoint")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    run.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda "
                                                      "(default: auto)")
    return p


def values_from(args: argparse.Namespace) -> dict[str, Any]:
    """The TrialConfig values the user gave (unset flags keep TrialConfig's defaults)."""
    values = {k: v for k, v in vars(args).items() if k in TrialConfig.model_fields and v is not None}
    if "hidden" in values:
        blocks = [[int(w) for w in g.split(",") if w] for g in values["hidden"]]
        values["hidden"] = blocks[0] if len(blocks) == 1 else blocks
    if "seeds" in values and len(values["seeds"]) == 1:
        values["seeds"] = values["seeds"][0]  # N: seeds 0..N-1
    return values


def default_out(cfg: TrialConfig) -> Path:
    """``runs/<dataset>-<kind>-z<latents>-<hash>``: the same configuration, the same folder."""
    digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:8]
    return Path("runs") / f"{cfg.dataset}-{cfg.kind}-z{'x'.join(map(str, cfg.latents))}-{digest}"


def _table(members: dict[str, list[float]], mean: dict[str, float], seeds: list[int]) -> str:
    keys = [k for k in members if detection_key(k) in (None, "auroc")]
    width = max(len(k) for k in keys) + 2
    head = f"{'metric':<{width}}" + "".join(f"{'seed ' + str(s):>12}" for s in seeds) + f"{'mean':>12}"
    lines = [head, "-" * len(head)]
    fmt = lambda v: f"{v:>12.4g}" if math.isfinite(v) else f"{'nan':>12}"  # noqa: E731
    for k in keys:
        lines.append(f"{k:<{width}}" + "".join(fmt(v) for v in members[k]) + fmt(mean[k]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from study.core.environment import configure_process

    configure_process()
    args = parser().parse_args(argv)
    try:
        cfg = trial_config(values_from(args), "command line")
        out = Path(args.out) if args.out else default_out(cfg)

        def progress(m: EpochMetrics) -> None:
            if m.epoch == 1 or m.epoch % max(1, cfg.epochs // 20) == 0 or m.epoch == cfg.epochs:
                print(f"epoch {m.epoch:>4}/{cfg.epochs}  train bound {m.mean['train_bound']:9.4f}"
                      f"  val bound (k={cfg.iw_samples}) {m.mean['val_bound']:9.4f}  val ELBO "
                      f"{m.mean['val_elbo']:9.4f}  diverged {m.n_diverged}", flush=True)

        io = FolderIO(out, resume=not args.no_resume, progress=progress)
        result = run_trial(cfg, io, device=args.device, threads=args.threads)
    except UserError as err:
        from study.core.redact import redact

        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    ev = result.evaluation
    seeds = list(cfg.seeds)
    print()
    print(_table(ev.members, ev.mean, seeds))
    print(f"\nwrote {out}/: metrics.json, epochs.parquet, scores.parquet, plots/*.png, "
          f"{CHECKPOINT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
