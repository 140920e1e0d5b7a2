"""A seeded simulator of grid surveys, calibrated to the real Aldolase session.

Hierarchy: atlas tiles hold one or two squares, squares about six patches, and a patch is the block of up to 25
holes around a targeted point (median 20); one patch in ten is cut short by the square's edge or a grid bar.

The sample model is physical at its core: every hole has an ice thickness (nm), built from a per-square level,
a smooth gradient across each square, a per-patch offset and per-hole noise; a third of the squares are too
thick (CTFMaxRes ≈ 8-11 Å, almost no good holes) and a few are broken (no ice), and one hole in six is filled
with thick ice whatever its patch, so most of the spread of quality lies between holes rather than between
patches. CTFMaxRes is a noisy function of thickness: thin ice (≈ 20-60 nm) gives 3-5 Å, thick ice and empty holes
give poor fits, and about 1 % of fits fail outright (the 100000 Å sentinel of the real files). A hole-image model
sees the thickness through imaging noise, so the *predicted* CTFMaxRes is a noisy, shrunk-to-the-mean version of
the truth, as accurate as the published ResNet-50 on the real training split (MAE ≈ 2.0 Å, r ≈ 0.72:
``prediction_quality="in-sample"``). On a grid it has never seen the regressor does worse (2.55 Å and 0.63), and
that is the default, ``prediction_quality="unseen"``: the image model's predictions degraded to exactly that MAE
and r with errors shared in part by patches and squares (:mod:`cryorl.prediction_quality`); a number is a target
MAE in Å. The truth of a seed is the same at every quality.

``benchmarks/grid_statistics.py`` prints the statistics of simulated and real grids side by side; the table is in
``benchmarks/reports/grid_statistics.md``. The 0.1.0 simulator's grid is the ``simulated-0.1.0`` preset.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from cryorl.atlas import Atlas
from cryorl.leginon import exposure_name
from cryorl.prediction_quality import degraded_values, resolve_quality

__all__ = ["GridSpec", "simulate_hole_table", "simulate_atlas", "ctf_from_thickness", "VALIDATION_GRID_SEEDS",
           "TEST_GRID_SEEDS"]

FIT_FAILURE_SENTINEL = 100000.0

VALIDATION_GRID_SEEDS: tuple[int, ...] = (80001, 80002, 80003)
"""Simulated grids for choosing among models and settings (a training run's held-out evaluation)."""

TEST_GRID_SEEDS: tuple[int, ...] = (90001, 90002, 90003)
"""Simulated grids the benchmarks report on: no fit, tuning or checkpoint selection may use them."""


@dataclass(frozen=True)
class GridSpec:
    """Parameters of a simulated grid. Defaults follow the real Aldolase session: 2,341 holes in 120 patches of
    about 20 holes (median 20, 5-25), 20 squares, 13 atlas tiles; ice, CTFMaxRes and in-sample predictions
    calibrated to its training split (``benchmarks/reports/grid_statistics.md``), predictions at unseen-grid
    quality by default (``prediction_quality``). The 0.1.0 simulator's grid (172 patches of
    about 13 holes, more uniform patches) is the ``simulated-0.1.0`` preset."""

    n_holes: int = 2341
    n_patches: int = 120
    n_squares: int = 20
    n_tiles: int = 13
    min_holes_per_patch: int = 5
    max_holes_per_patch: int = 25
    hole_spacing_um: float = 2.0
    # how evenly the counts split (gamma shapes of the split weights: larger is more even)
    squares_per_tile_shape: float = 8.0
    patches_per_square_shape: float = 5.0
    holes_per_patch_shape: float = 30.0      # most patches hold 16-25 holes
    partial_patch_fraction: float = 0.10     # patches cut short (square edge, grid bar): a uniform share of holes
    # ice thickness model (nm)
    square_thickness_mean_nm: float = 58.0
    square_thickness_sd_nm: float = 19.0
    square_gradient_sd_nm: float = 8.0       # across a square, end to end
    patch_thickness_sd_nm: float = 10.0
    hole_thickness_sd_nm: float = 11.0
    hole_defect_fraction: float = 0.16       # holes filled with thick ice (a meniscus): poor CTF in any square
    hole_defect_nm: float = 132.0            # ice of a filled hole: at least normal(mean, sd)
    hole_defect_sd_nm: float = 22.0
    broken_square_fraction: float = 0.04     # no ice: empty holes, poor CTF fits
    thick_square_fraction: float = 0.37      # too thick: CTFMaxRes about 8-11 Å, almost no good holes
    thick_square_min_nm: float = 102.0       # ice of a thick square: uniform between these
    thick_square_max_nm: float = 113.0
    # measurement and perception noise
    ctf_noise: float = 0.14                  # log-normal sd of the measured CTFMaxRes
    fit_failure_rate: float = 0.01           # ten times more in broken squares
    image_thickness_sd_nm: float = 15.0      # what the low-magnification image misses of the thickness
    image_patch_context: float = 0.0         # share of its patch's median seen thickness in what the image model
                                             # reads for a hole (a regressor that reads the ice around the hole)
    prediction_noise: float = 0.15           # log-normal sd of the regressor's own error
    prediction_shrinkage: float = 0.75       # regression to the mean of a trained regressor
    # how good the predictions are: "unseen" (MAE 2.55 Å, r 0.63), "in-sample" (the image model's), a target MAE,
    # or a range of target MAEs (low, high) drawn uniformly for each grid (training across predictor qualities)
    prediction_quality: str | float | tuple[float, float] = "unseen"

    def __post_init__(self) -> None:
        for key in ("n_holes", "n_patches", "n_squares", "n_tiles", "min_holes_per_patch", "max_holes_per_patch"):
            value = getattr(self, key)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key} must be a positive integer, not {value!r}")
        if not 1 <= self.n_tiles <= self.n_squares <= self.n_patches:
            raise ValueError(f"need 1 ≤ tiles ({self.n_tiles}) ≤ squares ({self.n_squares}) ≤ patches "
                             f"({self.n_patches})")
        for key in ("squares_per_tile_shape", "patches_per_square_shape", "holes_per_patch_shape"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be positive, not {getattr(self, key)!r}")
        for key in ("partial_patch_fraction", "hole_defect_fraction", "broken_square_fraction",
                    "thick_square_fraction", "fit_failure_rate", "image_patch_context"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must be between 0 and 1, not {getattr(self, key)!r}")
        if self.broken_square_fraction + self.thick_square_fraction > 1:
            raise ValueError("broken_square_fraction + thick_square_fraction must be at most 1")
        if not self.thick_square_min_nm <= self.thick_square_max_nm:
            raise ValueError(f"thick_square_min_nm ({self.thick_square_min_nm}) must not exceed thick_square_max_nm "
                             f"({self.thick_square_max_nm})")
        if isinstance(self.prediction_quality, list):           # from a YAML/JSON mapping; the spec stays hashable
            object.__setattr__(self, "prediction_quality", tuple(self.prediction_quality))
        try:
            if isinstance(self.prediction_quality, tuple):
                low, high = _quality_range(self.prediction_quality)
                resolve_quality(low), resolve_quality(high)
            else:
                resolve_quality(self.prediction_quality)
        except ValueError as error:
            raise ValueError(f"prediction_quality: {error}") from None
        lo, hi = self.min_holes_per_patch * self.n_patches, self.max_holes_per_patch * self.n_patches
        if not lo <= self.n_holes <= hi:
            raise ValueError(f"{self.n_holes} holes cannot fill {self.n_patches} patches of "
                             f"{self.min_holes_per_patch}-{self.max_holes_per_patch} holes ({lo}-{hi})")

    @classmethod
    def from_mapping(cls, fields: dict) -> GridSpec:
        """A spec from a mapping of its fields (a preset's or config's ``grid``). A hole count without patch, square
        and tile counts scales the real session's shape (:meth:`with_holes`); unknown keys are errors."""
        fields = dict(fields or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown grid settings {sorted(unknown)}; known: {sorted(known)}")
        if "n_holes" in fields and not {"n_patches", "n_squares", "n_tiles"} & set(fields):
            return cls.with_holes(fields.pop("n_holes"), **fields)
        return cls(**fields)

    @classmethod
    def with_holes(cls, n_holes: int, **overrides) -> GridSpec:
        """A spec of the default grid's shape scaled to ``n_holes`` holes (19.5 holes per patch, 6 patches per
        square, 1.54 squares per tile); the patch count stays within what ``n_holes`` can fill."""
        default = cls()
        low = overrides.get("min_holes_per_patch", default.min_holes_per_patch)
        high = overrides.get("max_holes_per_patch", default.max_holes_per_patch)
        n_patches = max(1, round(n_holes * default.n_patches / default.n_holes))
        n_patches = max(min(n_patches, n_holes // low), -(-n_holes // high), 1)
        n_squares = max(1, round(n_patches * default.n_squares / default.n_patches))
        n_tiles = max(1, round(n_squares * default.n_tiles / default.n_squares))
        return cls(n_holes=n_holes, n_patches=n_patches, n_squares=n_squares, n_tiles=n_tiles, **overrides)


CONTEXT_IMAGE_MODEL = {"image_patch_context": 0.5, "prediction_shrinkage": 1.0}
"""GridSpec fields of an image model that reads half its patch's median thickness, unshrunk: its predictions
cluster by patch and square as the real regressor's do (η² 0.65-0.68 / 0.54-0.56 against 0.58 / 0.48) at the same
in-sample quality. An experiment (``simctx-`` grids of ``benchmarks/unseen.py``), not the default."""


def ctf_from_thickness(thickness_nm: np.ndarray) -> np.ndarray:
    """Noise-free CTFMaxRes (Å) of ice of the given thickness: best (≈ 3 Å) at 20-40 nm, 6 Å near 80 nm, worse
    for thicker ice, and poor for (nearly) empty holes."""
    t = np.asarray(thickness_nm, dtype=np.float64)
    thick = 3.0 * (np.maximum(t - 35.0, 0.0) / 45.0) ** 1.5
    empty = 10.0 * np.clip((18.0 - t) / 18.0, 0.0, 1.0)
    return 3.0 + thick + empty


def _split_counts(total: int, parts: int, low: int, high: int, weights: np.ndarray, rng: np.random.Generator
                  ) -> np.ndarray:
    """``parts`` integers in [low, high] summing to ``total``, roughly proportional to ``weights``."""
    counts = np.clip(np.round(weights / weights.sum() * total), low, high).astype(np.int64)
    while (diff := total - int(counts.sum())) != 0:
        room = np.flatnonzero(counts < high) if diff > 0 else np.flatnonzero(counts > low)
        chosen = rng.choice(room, size=min(abs(diff), room.size), replace=False)
        counts[chosen] += np.sign(diff)
    return counts


@dataclass(frozen=True)
class _Hierarchy:
    """Counts and memberships of a simulated grid: which tile each square is on, which square each patch and
    each hole is in, and each patch's rank within its square."""
    holes_per_patch: np.ndarray
    patches_per_square: np.ndarray
    square_tile: np.ndarray
    patch_square: np.ndarray
    hole_patch: np.ndarray
    patch_rank: np.ndarray

    @property
    def hole_square(self) -> np.ndarray:
        return self.patch_square[self.hole_patch]


def _draw_hierarchy(spec: GridSpec, rng: np.random.Generator) -> _Hierarchy:
    """Every tile has a square, every square two patches where possible, patches of min…max holes."""
    squares_per_tile = _split_counts(spec.n_squares, spec.n_tiles, 1, spec.n_squares,
                                     rng.gamma(spec.squares_per_tile_shape, size=spec.n_tiles), rng)
    min_patches = 2 if spec.n_patches >= 2 * spec.n_squares else 1
    patches_per_square = _split_counts(spec.n_patches, spec.n_squares, min_patches, spec.n_patches,
                                       rng.gamma(spec.patches_per_square_shape, size=spec.n_squares), rng)
    patch_weight = rng.gamma(spec.holes_per_patch_shape, size=spec.n_patches)
    if spec.partial_patch_fraction > 0:          # only part of the patch's block of holes is on usable film
        partial = rng.random(spec.n_patches) < spec.partial_patch_fraction
        patch_weight = np.where(partial, patch_weight * rng.random(spec.n_patches), patch_weight)
    holes_per_patch = _split_counts(spec.n_holes, spec.n_patches, spec.min_holes_per_patch,
                                    spec.max_holes_per_patch, patch_weight, rng)
    patch_rank = np.arange(spec.n_patches) - np.repeat(np.cumsum(patches_per_square) - patches_per_square,
                                                       patches_per_square)
    return _Hierarchy(holes_per_patch, patches_per_square, np.repeat(np.arange(spec.n_tiles), squares_per_tile),
                      np.repeat(np.arange(spec.n_squares), patches_per_square),
                      np.repeat(np.arange(spec.n_patches), holes_per_patch), patch_rank)


def _draw_thickness(spec: GridSpec, grid: _Hierarchy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ice thickness (nm) of every hole: square level (with broken and thick squares), gradient across the
    square, patch, hole, single-hole defects; and whether the hole's square is broken."""
    n = spec.n_holes
    kind = rng.choice(3, size=spec.n_squares, p=[1 - spec.broken_square_fraction - spec.thick_square_fraction,
                                                 spec.broken_square_fraction, spec.thick_square_fraction])
    square_level = np.where(kind == 0, rng.normal(spec.square_thickness_mean_nm, spec.square_thickness_sd_nm,
                                                  spec.n_squares),
                            np.where(kind == 1, rng.uniform(0.0, 12.0, spec.n_squares),
                                     rng.uniform(spec.thick_square_min_nm, spec.thick_square_max_nm,
                                                 spec.n_squares)))
    patch_pos = (grid.patch_rank + 0.5) / grid.patches_per_square[grid.patch_square] - 0.5   # -0.5 … 0.5
    gradient = rng.normal(0.0, spec.square_gradient_sd_nm, spec.n_squares)
    patch_level = (square_level[grid.patch_square] + gradient[grid.patch_square] * patch_pos
                   + rng.normal(0.0, spec.patch_thickness_sd_nm, spec.n_patches))
    broken = kind[grid.hole_square] == 1
    hole_sd = np.where(broken, 4.0, spec.hole_thickness_sd_nm)
    thickness = patch_level[grid.hole_patch] + rng.normal(0.0, 1.0, n) * hole_sd
    if spec.hole_defect_fraction > 0:            # single holes filled with thick ice, whatever their patch
        defect = (rng.random(n) < spec.hole_defect_fraction) & ~broken
        thickness = np.where(defect, np.maximum(thickness, rng.normal(spec.hole_defect_nm, spec.hole_defect_sd_nm,
                                                                      n)), thickness)
    return np.maximum(thickness, 0.0), broken


def _draw_ctf(spec: GridSpec, grid: _Hierarchy, thickness: np.ndarray, broken: np.ndarray,
              rng: np.random.Generator, session: str) -> tuple[np.ndarray, np.ndarray]:
    """Measured CTFMaxRes (Å, with failed fits) and the image model's predicted CTFMaxRes of every hole."""
    n = spec.n_holes
    true_ctf = ctf_from_thickness(thickness) * np.exp(rng.normal(0.0, spec.ctf_noise, n))
    failed = rng.random(n) < np.where(broken, 10 * spec.fit_failure_rate, spec.fit_failure_rate)
    true_ctf = np.where(failed, FIT_FAILURE_SENTINEL, true_ctf)
    seen = np.maximum(thickness + rng.normal(0.0, spec.image_thickness_sd_nm, n), 0.0)
    if spec.image_patch_context > 0:             # no draw: the truth and the noise of a seed stay the same
        seen = (1.0 - spec.image_patch_context) * seen + spec.image_patch_context * _group_median(seen, grid.hole_patch)
    raw = np.minimum(ctf_from_thickness(seen), 20.0) * np.exp(rng.normal(0.0, spec.prediction_noise, n))
    center = np.median(raw)
    predicted = np.clip(center + spec.prediction_shrinkage * (raw - center), 1.5, 30.0)
    if isinstance(spec.prediction_quality, tuple):
        low, high = _quality_range(spec.prediction_quality)
        quality = resolve_quality(float(rng.uniform(low, high)))
    else:
        quality = resolve_quality(spec.prediction_quality)
    if quality is not None:                      # drawn last: the grid's truth is the same at every quality
        predicted = degraded_values(predicted, true_ctf, grid.hole_patch, grid.hole_square, quality, rng,
                                    what=f"simulated grid {session}", exact_r=False)
    return true_ctf, predicted


def _group_median(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per element, the median of ``values`` over its group (group numbers from 0; an unused number is skipped)."""
    order = np.lexsort((values, group))
    counts = np.bincount(group)
    starts = np.cumsum(counts) - counts
    ordered = values[order]
    medians = (ordered[starts + (counts - 1) // 2] + ordered[starts + counts // 2]) / 2.0
    return medians[group]


def _quality_range(value: tuple) -> tuple[float, float]:
    """``(low, high)`` target MAEs in Å, low ≤ high."""
    if len(value) != 2 or not all(isinstance(v, (int, float, np.integer, np.floating)) and
                                  not isinstance(v, (bool, np.bool_)) for v in value) or not value[0] <= value[1]:
        raise ValueError(f"a range of prediction qualities is two target MAEs in Å, low ≤ high, not {list(value)!r}")
    return float(value[0]), float(value[1])


def simulate_hole_table(seed: int | np.random.Generator | None = None, spec: GridSpec | None = None,
                        session: str | None = None) -> pd.DataFrame:
    """Simulate one grid's holes: hierarchy (Leginon names), positions (µm within the patch), ice thickness (nm),
    true and predicted CTFMaxRes (Å). Vectorized; ~10 ms for the default 2,341 holes."""
    spec = spec or GridSpec()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    session = session or "sim"
    grid = _draw_hierarchy(spec, rng)
    thickness, broken = _draw_thickness(spec, grid, rng)
    true_ctf, predicted = _draw_ctf(spec, grid, thickness, broken, rng, session)

    # positions: a square lattice of holes around the patch centre (µm)
    n, hole_patch = spec.n_holes, grid.hole_patch
    hole_rank = np.arange(n) - np.repeat(np.cumsum(grid.holes_per_patch) - grid.holes_per_patch,
                                         grid.holes_per_patch)
    side = np.ceil(np.sqrt(grid.holes_per_patch[hole_patch]))
    x = ((hole_rank % side) - (side - 1) / 2) * spec.hole_spacing_um
    y = ((hole_rank // side) - (side - 1) / 2) * spec.hole_spacing_um

    tile_no = grid.square_tile[grid.hole_square] + 1
    square_no = grid.hole_square + 1
    patch_no = grid.patch_rank[hole_patch] + 1
    names = [exposure_name(session, t, s, p, h) for t, s, p, h in zip(tile_no, square_no, patch_no, hole_rank + 1)]
    frame = pd.DataFrame({"hole": names, "x": x, "y": y, "thickness_nm": thickness,
                          "true_ctf": true_ctf, "predicted_ctf": predicted})
    parts = frame["hole"].str.extract(r"^(?P<patch>((?P<tile>.+?_\d+gr)_\d+sq_v\d+)_\d+hl_v\d+)_")
    frame.insert(1, "tile", parts["tile"])
    frame.insert(2, "square", parts[1])
    frame.insert(3, "patch", parts["patch"])
    return frame


def simulate_atlas(seed: int | np.random.Generator | None = None, spec: GridSpec | None = None,
                   **spec_overrides) -> Atlas:
    """A simulated grid as an :class:`Atlas` (positions in µm). ``spec_overrides`` replace GridSpec fields."""
    spec = replace(spec or GridSpec(), **spec_overrides) if spec_overrides else (spec or GridSpec())
    label = seed if not isinstance(seed, np.random.Generator) else "generator"
    frame = simulate_hole_table(seed, spec)
    return Atlas.from_frame(frame, position_unit="um", source=f"cryorl.synth seed={label} holes={spec.n_holes}")
