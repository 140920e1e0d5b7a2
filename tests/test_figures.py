"""Figures as a scientist reads them: drawn from a real (small) benchmark and the committed sample session, and
checked on the matplotlib objects the plot functions return.

The benchmark: 300 simulated holes, random and greedy-local (and the oracle), 2 starts at a 60-minute budget, three
simulated operators and one trace named as a real operator's ("human operator", its holes in acquisition order).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cryorl.figures import save_figure
from cryorl.human import HumanTrace, simulate_operator
from cryorl.images.look import NO_PIXEL_SIZE, look_at_session, plot_atlas, plot_crops, plot_square_holes
from cryorl.render import plot_grid_map
from cryorl.reporting.benchmark import run_benchmark
from cryorl.reporting.plots import plot_ctf_histograms, plot_cumulative_good, plot_paths
from cryorl.synth import GridSpec, simulate_atlas

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples" / "session"
BUDGET = 60.0
THRESHOLD = 6.0
# perceptually uniform maps readable with red-green colour blindness
COLOUR_BLIND_SAFE = {"viridis", "viridis_r", "cividis", "cividis_r", "magma", "magma_r", "inferno", "inferno_r",
                     "plasma", "plasma_r"}


@pytest.fixture(scope="module")
def result():
    atlas = simulate_atlas(0, GridSpec.with_holes(300))
    traces = [simulate_operator(atlas, seed, name=f"simulated operator {seed}") for seed in range(3)]
    traces.append(HumanTrace("human operator", tuple(atlas.names[:25]), np.arange(25) * 2.5))
    return run_benchmark(atlas, agents=["random", "greedy-local"], traces=traces, episodes=2, budgets=(BUDGET,),
                         progress=False)


def _colorbars(figure):
    return [ax for ax in figure.axes if getattr(ax, "_colorbar", None) is not None]


def _scale_bars(ax):
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    return [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]


def test_cumulative_good_legend_names_simulated_operators_and_explains_bands(result, tmp_path):
    ax = plot_cumulative_good(result.steps, BUDGET, result.humans, result.real_clock)
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    agents = tuple(result.agents)
    human_entries = [t for t in texts if not t.startswith(agents)]
    # the three simulated operators are one group, called simulated; the real-named trace is never pooled with them
    simulated = [t for t in human_entries if "simulated operators (3)" in t]
    assert len(simulated) == 3                       # range, median (cost model), median (own clock)
    assert [t for t in human_entries if t not in simulated] == ["human operator (cost model)",
                                                                "human operator (own clock, pauses cut)"]
    # every shaded band is explained: the agents' in the legend title, the operators' range by its own entry
    assert "±1 std" in legend.get_title().get_text() and "2 starts" in legend.get_title().get_text()
    bands = [c for c in ax.collections if len(c.get_paths())]
    labelled = [c for c in bands if not c.get_label().startswith("_")]
    assert len(bands) == len(agents) + 1 and [c.get_label() for c in labelled] == [
        "simulated operators (3): min-max range (cost model)"]
    save_figure(ax, tmp_path / "cumulative.png")
    assert (tmp_path / "cumulative.png").stat().st_size > 10_000


def test_ctf_histograms_counts_on_one_scale_with_the_threshold_labelled(result):
    axes = plot_ctf_histograms(result.steps, BUDGET, THRESHOLD, result.humans)
    titles = [ax.get_title() for ax in axes]
    assert [t.split(":")[0] for t in titles] == ["random", "greedy-local", "oracle", "simulated operators (3)",
                                                 "human operator"]
    assert all(axes[0].get_shared_y_axes().joined(axes[0], ax) for ax in axes[1:])
    assert "exposures per episode" in axes[0].get_ylabel()
    steps = result.steps[(result.steps["budget"] == BUDGET) & (result.steps["step"] > 0)]
    for ax, name in ((axes[0], "random"), (axes[2], "oracle")):       # bar heights are counts per episode
        heights = sum(p.get_height() for p in ax.patches)
        assert heights == pytest.approx((steps["agent"] == name).sum() / 2)
    simulated = steps["agent"].str.startswith("simulated")
    assert sum(p.get_height() for p in axes[3].patches) == pytest.approx(simulated.sum() / 3)
    for ax in axes:
        assert any(line.get_xdata()[0] == THRESHOLD for line in ax.get_lines())
        assert any(f"≤ {THRESHOLD:g} Å good" in text.get_text() for text in ax.texts)


def test_paths_one_colour_bar_colour_blind_safe(result):
    axes = plot_paths(result.atlas, result.steps, BUDGET, THRESHOLD, humans=result.humans)
    figure = axes[0].figure
    titles = [ax.get_title() for ax in axes]
    assert len(axes) == 5 and any("simulated operator 0" in t and "1 of 3 simulated operators" in t for t in titles)
    (colorbar,) = _colorbars(figure)
    assert colorbar.get_ylabel() == "CTFMaxRes (Å)"
    assert len(figure.axes) == len(axes) + 1
    maps = [c for ax in axes for c in ax.collections if c.get_array() is not None]
    assert maps and {c.get_cmap().name for c in maps} <= COLOUR_BLIND_SAFE
    assert colorbar._colorbar.cmap.name in COLOUR_BLIND_SAFE


def test_env_map_one_colour_bar_colour_blind_safe(result):
    """plot_grid_map is what the environment's rgb_array render draws."""
    from cryorl.figures import new_figure

    visited = np.zeros(len(result.atlas), dtype=bool)
    visited[:3] = True
    ax = plot_grid_map(result.atlas, new_figure(5, 5).add_subplot(), visited=visited, path=[0, 1, 2],
                       threshold=THRESHOLD)
    (colorbar,) = _colorbars(ax.figure)
    assert colorbar.get_ylabel() == "CTFMaxRes (Å)"
    assert {c.get_cmap().name for c in ax.collections if c.get_array() is not None} <= COLOUR_BLIND_SAFE


def test_look_pngs_at_100_dpi_with_true_scale_bars(tmp_path):
    for path in look_at_session(SAMPLES, tmp_path):
        dpi = Image.open(path).info["dpi"]
        assert min(dpi) >= 100, (path.name, dpi)
    square = sorted((SAMPLES / "squares").glob("*.mrc"))[0]
    pixel_um = {"atlas": 1.0, "square": 0.125, "crops": 0.02}            # the sample MRC headers' pixel sizes
    for kind, axes in (("atlas", plot_atlas(SAMPLES)), ("square", plot_square_holes(square, 1.0, 2.0)),
                       ("crops", plot_crops(SAMPLES))):
        for ax in axes:
            (bar,) = _scale_bars(ax)
            label = bar.txt_label.get_text()
            assert label.endswith(" µm")
            (rectangle,) = bar.size_bar.get_children()
            assert rectangle.get_width() * pixel_um[kind] == pytest.approx(float(label.split()[0]))


def test_look_says_when_the_pixel_size_is_unknown(tmp_path):
    import mrcfile

    (tmp_path / "crops").mkdir()
    with mrcfile.new(tmp_path / "crops" / "sim_00001gr_00001sq_v01_00001hl_v01.mrc") as mrc:
        mrc.set_data(np.random.default_rng(0).normal(size=(2, 40, 40)).astype(np.float32))   # voxel size 0
    axes = plot_crops(tmp_path)
    assert len(axes) == 2
    for ax in axes:
        assert not _scale_bars(ax) and [t.get_text() for t in ax.texts] == [NO_PIXEL_SIZE]


def test_identical_agents_are_drawn_once_under_a_joint_label(result):
    """Two agents with the same trajectories (as the shipped dqn and ppo reproduce the planner) are one line named
    by both, instead of one line hiding the other while the legend lists both."""
    steps = result.steps
    twin = steps[steps["agent"] == "greedy-local"].assign(agent="greedy-twin")
    ax = plot_cumulative_good(pd.concat([steps, twin], ignore_index=True), BUDGET, result.humans, result.real_clock)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "greedy-local = greedy-twin (identical) (mean)" in texts
    assert not any(t.startswith("greedy-twin") for t in texts) and "random (mean)" in texts
    agent_lines = [line for line in ax.get_lines() if line.get_label().startswith(("random", "greedy", "oracle"))]
    assert len(agent_lines) == 3


def test_paths_show_the_ctf_colour_of_exposed_holes_and_a_path_of_another_colour(result):
    from matplotlib.colors import to_rgba

    axes = plot_paths(result.atlas, result.steps, BUDGET, THRESHOLD, humans=result.humans)
    greedy = next(ax for ax in axes if ax.get_title().startswith("greedy-local"))
    exposed = max((c for c in greedy.collections if c.get_array() is not None), key=lambda c: c.get_zorder())
    greedy.figure.canvas.draw()                               # face colours are mapped at draw time
    cmap, norm = exposed.get_cmap(), exposed.norm
    steps = result.steps[(result.steps["agent"] == "greedy-local") & (result.steps["episode"] == 0)
                         & (result.steps["budget"] == BUDGET)]
    ctf = np.minimum(result.atlas.true_ctf[[result.atlas.index(h) for h in steps["hole"]]], 20.0)
    faces = exposed.get_facecolors()
    assert len(faces) == len(set(steps["hole"]))
    assert np.allclose(sorted(map(tuple, faces)), sorted(map(tuple, cmap(norm(ctf)))), atol=1e-6)
    red = np.array(to_rgba("tab:red"))
    assert not np.allclose(exposed.get_edgecolors()[0], red)
    (path,) = [line for line in greedy.get_lines() if len(line.get_xdata()) > 1]
    assert not np.allclose(to_rgba(path.get_color()), red)
    assert greedy.figure.get_figwidth() >= 5.6 * 3           # panels wide enough to read
