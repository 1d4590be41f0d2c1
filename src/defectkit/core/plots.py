"""Figures written as PNG files: one set-up (headless backend, atomic save, closed after)."""
from __future__ import annotations

import contextlib
from pathlib import Path

from defectkit.core.fileio import save_figure_atomic


@contextlib.contextmanager
def figure(path: str | Path, *subplots, dpi: int = 90, **kw):
    """`with figure(path, 1, 2, figsize=(10, 3.5)) as (fig, axes):` draw; saved on exit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(*subplots, **kw)
    try:
        yield fig, axes
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=dpi)
    finally:
        plt.close(fig)
