"""The benchmark report's figures: good exposures over time, CTFMaxRes of what was collected, collection paths.

Every function takes tidy tables (:data:`cryorl.agents.TRAJECTORY_COLUMNS` steps, :func:`cryorl.human.real_clock`
rows) and returns a matplotlib Figure; :func:`save_figure` writes it atomically.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from cryorl.atlas import MAX_FEATURE_CTF, Atlas
from cryorl.fileio import atomic_path

__all__ = ["new_figure", "cumulative_good", "plot_cumulative_good", "plot_ctf_histograms", "plot_paths", "save_figure"]

ORACLE_STYLE = dict(color="black", linewidth=1.2)
HUMAN_COLOR = "0.45"


def new_figure(width: float, height: float, dpi: float = 110):
    """A matplotlib Figure drawn off-screen (no pyplot state, safe in threads and without a display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | os.PathLike, dpi: float | None = None) -> None:
    """Write ``figure`` as PNG (at ``dpi``, default the figure's), atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", bbox_inches="tight", dpi=dpi or figure.dpi)


def cumulative_good(minutes: np.ndarray, good: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Good exposures collected by each time on ``grid`` (minutes, sorted), from one episode's steps."""
    counts = np.concatenate([[0], np.cumsum(good)])
    return counts[np.searchsorted(minutes, grid, side="right")]


def _episode_curves(steps: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """(episodes, len(grid)) cumulative good exposures of every episode in ``steps`` (one agent, one budget)."""
    curves = [cumulative_good(episode["elapsed"].to_numpy(), episode["good"].to_numpy(bool), grid)
              for _, episode in steps[steps["step"] > 0].groupby("episode", sort=True)]
    return np.array(curves, dtype=np.float64).reshape(-1, len(grid))


def plot_cumulative_good(steps: pd.DataFrame, budget: float, humans: list[str] = (),
                         real_clock: pd.DataFrame | None = None, clock: str = "active_minutes"):
    """Mean cumulative good exposures vs minutes of each agent at ``budget`` (shaded: ± one std over episodes);
    the human traces replayed under the cost model (dashed; a band from min to max when there are many) and on
    their own clock (dotted); the oracle in black."""
    figure = new_figure(7.5, 4.6)
    ax = figure.add_subplot()
    grid = np.linspace(0.0, budget, 241)
    at_budget = steps[steps["budget"] == budget]
    for agent, frame in at_budget.groupby("agent", sort=False):
        if agent in humans:
            continue
        curves = _episode_curves(frame, grid)
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        style = ORACLE_STYLE if agent == "oracle" else {}
        (line,) = ax.plot(grid, mean, label=agent, **style)
        ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.12, linewidth=0)
    replays = [_episode_curves(at_budget[at_budget["agent"] == h], grid) for h in humans]
    replays = [c[0] for c in replays if len(c)]
    if len(replays) == 1:
        ax.plot(grid, replays[0], color=HUMAN_COLOR, linestyle="--", label=f"{humans[0]} (cost model)")
    elif replays:
        stack = np.array(replays)
        ax.fill_between(grid, stack.min(axis=0), stack.max(axis=0), color=HUMAN_COLOR, alpha=0.2, linewidth=0)
        ax.plot(grid, np.median(stack, axis=0), color=HUMAN_COLOR, linestyle="--",
                label=f"{len(replays)} human traces, median and range (cost model)")
    if real_clock is not None and len(real_clock):
        curves = []
        for _, trace in real_clock.groupby("trace", sort=False):
            curves.append(cumulative_good(trace[clock].to_numpy()[1:], trace["good"].to_numpy(bool)[1:], grid))
        label = "own clock" if clock == "minutes" else "own clock, pauses cut"
        if len(curves) == 1:
            ax.plot(grid, curves[0], color=HUMAN_COLOR, linestyle=":", linewidth=1.6,
                    label=f"{real_clock['trace'].iloc[0]} ({label})")
        else:
            ax.plot(grid, np.median(curves, axis=0), color=HUMAN_COLOR, linestyle=":", linewidth=1.6,
                    label=f"human traces, median ({label})")
    ax.set_xlim(0, budget)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("minutes")
    ax.set_ylabel("good exposures (cumulative)")
    ax.set_title(f"Good exposures over a {budget:g}-minute budget", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    return figure


def plot_ctf_histograms(steps: pd.DataFrame, budget: float, threshold: float, humans: list[str] = ()):
    """One panel per agent: the CTFMaxRes of every exposure it took at ``budget`` (all episodes, normalised);
    several human traces share one panel."""
    at_budget = steps[(steps["budget"] == budget) & (steps["step"] > 0)]
    if len(humans) > 1:
        pooled = f"{len(humans)} human traces"
        at_budget = at_budget.assign(agent=at_budget["agent"].where(~at_budget["agent"].isin(humans), pooled))
    agents = list(dict.fromkeys(at_budget["agent"]))
    columns = min(4, max(len(agents), 1))
    rows = int(np.ceil(len(agents) / columns)) or 1
    figure = new_figure(2.6 * columns, 2.1 * rows)
    bins = np.linspace(0.0, MAX_FEATURE_CTF, 41)
    for k, agent in enumerate(agents):
        ax = figure.add_subplot(rows, columns, k + 1)
        ctf = np.minimum(np.nan_to_num(at_budget.loc[at_budget["agent"] == agent, "ctf"].to_numpy(float),
                                       nan=MAX_FEATURE_CTF), MAX_FEATURE_CTF)
        ax.hist(ctf, bins=bins, density=True, color="tab:green" if agent != "oracle" else "0.3", alpha=0.8)
        ax.axvline(threshold, color="tab:red", linewidth=0.8)
        share = float((ctf <= threshold).mean()) if ctf.size else float("nan")
        ax.set_title(f"{agent}: {100 * share:.0f}% ≤ {threshold:g} Å", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        if k >= len(agents) - columns:
            ax.set_xlabel(f"CTFMaxRes (Å; {MAX_FEATURE_CTF:g} = fit failed or worse)", fontsize=7)
    figure.suptitle(f"CTFMaxRes of the exposures collected in {budget:g} minutes", fontsize=10)
    figure.tight_layout()
    return figure


def plot_paths(atlas: Atlas, steps: pd.DataFrame, budget: float, threshold: float, episode: int = 0,
               humans: list[str] = ()):
    """One grid map per agent with the path of episode ``episode`` at ``budget``; of the human traces, the first
    one's replay."""
    from cryorl.render import map_coordinates, plot_grid_map

    at_budget = steps[(steps["budget"] == budget) & (steps["episode"] == episode)]
    at_budget = at_budget[~at_budget["agent"].isin(list(humans)[1:])]
    agents = list(dict.fromkeys(at_budget["agent"]))
    columns = min(3, max(len(agents), 1))
    rows = int(np.ceil(len(agents) / columns)) or 1
    figure = new_figure(4.2 * columns, 3.9 * rows, dpi=80)
    coordinates = map_coordinates(atlas)
    index = {name: i for i, name in enumerate(atlas.names)}
    for k, agent in enumerate(agents):
        path = [index[h] for h in at_budget.loc[at_budget["agent"] == agent, "hole"]]
        visited = np.zeros(len(atlas), dtype=bool)
        visited[path] = True
        good = int(at_budget.loc[at_budget["agent"] == agent, "good"].sum())
        plot_grid_map(atlas, figure.add_subplot(rows, columns, k + 1), visited=visited, path=path,
                      threshold=threshold, coordinates=coordinates,
                      title=f"{agent}: {good} good of {len(path) - 1} exposures")
    figure.suptitle(f"Collection paths, {budget:g}-minute budget (episode {episode}; ★ = last hole)", fontsize=10)
    figure.tight_layout()
    return figure
