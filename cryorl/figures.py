"""Figures drawn off-screen: a matplotlib Figure without pyplot state (safe in threads and without a display), and
an atomic PNG write. Every module that draws (the environment's render, the benchmark report, session pictures,
explanations) makes its figures here."""
from __future__ import annotations

import os

import numpy as np

from cryorl.fileio import atomic_path

__all__ = ["new_figure", "save_figure", "figure_of"]


def new_figure(width: float, height: float, dpi: float = 110, layout: str | None = None):
    """A matplotlib Figure (inches) drawn off-screen (no pyplot state, safe in threads and without a display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def figure_of(drawn):
    """The figure of a Figure, an Axes, or an array of Axes (what the plot functions return)."""
    from matplotlib.figure import Figure

    item = drawn if isinstance(drawn, Figure) or hasattr(drawn, "figure") else np.ravel(drawn)[0]
    while not isinstance(item, Figure):
        item = item.figure
    return item


def save_figure(figure, path: str | os.PathLike, dpi: float | None = None) -> None:
    """Write ``figure`` (a Figure, or the Axes / array of Axes a plot function returned) as PNG at ``dpi``
    (default the figure's), atomically."""
    figure = figure_of(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", bbox_inches="tight", dpi=dpi or figure.dpi)
