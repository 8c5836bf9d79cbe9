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
