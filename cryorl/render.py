"""Maps of a grid: holes placed by atlas tile → square → patch, coloured by CTFMaxRes, with a collection path.

Real CryoRL data give hole positions only within their patch image, so the map is schematic: tiles on a grid of
cells, squares on a grid inside their tile, patches inside their square, holes at their in-patch position.
"""
from __future__ import annotations

import numpy as np

from cryorl.atlas import Atlas, clip_ctf

__all__ = ["map_coordinates", "plot_grid_map", "ctf_colour_scale", "add_ctf_colorbar", "render_rgb", "render_ansi"]


def _rank_within(child: np.ndarray, parent_of_child: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups ``0..k-1`` with parents, each group's rank among its siblings and its number of siblings."""
    order = np.lexsort((np.arange(len(parent_of_child)), parent_of_child))
    counts = np.bincount(parent_of_child)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(parent_of_child), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[parent_of_child[order]]
    return rank, counts[parent_of_child]


def _cell(rank: np.ndarray, siblings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (in a unit cell, 0..1) and size of cell ``rank`` of ``siblings`` cells laid out on a square grid."""
    side = np.ceil(np.sqrt(siblings))
    return (rank % side + 0.5) / side, (rank // side + 0.5) / side, 1.0 / side


def map_coordinates(atlas: Atlas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Schematic map coordinates of every hole (tile cells are 1 unit wide), and each square's cell as rows of
    (centre x, centre y, side). Vectorized over holes."""
    square_tile = np.zeros(atlas.n_squares, dtype=np.int64)
    square_tile[atlas.square] = atlas.tile
    patch_square = np.zeros(atlas.n_patches, dtype=np.int64)
    patch_square[atlas.patch] = atlas.square
    tile_x, tile_y, _ = _cell(np.arange(atlas.n_tiles), np.full(atlas.n_tiles, atlas.n_tiles))
    tile_side = np.ceil(np.sqrt(atlas.n_tiles))
    tile_x, tile_y = tile_x * tile_side, tile_y * tile_side          # one unit per tile
    sx, sy, ssize = _cell(*_rank_within(np.arange(atlas.n_squares), square_tile))
    px, py, psize = _cell(*_rank_within(np.arange(atlas.n_patches), patch_square))
    square_x = tile_x[square_tile] - 0.5 + sx * 0.9 + 0.05
    square_y = tile_y[square_tile] - 0.5 + sy * 0.9 + 0.05
    square_size = ssize * 0.9
    patch_x = square_x[patch_square] + (px - 0.5) * square_size[patch_square]
    patch_y = square_y[patch_square] + (py - 0.5) * square_size[patch_square]
    patch_size = psize * square_size[patch_square] * 0.85
    # holes: in-patch positions scaled to the patch cell
    extent = np.zeros(atlas.n_patches)
    np.maximum.at(extent, atlas.patch, np.maximum(np.abs(atlas.x), np.abs(atlas.y)))
    scale = patch_size / (2.0 * np.maximum(extent, 1e-9))
    x = patch_x[atlas.patch] + atlas.x * scale[atlas.patch]
    y = patch_y[atlas.patch] + atlas.y * scale[atlas.patch]
    return x, y, np.stack([square_x, square_y, square_size], axis=1)


# A colour-blind-safe, perceptually uniform map (no red-green); best CTFMaxRes darkest, so good holes stand out
# against the light square cells.
CTF_CMAP = "viridis"
CTF_LABEL = "CTFMaxRes (Å)"


def ctf_colour_scale(threshold: float):
    """The map's colormap and normalisation for CTFMaxRes: 2 Å to ``2 × threshold + 2`` Å (above: the top colour)."""
    from matplotlib.colors import Normalize

    return CTF_CMAP, Normalize(vmin=2.0, vmax=2 * threshold + 2)


def add_ctf_colorbar(figure, axes, threshold: float):
    """One colour bar for all of ``axes`` (an Axes or a list of them), labelled CTFMaxRes (Å); returns it."""
    from matplotlib.cm import ScalarMappable

    cmap, norm = ctf_colour_scale(threshold)
    return figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.7, extend="max",
                           label=CTF_LABEL)


def plot_grid_map(atlas: Atlas, ax=None, *, visited: np.ndarray | None = None, path: list[int] | None = None,
                  threshold: float = 6.0, coordinates: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  title: str | None = None, colorbar: bool = True):
    """Draw the grid map on ``ax`` (created if None) and return it: squares as grey cells, holes coloured by
    measured CTFMaxRes (viridis: dark = low CTFMaxRes = good; faded where a path is drawn and the hole was not
    exposed), exposed holes as large dots in their own CTFMaxRes colour with a thin black edge, the collection
    path as a black line, the last hole as a white star. ``colorbar=False`` leaves the colour bar to the caller (one per
    figure: :func:`add_ctf_colorbar`)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 6))
    x, y, squares = coordinates if coordinates is not None else map_coordinates(atlas)
    boxes = [Rectangle((cx - side / 2, cy - side / 2), side, side) for cx, cy, side in squares]
    ax.add_collection(PatchCollection(boxes, facecolor="0.93", edgecolor="0.75", linewidth=0.5, zorder=0))
    ctf = clip_ctf(atlas.true_ctf)
    cmap, norm = ctf_colour_scale(threshold)
    size = max(2.0, 3000.0 / max(len(atlas), 1))
    exposed = visited is not None and visited.any()
    ax.scatter(x, y, c=ctf, cmap=cmap, norm=norm, s=size, linewidths=0, alpha=0.35 if exposed else 1.0)
    if path:
        ax.plot(x[path], y[path], color="black", linewidth=0.6, alpha=0.7, zorder=2)
    if exposed:                                         # exposed holes on top of the path, in their own colour
        ax.scatter(x[visited], y[visited], c=ctf[visited], cmap=cmap, norm=norm, s=size * 4, edgecolors="black",
                   linewidths=0.25, zorder=3)
    if path:
        ax.scatter(x[path[-1]], y[path[-1]], marker="*", s=max(size * 8, 60), color="white", edgecolors="black",
                   linewidths=0.6, zorder=4)
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        add_ctf_colorbar(ax.figure, ax, threshold)
    return ax


def render_rgb(atlas: Atlas, visited: np.ndarray, path: list[int], title: str, threshold: float,
               coordinates: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The grid map as an RGB image (H, W, 3) uint8, drawn off-screen."""
    from cryorl.figures import new_figure

    figure = new_figure(5, 5, dpi=96)
    plot_grid_map(atlas, figure.add_subplot(), visited=visited, path=path, threshold=threshold,
                  coordinates=coordinates, title=title)
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def render_ansi(atlas: Atlas, visited: np.ndarray, current: int, elapsed: float, budget: float, good: int,
                threshold: float) -> str:
    """A text summary: time, good exposures, the current hole, and progress per square."""
    per_square = np.bincount(atlas.square, minlength=atlas.n_squares)
    done = np.bincount(atlas.square, weights=visited, minlength=atlas.n_squares).astype(int)
    good_done = np.bincount(atlas.square, weights=visited & atlas.is_good(threshold),
                            minlength=atlas.n_squares).astype(int)
    lines = [f"elapsed {elapsed:.1f}/{budget:g} min | good exposures (<= {threshold:g} A): {good} | "
             f"exposed {int(visited.sum())}/{len(atlas)} holes",
             f"at hole {atlas.names[current]} (square {atlas.square_names[atlas.square[current]]})"]
    for s in np.flatnonzero(done):
        bar = "#" * int(round(10 * done[s] / per_square[s]))
        lines.append(f"  {atlas.square_names[s][-16:]:>16} [{bar:<10}] {done[s]:3d}/{per_square[s]:3d} "
                     f"exposed, {good_done[s]:3d} good")
    return "\n".join(lines) + "\n"
