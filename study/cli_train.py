"""``python -m study.train``: train and evaluate one configuration (all seeds), no Ray/MLflow.

Example (the experiment log's 2-layer HVAE on noisy Spirals, 3 seeds):

    python -m study.train --dataset spirals --noise 0.05 --latents 2 2 \\
        --hidden 64,64 32,32 --seeds 3 --epochs 200
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .config import trial_config
from .errors import UserError


def _hidden(groups: list[str]) -> list:
    blocks = [[int(w) for w in g.split(",") if w] for g in groups]
    return blocks[0] if len(blocks) == 1 else blocks


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="spirals", choices=["moons", "spirals", "mnist", "fashion_mnist"])
    p.add_argument("--noise", type=float, default=0.05, help="noise std of Moons/Spirals")
    p.add_argument("--kind", default=None, choices=["vae", "hvae", "avae"],
                   help="default: vae for one latent layer, hvae for more")
    p.add_argument("--latents", type=int, nargs="+", default=[2, 2], help="latent size per layer, bottom first")
    p.add_argument("--hidden", nargs="+", default=["64,64", "32,32"],
                   help="hidden widths per layer, one comma-separated group per layer")
    p.add_argument("--seeds", type=int, nargs="+", default=[3],
                   help="one number N: seeds 0..N-1; several: those seeds")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--free-bits", type=float, default=0.0)
    p.add_argument("--iw-samples", type=int, default=1, help="importance samples in training")
    p.add_argument("--kl", default="analytic", choices=["analytic", "sampled"])
    p.add_argument("--variance", default="learned", choices=["learned", "fixed"])
    p.add_argument("--output-std", type=float, default=1.0, help="std of a fixed-variance output")
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=5_000)
    p.add_argument("--exclude-label", type=int, default=None)
    p.add_argument("--ood-dataset", default=None, choices=["mnist", "fashion_mnist"])
    p.add_argument("--data-dir", default=None, help="folder with mnist/ and fashion_mnist/ (or $HVAE_DATA_DIR)")
    p.add_argument("--eval-importance", type=int, default=1000, help="K of the test log-likelihood")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>-<kind>-...)")
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out")
    return p


def _table(members: dict[str, list[float]], mean: dict[str, float], seeds: list[int]) -> str:
    keys = [k for k in members if not k.startswith(("auprc_", "fpr80_"))]
    width = max(len(k) for k in keys) + 2
    head = f"{'metric':<{width}}" + "".join(f"{'seed ' + str(s):>12}" for s in seeds) + f"{'mean':>12}"
    lines = [head, "-" * len(head)]
    fmt = lambda v: f"{v:>12.4g}" if math.isfinite(v) else f"{'nan':>12}"  # noqa: E731
    for k in keys:
        lines.append(f"{k:<{width}}" + "".join(fmt(v) for v in members[k]) + fmt(mean[k]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    seeds = list(range(args.seeds[0])) if len(args.seeds) == 1 else args.seeds
    kind = args.kind or ("vae" if len(args.latents) == 1 else "hvae")
    values = dict(
        dataset=args.dataset, noise=args.noise, kind=kind, latents=args.latents,
        hidden=_hidden(args.hidden), seeds=seeds, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, lr_schedule=args.lr_schedule, warmup_epochs=args.warmup_epochs, free_bits=args.free_bits,
        iw_samples=args.iw_samples, kl=args.kl, variance=args.variance,
        output_std=args.output_std, n_train=args.n_train, n_test=args.n_test,
        exclude_label=args.exclude_label, ood_dataset=args.ood_dataset, data_dir=args.data_dir,
        eval_importance=args.eval_importance,
    )
    out = Path(args.out or f"runs/{args.dataset}-{kind}-z{'x'.join(map(str, args.latents))}")
    try:
        from .trial import run_trial

        cfg = trial_config(values, "command line")

        def progress(m) -> None:
            if m.epoch == 1 or m.epoch % max(1, cfg.epochs // 20) == 0 or m.epoch == cfg.epochs:
                print(f"epoch {m.epoch:>4}/{cfg.epochs}  train bound {m.mean['train_bound']:9.4f}  "
                      f"val ELBO {m.mean['val_elbo']:9.4f}  diverged {m.n_diverged}", flush=True)

        result = run_trial(cfg, out, progress, resume=not args.no_resume, device=args.device,
                           threads=args.threads)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ev = result.evaluation
    print()
    print(_table(ev.members, ev.mean, seeds))
    print(f"\nwrote {out}/metrics.json, epochs.json, scores.parquet and plots/*.png")
    return 0
