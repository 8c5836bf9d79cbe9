"""Writing matplotlib figures (no torch here: the report imports this). The backend is the
entry point's choice (``study.core.environment``: Agg, files only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from study.core.io import atomic_path


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Lay out (tightly, unless the figure has a layout engine of its own, e.g. constrained
    layout that keeps a suptitle clear of the panels), write as PNG (atomically: a full disk
    leaves the previous file whole, never an empty one) and close ``fig``; returns ``path``."""
    try:
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def epoch_axis(ax: plt.Axes, last_epoch: int) -> None:
    """An x axis of epochs: whole-number ticks, and for a short run (10 epochs or fewer, a
    smoke test) every epoch ticked with half an epoch of margin, so one or two epochs do not
    get fractional ticks around a lone point."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    if 0 < last_epoch <= 10:
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.set_xticks(range(1, last_epoch + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def curve_marker(points: int) -> str | None:
    """A marker for a curve of few points (a line through one point draws nothing)."""
    return "o" if points <= 20 else None
