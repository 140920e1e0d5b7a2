"""The benchmark report's figures: good exposures over time, CTFMaxRes of what was collected, collection paths.

Every plot function takes tidy tables (:data:`cryorl.agents.TRAJECTORY_COLUMNS` steps, :func:`cryorl.human.real_clock`
rows), draws on the ``ax`` (or ``axes``) it is given (a new figure when None) and returns them;
:func:`save_figure` writes their figure atomically.

Human traces whose name says "simulated" (``cryorl.human.simulate_operator``) are drawn and labelled apart from
real operators' traces, so that no legend passes a simulated operator off as a human one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cryorl.atlas import MAX_FEATURE_CTF, Atlas, clip_ctf
from cryorl.figures import figure_of, new_figure

__all__ = ["is_simulated", "human_groups", "cumulative_good", "identical_groups",
           "plot_cumulative_good",
           "plot_ctf_histograms", "plot_paths"]

ORACLE_STYLE = dict(color="black", linewidth=1.2)
HUMAN_COLOR = "darkgoldenrod"       # real operators' traces
SIMULATED_COLOR = "0.45"            # simulated operators
CTF_BIN_ANGSTROM = 0.5


def is_simulated(trace: str) -> bool:
    """Whether a human trace is a simulated operator (its name says so, as ``cryorl benchmark`` names them)."""
    return "simulated" in trace.lower()


def human_groups(humans) -> list[tuple[str, list[str]]]:
    """Human traces as (label, names) groups: real traces and simulated operators never share a group; a lone trace
    keeps its own name, several become "human traces (n)" / "simulated operators (n)"."""
    groups = []
    for simulated, plural in ((False, "human traces"), (True, "simulated operators")):
        names = [h for h in humans if is_simulated(h) == simulated]
        if names:
            groups.append((names[0] if len(names) == 1 else f"{plural} ({len(names)})", names))
    return groups


def _group_color(names: list[str]) -> str:
    return SIMULATED_COLOR if is_simulated(names[0]) else HUMAN_COLOR


def cumulative_good(minutes: np.ndarray, good: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Good exposures collected by each time on ``grid`` (minutes, sorted), from one episode's steps."""
    counts = np.concatenate([[0], np.cumsum(good)])
    return counts[np.searchsorted(minutes, grid, side="right")]


def _episode_curves(steps: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """(episodes, len(grid)) cumulative good exposures of every episode in ``steps`` (one agent, one budget)."""
    curves = [cumulative_good(episode["elapsed"].to_numpy(), episode["good"].to_numpy(bool), grid)
              for _, episode in steps[steps["step"] > 0].groupby("episode", sort=True)]
    return np.array(curves, dtype=np.float64).reshape(-1, len(grid))


def identical_groups(curves: dict[str, np.ndarray]) -> list[tuple[list[str], np.ndarray]]:
    """Agents whose curves are equal in every episode, grouped (in first-seen order), so that a plot draws each
    distinct series once under a joint label instead of hiding all but the last drawn."""
    groups: list[tuple[list[str], np.ndarray]] = []
    for agent, values in curves.items():
        for names, seen in groups:
            if seen.shape == values.shape and np.array_equal(seen, values):
                names.append(agent)
                break
        else:
            groups.append(([agent], values))
    return groups


def plot_cumulative_good(steps: pd.DataFrame, budget: float, humans: list[str] = (),
                         real_clock: pd.DataFrame | None = None, clock: str = "active_minutes", ax=None):
    """Mean cumulative good exposures vs minutes of each agent at ``budget`` (shaded: ± one std over its starts,
    said in the legend's title); each group of human traces (real / simulated) replayed under the cost model
    (dashed; its median and a shaded min-max range when there are several) and on its own clock (dotted); the oracle
    in black. Draws on ``ax`` (a new figure when None) and returns it."""
    if ax is None:
        ax = new_figure(7.5, 4.6).add_subplot()
    grid = np.linspace(0.0, budget, 241)
    at_budget = steps[steps["budget"] == budget]
    starts = set()
    for agents, curves in identical_groups({agent: _episode_curves(frame, grid) for agent, frame
                                            in at_budget.groupby("agent", sort=False) if agent not in humans}):
        starts.add(len(curves))
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        style = ORACLE_STYLE if "oracle" in agents else {}
        name = " = ".join(agents) + (" (identical)" if len(agents) > 1 else "")
        (line,) = ax.plot(grid, mean, label=f"{name} (mean)" if len(curves) > 1 else name, **style)
        ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.12, linewidth=0)
    for label, names in human_groups(humans):
        colour = _group_color(names)
        replays = [_episode_curves(at_budget[at_budget["agent"] == h], grid) for h in names]
        replays = [c[0] for c in replays if len(c)]
        if len(replays) == 1:
            ax.plot(grid, replays[0], color=colour, linestyle="--", label=f"{label} (cost model)")
        elif replays:
            stack = np.array(replays)
            ax.fill_between(grid, stack.min(axis=0), stack.max(axis=0), color=colour, alpha=0.2, linewidth=0,
                            label=f"{label}: min-max range (cost model)")
            ax.plot(grid, np.median(stack, axis=0), color=colour, linestyle="--",
                    label=f"{label}: median (cost model)")
        own = real_clock[real_clock["trace"].isin(names)] if real_clock is not None else ()
        if len(own):
            curves = [cumulative_good(trace[clock].to_numpy()[1:], trace["good"].to_numpy(bool)[1:], grid)
                      for _, trace in own.groupby("trace", sort=False)]
            kind = "own clock" if clock == "minutes" else "own clock, pauses cut"
            ax.plot(grid, np.median(curves, axis=0), color=colour, linestyle=":", linewidth=1.6,
                    label=f"{label} ({kind})" if len(curves) == 1 else f"{label}: median ({kind})")
    ax.set_xlim(0, budget)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("minutes")
    ax.set_ylabel("good exposures (cumulative)")
    ax.set_title(f"Good exposures over a {budget:g}-minute budget", fontsize=10)
    ax.grid(alpha=0.3)
    note = None
    if max(starts, default=0) > 1:
        count = f"{min(starts)}" if len(starts) == 1 else f"{min(starts)}-{max(starts)}"
        note = f"agents: mean over {count} starts, shaded ±1 std"
    ax.legend(fontsize=7, loc="upper left", frameon=False, title=note, title_fontsize=7, alignment="left")
    return ax


def _grid_columns(axes: np.ndarray) -> int:
    """Columns of the subplot grid ``axes`` sit on (1 when they are not on one)."""
    spec = axes[0].get_subplotspec() if hasattr(axes[0], "get_subplotspec") else None
    return spec.get_gridspec().ncols if spec is not None else 1


def plot_ctf_histograms(steps: pd.DataFrame, budget: float, threshold: float, humans: list[str] = (), axes=None):
    """One panel per agent: the CTFMaxRes of every exposure it took at ``budget``, as exposures per episode in
    0.5-Å bins on one y scale shared by all panels, with the good threshold marked and labelled; the traces of
    each human group (real / simulated) share one panel. Draws on ``axes`` (one per panel; a new figure when None)
    and returns the panels' axes."""
    at_budget = steps[(steps["budget"] == budget) & (steps["step"] > 0)]
    panel = at_budget["agent"]
    for label, names in human_groups(humans):
        panel = panel.where(~at_budget["agent"].isin(names), label)
    at_budget = at_budget.assign(panel=panel)
    panels = list(dict.fromkeys(at_budget["panel"]))
    colours = {label: _group_color(names) for label, names in human_groups(humans)} | {"oracle": "0.3"}
    if axes is None:
        columns = min(4, max(len(panels), 1))
        rows = int(np.ceil(len(panels) / columns)) or 1
        figure = new_figure(2.7 * columns, 2.3 * rows, layout="constrained")
        axes = figure.subplots(rows, columns, sharey=True, squeeze=False).ravel()
        for extra in axes[max(len(panels), 1):]:
            extra.remove()
        axes = axes[: max(len(panels), 1)]
        figure.suptitle(f"CTFMaxRes of the exposures collected in {budget:g} minutes (all episodes pooled)",
                        fontsize=10)
    else:
        axes = np.ravel(axes)
        if len(axes) < len(panels):
            raise ValueError(f"plot_ctf_histograms needs {len(panels)} axes (one per panel: {panels}), "
                             f"got {len(axes)}")
        for ax in axes[1:]:
            if not axes[0].get_shared_y_axes().joined(axes[0], ax):
                ax.sharey(axes[0])
    columns = _grid_columns(axes)
    bins = np.arange(0.0, MAX_FEATURE_CTF + CTF_BIN_ANGSTROM / 2, CTF_BIN_ANGSTROM)
    for k, name in enumerate(panels):
        ax = axes[k]
        frame = at_budget[at_budget["panel"] == name]
        episodes = frame.groupby(["agent", "episode"]).ngroups
        ctf = clip_ctf(frame["ctf"].to_numpy(float))
        ax.hist(ctf, bins=bins, weights=np.full(ctf.size, 1.0 / episodes), color=colours.get(name, "tab:green"),
                alpha=0.8)
        ax.axvline(threshold, color="tab:red", linewidth=0.8)
        ax.text(threshold, 0.97, f" ← ≤ {threshold:g} Å good", transform=ax.get_xaxis_transform(), ha="left",
                va="top", fontsize=6, color="tab:red")
        share = float((ctf <= threshold).mean()) if ctf.size else float("nan")
        ax.set_title(f"{name}: {100 * share:.0f}% ≤ {threshold:g} Å\n{ctf.size / episodes:.0f} exposures per "
                     f"episode ({episodes} episode{'s' * (episodes != 1)})", fontsize=7)
        ax.set_xlim(0, MAX_FEATURE_CTF + CTF_BIN_ANGSTROM)
        ax.tick_params(labelsize=7)
        if k % columns == 0:
            ax.set_ylabel(f"exposures per episode\n(per {CTF_BIN_ANGSTROM:g}-Å bin)", fontsize=7)
        if k >= len(panels) - columns:
            ax.set_xlabel(f"CTFMaxRes (Å; {MAX_FEATURE_CTF:g} = fit failed or worse)", fontsize=7)
    return axes


def plot_paths(atlas: Atlas, steps: pd.DataFrame, budget: float, threshold: float, episode: int = 0,
               humans: list[str] = (), axes=None):
    """One grid map per agent with the path of episode ``episode`` at ``budget``; of each human group (real /
    simulated), the first trace's replay. One CTFMaxRes colour bar (colour-blind-safe) for all maps. Draws on
    ``axes`` (one per map; a new figure when None) and returns the maps' axes."""
    from cryorl.render import add_ctf_colorbar, map_coordinates, plot_grid_map

    groups = {names[0]: names for _, names in human_groups(humans)}
    at_budget = steps[(steps["budget"] == budget) & (steps["episode"] == episode)]
    at_budget = at_budget[~at_budget["agent"].isin([h for h in humans if h not in groups])]
    agents = list(dict.fromkeys(at_budget["agent"]))
    coordinates = map_coordinates(atlas)
    if axes is None:
        columns = min(3, max(len(agents), 1))
        rows = int(np.ceil(len(agents) / columns)) or 1
        squares = coordinates[2]
        low, high = squares[:, :2] - squares[:, 2:] / 2, squares[:, :2] + squares[:, 2:] / 2
        width, height = high.max(axis=0) - low.min(axis=0)
        figure = new_figure(5.6 * columns + 0.8, (5.4 * height / width + 0.6) * rows + 0.3, dpi=100,
                            layout="constrained")
        axes = np.array([figure.add_subplot(rows, columns, k + 1) for k in range(max(len(agents), 1))])
        figure.suptitle(f"Collection paths, {budget:g}-minute budget (episode {episode}): black line = path, large "
                        "dots = exposed (coloured by CTFMaxRes), faded = not exposed, white ★ = last hole",
                        fontsize=10)
    else:
        axes = np.ravel(axes)
        if len(axes) < len(agents):
            raise ValueError(f"plot_paths needs {len(agents)} axes (one per map: {agents}), got {len(axes)}")
    index = {name: i for i, name in enumerate(atlas.names)}
    for k, agent in enumerate(agents):
        path = [index[h] for h in at_budget.loc[at_budget["agent"] == agent, "hole"]]
        visited = np.zeros(len(atlas), dtype=bool)
        visited[path] = True
        good = int(at_budget.loc[at_budget["agent"] == agent, "good"].sum())
        title = f"{agent}: {good} good of {len(path) - 1} exposures"
        if len(groups.get(agent, ())) > 1:
            title += f"\n(1 of {len(groups[agent])} {'simulated operators' if is_simulated(agent) else 'human traces'})"
        plot_grid_map(atlas, axes[k], visited=visited, path=path, threshold=threshold, coordinates=coordinates,
                      title=title, colorbar=False)
    add_ctf_colorbar(figure_of(axes), list(axes), threshold)
    return axes
