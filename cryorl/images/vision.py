"""Hole finding in square and patch images: template matching, lattice fitting, per-hole ice estimates.

1. **Candidates**: a hole's edge shows whether its ice is brighter or darker than the film (and its carbon lip
   always does), so the image's edges (gradient magnitude) are matched with a ring of the hole's radius
   (normalised cross-correlation, ``skimage.feature.match_template``); peaks are candidates, sub-pixel.
2. **Lattice**: holey carbon is a regular lattice (square or hexagonal). Two starting bases — the commonest
   neighbour displacements of the clearest candidates, and the autocorrelation peaks of the score map (which
   every hole feeds, so it holds in heavy noise) — are phased by the best mean score over lattice positions and
   refined by least squares on the candidates near lattice positions (sub-pixel, from hundreds of holes).
3. **Holes**: every lattice position whose disc lies wholly on film (not on the copper bars, not off the image)
   is a hole — including holes whose ice happens to match the film's brightness, which no detector alone sees.
4. **Brightness**: mean counts in the inner disc relative to the film around it, and — given the counts at full
   transmission — the ice thickness by Beer–Lambert.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["find_holes", "LatticeFit", "fit_lattice", "match_holes"]


class LatticeFit:
    """``position = origin + i·a + j·b`` (pixels, x/y)."""

    def __init__(self, origin: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        self.origin, self.a, self.b = np.asarray(origin, float), np.asarray(a, float), np.asarray(b, float)

    def positions(self, ij: np.ndarray) -> np.ndarray:
        return self.origin + ij[:, :1] * self.a + ij[:, 1:2] * self.b

    def coordinates(self, xy: np.ndarray) -> np.ndarray:
        """Fractional lattice coordinates of pixel positions."""
        basis = np.column_stack([self.a, self.b])
        return np.linalg.solve(basis, (xy - self.origin).T).T

    @property
    def kind(self) -> str:
        cos = abs(np.dot(self.a, self.b)) / (np.linalg.norm(self.a) * np.linalg.norm(self.b))
        return "hexagonal" if cos > 0.25 else "square"


def _ring_template(radius: float, width: float) -> np.ndarray:
    half = int(np.ceil(radius + 2 * width)) + 1
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    return np.exp(-((np.hypot(x, y) - radius) ** 2) / (2 * width ** 2))


def _candidates(image: np.ndarray, radius: float, max_candidates: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks of the match between the image's edges (gradient magnitude) and a ring of the hole's radius: a
    hole's edge shows whether its ice is brighter or darker than the film around it. Returns the peaks (x, y,
    sub-pixel), their scores, and the score map."""
    from skimage.feature import match_template, peak_local_max

    sigma = max(radius / 4.0, 1.0)
    edges = ndimage.gaussian_gradient_magnitude(image.astype(np.float64), sigma)
    score = match_template(edges, _ring_template(radius, 1.5 * sigma), pad_input=True, mode="edge")
    peaks = peak_local_max(score, min_distance=max(int(radius * 1.5), 2), num_peaks=max_candidates,
                           exclude_border=int(radius), threshold_abs=0.05)
    points = peaks[:, ::-1].astype(np.float64)
    # sub-pixel: the vertex of a parabola through the peak and its neighbours, along each axis
    r, c = peaks[:, 0], peaks[:, 1]
    h, w = score.shape
    for axis, (lo, hi) in enumerate((((r, (c - 1).clip(0)), (r, (c + 1).clip(max=w - 1))),
                                     (((r - 1).clip(0), c), ((r + 1).clip(max=h - 1), c)))):
        left, mid, right = score[lo], score[r, c], score[hi]
        curvature = left - 2 * mid + right
        points[:, axis] += np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1),
                                    0.0)
    return points, score[r, c], score


def _neighbour_basis(points: np.ndarray, pitch_px: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Two lattice vectors from the most common neighbour displacements among candidate centres."""
    if len(points) < 6:
        raise ValueError(f"no regular hole lattice among {len(points)} candidate holes")
    dist, idx = cKDTree(points).query(points, k=min(7, len(points)))
    vectors = (points[idx[:, 1:]] - points[:, None, :]).reshape(-1, 2)
    lengths = dist[:, 1:].reshape(-1)
    nearest = pitch_px if pitch_px else np.median(dist[:, 1])
    slack = 0.15 if pitch_px else 0.3
    vectors = vectors[(lengths > (1 - slack) * nearest) & (lengths < (1 + slack) * nearest)]
    vectors = np.where((vectors[:, 1:2] < 0) | ((vectors[:, 1:2] == 0) & (vectors[:, :1] < 0)), -vectors, vectors)
    angle = np.arctan2(vectors[:, 1], vectors[:, 0])                        # 0 … π
    result = []
    for _ in range(2):
        hist, edges = np.histogram(angle, bins=90, range=(0.0, np.pi))
        if hist.max() == 0:
            raise ValueError(f"no regular hole lattice among {len(points)} candidate holes")
        mode = edges[np.argmax(ndimage.uniform_filter1d(hist.astype(float), 3, mode="wrap"))] + np.pi / 180
        close = np.abs(np.angle(np.exp(1j * (angle - mode)))) < 0.12
        result.append(np.median(vectors[close], axis=0))
        keep = np.abs(np.angle(np.exp(1j * (angle - mode)))) > 0.5           # the other direction next
        vectors, angle = vectors[keep], angle[keep]
        if len(vectors) == 0 and len(result) < 2:
            raise ValueError(f"no regular hole lattice among {len(points)} candidate holes (one direction only)")
    return result[0], result[1]


def _autocorrelation_basis(score: np.ndarray, mask: np.ndarray, radius: float,
                           pitch_px: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Two primitive lattice vectors from the strongest peaks of the hole-score map's autocorrelation (every hole
    contributes, so it holds in heavy noise)."""
    from skimage.feature import peak_local_max

    h, w = score.shape
    # away from the copper edge (its strong, axis-aligned response would dominate), local contrast only
    inner = mask
    border = (1 - 2 * (radius + 2) / h) * (1 - 2 * (radius + 2) / w)      # what the film mask's erosion leaves
    if mask.mean() < 0.9 * border:                                         # copper in view
        inner = ndimage.binary_erosion(mask, iterations=int(3 * radius) + 2)
        if inner.sum() < 0.1 * mask.sum():
            inner = mask
    local = score - ndimage.gaussian_filter(score, 2.0 * radius)
    values = np.where(inner, local - local[inner].mean(), 0.0)
    spectrum = np.fft.rfft2(values, s=(2 * h, 2 * w))
    ac = np.fft.fftshift(np.fft.irfft2(np.abs(spectrum) ** 2, s=(2 * h, 2 * w)))
    # per overlapping pixel: a finite window's autocorrelation fades with the shift, pulling peaks inwards
    overlap = np.fft.fftshift(np.fft.irfft2(np.abs(np.fft.rfft2(inner.astype(float), s=(2 * h, 2 * w))) ** 2,
                                            s=(2 * h, 2 * w)))
    yy, xx = np.ogrid[-h:h, -w:w]
    near = (np.hypot(yy, xx) < min(h, w) / 3) & (overlap > 0.2 * overlap.max())
    ac = np.where(near, ac / np.maximum(overlap, 1.0), 0.0)
    centre = np.array([h, w])
    peaks = peak_local_max(ac, min_distance=max(int(radius), 2), num_peaks=40, exclude_border=False)
    vectors = (peaks - centre)[:, ::-1].astype(np.float64)                  # (x, y)
    length = np.linalg.norm(vectors, axis=1)
    keep = (length > 2.0 * radius) & (length < min(h, w) / 3)
    if pitch_px:
        keep &= np.abs(length / pitch_px - 1.0) < 0.15
    vectors, peaks = vectors[keep], peaks[keep]
    if len(vectors) < 2:
        raise ValueError("no regular hole lattice in this image")
    # sub-pixel peak positions (parabola through each peak and its neighbours, per axis)
    r, c = peaks[:, 0], peaks[:, 1]
    for axis, (dr, dc) in enumerate(((0, 1), (1, 0))):
        left, mid, right = ac[r - dr, c - dc], ac[r, c], ac[r + dr, c + dc]
        curvature = left - 2 * mid + right
        vectors[:, axis] += np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1),
                                     0.0)
    # peaks come strongest first: the strongest is a nearest-neighbour vector, b the strongest other direction
    # of about the same length
    a = vectors[0]
    ratio = np.linalg.norm(vectors, axis=1) / np.linalg.norm(a)
    sine = np.abs(a[0] * vectors[:, 1] - a[1] * vectors[:, 0]) / (np.linalg.norm(a) * np.linalg.norm(vectors,
                                                                                                 axis=1))
    other = (sine > 0.5) & (ratio > 0.8) & (ratio < 1.25)
    if not other.any():
        raise ValueError("no regular hole lattice in this image (one direction only)")
    b = vectors[np.argmax(other)]
    return _refine_on_multiples(ac, centre, a), _refine_on_multiples(ac, centre, b)


def _refine_on_multiples(ac: np.ndarray, centre: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Sharpen a lattice vector with the autocorrelation peaks at its multiples k·v (error shrinks as 1/k)."""
    size = np.array(ac.shape)
    k = 1
    while True:
        k = 2 * k
        target = centre[::-1] + k * vector                                   # (x, y)
        if np.any(np.abs(k * vector) > 0.4 * size[::-1]):
            return vector
        half = max(2, int(np.ceil(0.35 * np.linalg.norm(vector))))     # other peaks are a pitch away
        x0, y0 = np.round(target).astype(int)
        window = ac[y0 - half:y0 + half + 1, x0 - half:x0 + half + 1]
        if window.shape != (2 * half + 1, 2 * half + 1):
            return vector
        wy, wx = np.unravel_index(np.argmax(window), window.shape)
        if 0 < wy < 2 * half and 0 < wx < 2 * half:
            dx = window[wy, wx - 1] - window[wy, wx + 1]
            cx = window[wy, wx - 1] - 2 * window[wy, wx] + window[wy, wx + 1]
            dy = window[wy - 1, wx] - window[wy + 1, wx]
            cy = window[wy - 1, wx] - 2 * window[wy, wx] + window[wy + 1, wx]
            peak = np.array([x0 - half + wx + (0.5 * dx / cx if cx < 0 else 0.0),
                             y0 - half + wy + (0.5 * dy / cy if cy < 0 else 0.0)])
            vector = (peak - centre[::-1]) / k


def fit_lattice(score: np.ndarray, points: np.ndarray, radius: float, mask: np.ndarray | None = None,
                pitch_px: float | None = None, tolerance_px: float | None = None) -> LatticeFit:
    """Fit a 2D lattice of holes. Two starting bases — the commonest neighbour displacements of the clearest
    candidates, and the peaks of the score map's autocorrelation (robust in heavy noise) — are each phased by the
    best mean score over the lattice's positions and refined by least squares on the candidate centres within
    ``tolerance_px`` (default 0.3 radius) of a lattice position; the fit that explains the most clear candidates
    wins (then the one whose positions score best)."""
    mask = mask if mask is not None else np.ones(score.shape, dtype=bool)
    strong = points[_score_at(score, points) >= min(0.5 * score.max(), np.sort(_score_at(score, points))[
        -min(20, len(points))])] if len(points) else points
    fits, failures = [], []
    for start in (lambda: _neighbour_basis(strong, pitch_px),
                  lambda: _autocorrelation_basis(score, mask, radius, pitch_px)):
        try:
            with np.errstate(all="ignore"):
                a, b = start()
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or abs(a[0] * b[1] - a[1] * b[0]) < 1e-6:
                raise ValueError("degenerate lattice vectors")
        except ValueError as error:
            failures.append(str(error))
            continue
        fit = _refine(_phase(score, mask, a, b), points, radius, tolerance_px or 0.3 * radius)
        ij = np.round(fit.coordinates(strong))  # strong candidates the lattice explains
        explained = int((np.linalg.norm(fit.positions(ij) - strong, axis=1) < (tolerance_px or 0.3 * radius)).sum())
        fits.append((explained, _lattice_score(score, mask, fit), fit))
    if not fits:
        raise ValueError(f"no regular hole lattice in this image ({'; '.join(failures)})")
    return max(fits, key=lambda entry: entry[:2])[2]


def _score_at(score: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The score map at (x, y) positions (nearest pixel, clipped to the image)."""
    h, w = score.shape
    x = np.round(points[:, 0]).astype(int).clip(0, w - 1)
    y = np.round(points[:, 1]).astype(int).clip(0, h - 1)
    return score[y, x]


def _nodes(shape: tuple[int, int], a: np.ndarray, b: np.ndarray, origin: np.ndarray = np.zeros(2)) -> np.ndarray:
    """Offsets ``i·a + j·b`` of the lattice nodes from ``origin`` that fall inside an image of ``shape`` (with a
    one-cell margin)."""
    h, w = shape
    basis = np.column_stack([a, b])
    corners = np.linalg.solve(basis, (np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=float) - origin).T).T
    lo, hi = np.floor(corners.min(axis=0)) - 1, np.ceil(corners.max(axis=0)) + 1
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    return np.column_stack([ii.ravel(), jj.ravel()]) @ basis.T


def _phase(score: np.ndarray, mask: np.ndarray, a: np.ndarray, b: np.ndarray, bins: int = 24) -> LatticeFit:
    """The lattice origin (within one cell, ``bins`` × ``bins`` trials) whose positions have the best mean score.

    Every usable pixel is folded into the unit cell (its lattice coordinates modulo 1) and its score added to the
    trial offset that puts a lattice node on it, so one pass over the image scores all trials at once (one
    ``bincount``), instead of sampling every node for every trial."""
    h, w = score.shape
    yy, xx = np.nonzero(mask)
    inverse = np.linalg.inv(np.column_stack([a, b]))
    uv = (np.column_stack([xx, yy]).astype(np.float64) @ inverse.T) % 1.0
    cell = (np.floor(uv * bins + 0.5).astype(np.int64) % bins) @ np.array([bins, 1])
    totals = np.bincount(cell, weights=score[yy, xx], minlength=bins * bins)
    counts = np.bincount(cell, minlength=bins * bins)
    best = int(np.argmax(totals / np.maximum(counts, 1)))
    steps = np.arange(bins) / bins
    origin = np.array([steps[best // bins], steps[best % bins]]) @ np.column_stack([a, b]).T
    return LatticeFit(origin, a, b)


def _refine(fit: LatticeFit, points: np.ndarray, radius: float, tolerance: float) -> LatticeFit:
    """Least squares on the candidates near lattice positions, tightening the tolerance."""
    for limit in (0.5 * radius, 0.5 * radius, 0.4 * radius, tolerance, tolerance, tolerance):
        ij = np.round(fit.coordinates(points))
        inliers = np.linalg.norm(fit.positions(ij) - points, axis=1) < limit
        if inliers.sum() < 6:
            break
        design = np.column_stack([np.ones(inliers.sum()), ij[inliers]])
        solution, *_ = np.linalg.lstsq(design, points[inliers], rcond=None)
        fit = LatticeFit(solution[0], solution[1], solution[2])
    return fit


def _lattice_score(score: np.ndarray, mask: np.ndarray, fit: LatticeFit) -> float:
    positions = fit.origin + _nodes(score.shape, fit.a, fit.b, fit.origin)
    h, w = score.shape
    inside = (positions[:, 0] >= 0) & (positions[:, 0] < w) & (positions[:, 1] >= 0) & (positions[:, 1] < h)
    positions = positions[inside]
    usable = mask[np.round(positions[:, 1]).astype(int).clip(0, h - 1), np.round(positions[:, 0]).astype(int)
                  .clip(0, w - 1)]
    return float(_score_at(score, positions[usable]).mean()) if usable.any() else -np.inf


def _film_mask(image: np.ndarray, radius: float) -> np.ndarray:
    """Pixels on film or in holes (not copper, which transmits nothing), eroded so a hole's disc fits inside."""
    smooth = ndimage.uniform_filter(image.astype(np.float64), size=max(int(4 * radius), 3))
    level = np.percentile(smooth, 99)
    mask = smooth > 0.4 * level                   # the blurred copper edge: a little under half the film level
    mask = ndimage.binary_opening(mask, iterations=2)
    return ndimage.binary_erosion(mask, iterations=int(np.ceil(radius)) + 1)


def find_holes(image: np.ndarray, pixel_size_um: float, hole_diameter_um: float = 1.0, *,
               hole_pitch_um: float | None = None, vacuum_counts: float | None = None,
               mean_free_path_nm: float = 350.0, max_candidates: int = 4000) -> pd.DataFrame:
    """Holes in a square or patch image.

    Args:
        image: 2D counts (any numeric dtype).
        pixel_size_um: from the MRC header (``read_mrc`` gives Å: divide by 1e4).
        hole_diameter_um: of the grid type (R1/1: 1.0, R1.2/1.3: 1.2, R2/1: 2.0).
        hole_pitch_um: centre-to-centre distance of the grid type (R1/1: 2.0, R1.2/1.3: 2.5), if known; it makes
            the lattice fit robust on small images with few holes (patch images).
        vacuum_counts: counts per pixel at full transmission (the dose); with it ``ice_nm`` is estimated.

    Returns one row per hole: ``x, y`` (pixels, sub-pixel), ``i, j`` (lattice indices), ``radius`` (pixels),
    ``brightness`` (mean counts in the inner disc over the median film counts around holes), ``counts`` (mean
    counts in the inner disc), ``ice_nm`` (NaN without ``vacuum_counts``), ``detected`` (a candidate peak was
    within a quarter radius). ``df.attrs["lattice"]`` is the fitted :class:`LatticeFit`.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"find_holes needs a 2D image, got shape {image.shape}")
    radius = hole_diameter_um / 2.0 / pixel_size_um
    if radius < 2.0:
        raise ValueError(f"holes of {hole_diameter_um} µm are {2 * radius:.1f} pixels wide at {pixel_size_um} µm "
                         "per pixel: too small to find (use a higher-magnification image)")
    points, _, score_map = _candidates(image, radius, max_candidates)
    mask = _film_mask(image, radius)
    h, w = image.shape
    on_film = mask[points[:, 1].astype(int).clip(0, h - 1), points[:, 0].astype(int).clip(0, w - 1)]
    fit = fit_lattice(score_map, points[on_film], radius, mask,
                      hole_pitch_um / pixel_size_um if hole_pitch_um else None, tolerance_px=max(0.3 * radius, 1.0))
    # every lattice position over the image whose disc lies wholly on film
    offsets = _nodes(image.shape, fit.a, fit.b, fit.origin)
    ij = np.round(np.linalg.solve(np.column_stack([fit.a, fit.b]), offsets.T).T).astype(int)
    xy = fit.origin + offsets
    inside = (xy[:, 0] >= radius) & (xy[:, 0] <= w - 1 - radius) & (xy[:, 1] >= radius) & (xy[:, 1] <= h - 1 - radius)
    xy, ij = xy[inside], ij[inside]
    keep = mask[np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)]
    xy, ij = xy[keep], ij[keep]
    # brightness: inner disc vs the film between holes
    inner = _ring_means(image, xy, 0.0, 0.7 * radius)
    pitch = min(np.linalg.norm(fit.a), np.linalg.norm(fit.b))
    film = _ring_means(image, xy, 1.25 * radius, max(1.25 * radius + 1.0, 0.5 * pitch - 0.5))
    film_level = np.nanmedian(film) if np.isfinite(film).any() else np.nan
    ice = (-mean_free_path_nm * np.log(np.clip(inner / vacuum_counts, 1e-6, None)) if vacuum_counts
           else np.full(len(xy), np.nan))
    detected = np.zeros(len(xy), dtype=bool)
    if len(points):
        distance, _ = cKDTree(points).query(xy)
        detected = distance <= 0.25 * radius
    order = np.lexsort((xy[:, 0], np.round(xy[:, 1] / max(pitch / 2, 1.0))))    # reading order: rows, then x
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "i": ij[:, 0].astype(int), "j": ij[:, 1].astype(int),
                          "radius": radius, "brightness": inner / film_level, "counts": inner, "ice_nm": ice,
                          "detected": detected}).iloc[order].reset_index(drop=True)
    frame.attrs["lattice"] = fit
    return frame


def _ring_means(image: np.ndarray, centres: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    """Mean of ``image`` in the annulus r_in ≤ d < r_out around each centre (vectorized over centres)."""
    half = int(np.ceil(r_out)) + 1
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1]
    base = np.round(centres).astype(np.int64)
    cols, rows = base[:, 0, None, None] + dx, base[:, 1, None, None] + dy
    dist = np.hypot(cols - centres[:, 0, None, None], rows - centres[:, 1, None, None])
    h, w = image.shape
    valid = (dist >= r_in) & (dist < r_out) & (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    values = np.where(valid, image[rows.clip(0, h - 1), cols.clip(0, w - 1)], 0.0)
    n = valid.sum(axis=(1, 2))
    return np.where(n > 0, values.sum(axis=(1, 2)) / np.maximum(n, 1), np.nan)


def match_holes(found_xy: np.ndarray, true_xy: np.ndarray, tolerance: float) -> tuple[float, float, np.ndarray]:
    """Precision, recall, and for each true hole the index of the found hole within ``tolerance`` (−1: none);
    one-to-one (nearest first)."""
    if len(found_xy) == 0 or len(true_xy) == 0:
        return (0.0 if len(found_xy) else 1.0), (0.0 if len(true_xy) else 1.0), np.full(len(true_xy), -1)
    distance, index = cKDTree(found_xy).query(true_xy, distance_upper_bound=tolerance)
    matched = np.full(len(true_xy), -1)
    taken = set()
    for t in np.argsort(distance):
        if np.isfinite(distance[t]) and index[t] not in taken:
            matched[t] = index[t]
            taken.add(index[t])
    hits = int((matched >= 0).sum())
    return hits / len(found_xy), hits / len(true_xy), matched
