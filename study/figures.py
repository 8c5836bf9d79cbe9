"""Writing matplotlib figures (no torch here: the report imports this). The backend is the
entry point's choice (``study.environment``: Agg, files only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Lay out, write as PNG and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
