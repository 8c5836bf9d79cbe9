"""PNG plots of one trained ensemble (matplotlib, no display): data vs samples, posterior means
per layer coloured by class, score histograms in- vs out-of-distribution, ROC curves and
learning curves. Every figure's title names the trial's configuration (``TrialConfig.label``);
where one seed stands for the trial it is the first of the trial's seeds, and says so."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA
from sklearn.metrics import roc_curve

from models import LatentVariableModel
from study.core.figures import curve_marker, epoch_axis, save_figure
from study.data import DataBundle
from study.spec.config import TrialConfig
from study.trial.evaluate import Evaluation
from study.trial.records import TrainState


def _titled(fig: plt.Figure, what: str, config: str, path: Path) -> Path:
    """Title ``what`` over the configuration (wrapped), then save."""
    import textwrap

    width = max(40, int(fig.get_figwidth() * 13))  # characters of 9 pt text the figure holds
    fig.suptitle("\n".join(textwrap.wrap(what, width) + textwrap.wrap(config, width)),
                 fontsize=9)
    return save_figure(fig, path)


def _2d(a: np.ndarray) -> np.ndarray:
    if a.shape[1] == 1:
        return np.c_[a, np.zeros(len(a))]
    return a if a.shape[1] == 2 else PCA(2).fit_transform(a)


@torch.no_grad()
def data_vs_samples(model: LatentVariableModel, data: DataBundle, path: Path, config: str,
                    seed: int) -> Path:
    gen = model.sample(2000)
    data = data.member(0)
    if data.x_dim == 2:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.8), sharex=True, sharey=True)
        axes[0].scatter(*data.x_test[:2000].T, s=2, c=data.y_test[:2000], cmap="coolwarm")
        axes[0].set_title("test data (colour: class)")
        axes[1].scatter(*gen.x_mean[0].cpu().numpy().T, s=2, color="k")
        axes[1].set_title("decoder means of prior samples")
        axes[2].scatter(*gen.x[0].cpu().numpy().T, s=2, color="k")
        axes[2].set_title("samples x ~ p(x|z)")
        for ax in axes:
            ax.set_xlabel("x1")
        axes[0].set_ylabel("x2")
        return _titled(fig, f"data and model samples, seed {seed}", config, path)
    side = int(round(data.x_dim**0.5))
    imgs = gen.x_mean[0, :64].cpu().numpy().reshape(8, 8, side, side)
    fig, ax = plt.subplots(figsize=(6, 6.6))
    ax.imshow(imgs.transpose(0, 2, 1, 3).reshape(8 * side, 8 * side), cmap="gray")
    ax.set_axis_off()
    return _titled(fig, f"decoder means of 64 prior samples, seed {seed}", config, path)


@torch.no_grad()
def posterior_means(model: LatentVariableModel, data: DataBundle, path: Path, config: str,
                    seed: int, n: int = 2000) -> Path:
    data = data.member(0)
    x = torch.from_numpy(data.x_test[:n]).to(model.device)
    n, labels = len(x), np.asarray(data.y_test[:n])
    means = model.posterior_means(x)
    fig, axes = plt.subplots(1, len(means), figsize=(4.3 * len(means), 4.8), squeeze=False)
    classes = sorted(set(labels.tolist()))
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, name, z in zip(axes[0], model.layer_names, means):
        points = _2d(z[0].cpu().numpy())
        for i, c in enumerate(classes):  # one distinct colour per class, named in the legend
            ax.scatter(*points[labels == c].T, s=2, color=colours(i % colours.N), label=str(c))
        pca = z.shape[-1] > 2
        ax.set_title(f"{name}: posterior means" + (" (PCA)" if pca else ""))
        ax.set_xlabel("PC 1" if pca else f"{name}[0]")
        ax.set_ylabel("PC 2" if pca else (f"{name}[1]" if z.shape[-1] > 1 else ""))
        ax.xaxis.set_major_locator(MaxNLocator(4))
    if len(classes) <= 20:
        axes[0][-1].legend(title="class", fontsize=7, markerscale=4, loc="best")
    return _titled(fig, f"posterior means of {n} test points by layer, seed {seed}", config,
                   path)


def score_histograms(ev: Evaluation, path: Path, config: str, score: str = "neg_elbo") -> Path:
    s = ev.scores
    pick = (s["seed"] == s["seed"][0]) & (s["score"] == score)
    sets = list(dict.fromkeys(s["set"][pick]))
    fig, ax = plt.subplots(figsize=(7, 4.3))
    values = {k: -s["value"][pick & (s["set"] == k)] for k in sets}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    lo, hi = np.percentile(finite, [0.5, 100]) if finite.size else (0, 1)
    for k, v in values.items():
        ax.hist(np.clip(v, lo, hi), bins=80, range=(lo, hi), histtype="step", density=True, label=k)
    ax.set_xlabel("ELBO (nats per point)" if score == "neg_elbo" else f"-{score}")
    ax.set_ylabel("density")
    ax.legend(title="data set", fontsize=8)
    return _titled(fig, f"ELBO of test and OOD points, seed {int(s['seed'][0])}", config, path)


def roc_curves(ev: Evaluation, path: Path, config: str) -> Path:
    """One panel per OOD score (at most 3 a row), one colour per OOD set, one line per seed."""
    s = ev.scores
    seeds = list(dict.fromkeys(s["seed"].tolist()))
    sets = [k for k in dict.fromkeys(s["set"]) if k != "test"]
    scores = list(dict.fromkeys(s["score"]))
    cols = min(3, len(scores))
    rows = -(-len(scores) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 4.3 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, score in zip(axes.flat, scores):
        for j, k in enumerate(sets):
            for i, seed in enumerate(seeds):
                m = (s["seed"] == seed) & (s["score"] == score)
                inn, out = s["value"][m & (s["set"] == "test")], s["value"][m & (s["set"] == k)]
                y = np.r_[np.zeros(len(inn)), np.ones(len(out))]
                v = np.clip(np.nan_to_num(np.r_[inn, out], nan=0.0), -1e300, 1e300)
                fpr, tpr, _ = roc_curve(y, v)
                ax.plot(fpr, tpr, color=colours(j % 10), lw=0.8, alpha=0.7,
                        label=k if i == 0 else None)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"ROC, score {score}", fontsize=9)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(title="OOD set", fontsize=7)
    for ax in list(axes.flat)[len(scores):]:
        ax.set_axis_off()
    return _titled(fig, f"ROC of each OOD score (OOD = positive), every seed: "
                   f"{', '.join(map(str, seeds))}", config, path)


def learning_curves(state: TrainState, path: Path, config: str, seeds: list[int]) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    epochs = [h.epoch for h in state.history]
    for key, ax in (("train_bound", axes[0]), ("val_bound", axes[1])):
        vals = np.array([h.members[key] for h in state.history])
        for e in range(vals.shape[1]):
            ax.plot(epochs, vals[:, e], lw=1, marker=curve_marker(len(epochs)), ms=3,
                    label=f"seed {seeds[e]}")
        finite = vals[np.isfinite(vals)]
        if finite.size:
            ax.set_ylim(np.percentile(finite, 5) - 0.5, finite.max() + 0.2)
        ax.set_title({"train_bound": "training bound", "val_bound": "validation bound"}[key])
        epoch_axis(ax, max(epochs, default=0))
        ax.set_ylabel("nats per point")
    axes[0].legend(fontsize=8)
    return _titled(fig, "learning curves: the k-sample bound being trained, per seed", config,
                   path)


def all_plots(model: LatentVariableModel, data: DataBundle, ev: Evaluation, state: TrainState,
              folder: Path, cfg: TrialConfig) -> list[Path]:
    """Write every plot of the trial of ``cfg`` into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    config, seeds = cfg.label(), list(cfg.seeds)
    return [
        data_vs_samples(model, data, folder / "samples.png", config, seeds[0]),
        posterior_means(model, data, folder / "posterior_means.png", config, seeds[0]),
        score_histograms(ev, folder / "elbo_histogram.png", config),
        roc_curves(ev, folder / "roc.png", config),
        learning_curves(state, folder / "learning_curves.png", config, seeds),
    ]
