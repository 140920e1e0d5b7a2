"""Image formation for simulated grids: ice thickness → low-magnification images.

Electrons that scatter inelastically are removed by the energy filter / objective aperture, so an area of
thickness ``t`` transmits ``I = I0 · exp(−t / λ)`` (Beer–Lambert) with a mean free path λ of a few hundred nm
(≈ 350 nm for vitreous ice at 300 kV). Carbon scatters more than ice per nm (denser), the copper mesh transmits
nothing. Counts per pixel are Poisson (shot noise) at the dose of each magnification. Everything is rendered with
array operations: holes are splatted as anti-aliased discs all at once, whatever the lattice.

Three magnifications, as in a Leginon session:

- atlas tile (grid magnification, ≈ 1 µm/pixel): squares are bright cells in the dark copper mesh, their brightness
  the mean transmission of their film and holes;
- square (≈ 0.1 µm/pixel): holes are a regular lattice of circles in the carbon film;
- patch (hole magnification, ≈ 20 nm/pixel): ~20 holes; 150 × 150 crops around single holes are cut from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["Optics", "Magnification", "Defects", "ATLAS_MAG", "SQUARE_MAG", "PATCH_MAG", "CROP_SIZE",
           "lattice_points", "splat_holes", "transmission", "render_film", "render_square_image",
           "render_patch_image", "render_atlas_tile", "cut_crops", "counts"]


@dataclass(frozen=True)
class Optics:
    """Grid and microscope constants (lengths in µm unless named _nm)."""

    mesh_pitch_um: float = 90.0          # copper mesh, ≈ 300 mesh
    bar_width_um: float = 25.0           # square opening 65 µm
    hole_diameter_um: float = 1.0        # R1/1 holey carbon
    hole_pitch_um: float = 2.0
    carbon_nm: float = 12.0
    carbon_density_ratio: float = 5.0    # carbon scatters more than ice per nm (denser; aperture contrast)
    ice_on_carbon_ratio: float = 0.4     # ice over the carbon film is thinner than in the holes
    mean_free_path_nm: float = 350.0
    rim_width_um: float = 0.1            # the carbon lip around each hole, visible whatever the ice
    rim_nm: float = 40.0

    @property
    def opening_um(self) -> float:
        return self.mesh_pitch_um - self.bar_width_um

    @property
    def hole_radius_um(self) -> float:
        return self.hole_diameter_um / 2.0


@dataclass(frozen=True)
class Magnification:
    """Pixel size (µm), image shape (pixels) and dose (electrons per pixel at full transmission)."""

    name: str
    pixel_um: float
    shape: tuple[int, int]
    dose: float

    @property
    def pixel_angstrom(self) -> float:
        return self.pixel_um * 1e4


ATLAS_MAG = Magnification("atlas tile", 1.0, (400, 400), 60.0)
SQUARE_MAG = Magnification("square", 0.1, (800, 800), 120.0)
PATCH_MAG = Magnification("patch", 0.02, (576, 576), 400.0)
CROP_SIZE = 150


def lattice_points(kind: str, pitch: float, half_extent: float, rotation: float = 0.0,
                   offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Hole centres (n, 2) of a ``"square"`` or ``"hexagonal"`` lattice within ±half_extent (µm), rotated by
    ``rotation`` radians and shifted by ``offset``."""
    if kind == "square":
        a, b = np.array([pitch, 0.0]), np.array([0.0, pitch])
    elif kind == "hexagonal":
        a, b = np.array([pitch, 0.0]), np.array([pitch / 2.0, pitch * np.sqrt(3.0) / 2.0])
    else:
        raise ValueError(f"unknown lattice {kind!r}; expected 'square' or 'hexagonal'")
    k = int(np.ceil(2.0 * half_extent / pitch)) + 2
    i, j = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    points = i.reshape(-1, 1) * a + j.reshape(-1, 1) * b
    c, s = np.cos(rotation), np.sin(rotation)
    points = points @ np.array([[c, s], [-s, c]]) + np.asarray(offset)
    keep = np.all(np.abs(points) <= half_extent, axis=1)
    return points[keep]


def transmission(thickness_nm: np.ndarray, optics: Optics = Optics()) -> np.ndarray:
    """Beer–Lambert transmitted fraction of an (effective, ice-equivalent) thickness."""
    return np.exp(-np.asarray(thickness_nm, dtype=np.float64) / optics.mean_free_path_nm)


def counts(intensity: np.ndarray, dose: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: Poisson electron counts at ``dose`` electrons per pixel of full transmission, as int16."""
    return np.minimum(rng.poisson(np.maximum(intensity, 0.0) * dose), np.iinfo(np.int16).max).astype(np.int16)


def _pixel_grid(mag: Magnification) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (µm) of pixel centres relative to the image centre: x along columns, y along rows."""
    h, w = mag.shape
    y = (np.arange(h) - (h - 1) / 2.0) * mag.pixel_um
    x = (np.arange(w) - (w - 1) / 2.0) * mag.pixel_um
    return np.meshgrid(x, y)


def splat_holes(shape: tuple[int, int], centres_px: np.ndarray, radius_px: float, values: np.ndarray,
                rim_px: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anti-aliased discs: coverage (0..1) per pixel, the value of the disc covering it, and the hole's carbon rim
    (a ring of width ``rim_px`` just outside the disc, 0..1). Vectorized over holes (non-overlapping discs)."""
    coverage, value, rim = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    if len(centres_px) == 0:
        return coverage, value, rim
    half = int(np.ceil(radius_px + rim_px)) + 1
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1]
    base = np.round(centres_px).astype(np.int64)                           # (n, 2) as (x, y)
    cols = base[:, 0, None, None] + dx
    rows = base[:, 1, None, None] + dy
    dist = np.hypot(cols - centres_px[:, 0, None, None], rows - centres_px[:, 1, None, None])
    cover = np.clip(radius_px - dist + 0.5, 0.0, 1.0)
    ring = np.clip(np.minimum(dist - radius_px + 0.5, radius_px + rim_px - dist + 0.5), 0.0, 1.0) if rim_px else \
        np.zeros_like(cover)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    disc = inside & (cover > 0)
    coverage[rows[disc], cols[disc]] = cover[disc]
    value[rows[disc], cols[disc]] = np.broadcast_to(values[:, None, None], cover.shape)[disc]
    band = inside & (ring > 0)
    np.maximum.at(rim, (rows[band], cols[band]), ring[band])
    return coverage, value, rim


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance smooth random texture."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma_px, mode="wrap")
    return field / (field.std() + 1e-12)


@dataclass(frozen=True)
class Defects:
    """Contamination and torn film in stage coordinates (µm): ``blobs`` rows (x, y, size, extra ice nm) are ice
    crystals (dark), ``cracks`` rows (x, y, angle, width, length) are lines of missing film (bright)."""

    blobs: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    cracks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))

    @classmethod
    def random(cls, rng: np.random.Generator, half_extent_um: float, n_blobs: int, n_cracks: int,
               centre: tuple[float, float] = (0.0, 0.0)) -> Defects:
        cx, cy = centre
        blobs = np.column_stack([rng.uniform(-half_extent_um, half_extent_um, n_blobs) + cx,
                                 rng.uniform(-half_extent_um, half_extent_um, n_blobs) + cy,
                                 rng.uniform(0.3, 1.5, n_blobs), rng.uniform(150.0, 400.0, n_blobs)])
        cracks = np.column_stack([rng.uniform(-half_extent_um, half_extent_um, n_cracks) / 2 + cx,
                                  rng.uniform(-half_extent_um, half_extent_um, n_cracks) / 2 + cy,
                                  rng.uniform(0.0, np.pi, n_cracks), rng.uniform(0.1, 0.3, n_cracks),
                                  rng.uniform(5.0, 20.0, n_cracks)])
        return cls(blobs, cracks)


def render_film(mag: Magnification, hole_xy_um: np.ndarray, hole_thickness_nm: np.ndarray,
                film_ice_nm: float | np.ndarray, rng: np.random.Generator, optics: Optics = Optics(), *,
                defects: Defects | None = None, centre_um: tuple[float, float] = (0.0, 0.0),
                opening: bool = True) -> np.ndarray:
    """Effective thickness (nm, ice-equivalent; inf on copper) of a field of holey film.

    Coordinates are stage µm: the image is centred on ``centre_um`` and ``hole_xy_um`` and ``defects`` are in the
    same frame. ``film_ice_nm``: ice over the carbon; ``opening``: copper bars outside the square opening
    (a square centred on ``(0, 0)``).
    """
    x, y = _pixel_grid(mag)
    x, y = x + centre_um[0], y + centre_um[1]
    h, w = mag.shape
    radius_px = optics.hole_radius_um / mag.pixel_um
    hole_xy_um = np.asarray(hole_xy_um, dtype=np.float64).reshape(-1, 2)
    centres = np.column_stack([(hole_xy_um[:, 0] - centre_um[0]) / mag.pixel_um + (w - 1) / 2.0,
                               (hole_xy_um[:, 1] - centre_um[1]) / mag.pixel_um + (h - 1) / 2.0])
    coverage, ice, rim = splat_holes(mag.shape, centres, radius_px, np.asarray(hole_thickness_nm, dtype=np.float64),
                                     optics.rim_width_um / mag.pixel_um)
    texture = 1.0 + 0.08 * _smooth_noise(mag.shape, max(2.0, 0.3 / mag.pixel_um), rng)
    film = optics.carbon_nm * optics.carbon_density_ratio * texture + np.asarray(film_ice_nm) + optics.rim_nm * rim
    thickness = coverage * ice + (1.0 - coverage) * film
    defects = defects if defects is not None else Defects()
    for bx, by, size, extra in defects.blobs:           # ice crystals: dark Gaussian blobs
        if abs(bx - centre_um[0]) < np.ptp(x) / 2 + 4 * size and abs(by - centre_um[1]) < np.ptp(y) / 2 + 4 * size:
            thickness = thickness + extra * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * size ** 2))
    for cx, cy, angle, width, length in defects.cracks:  # torn film: a bright line through the carbon
        distance = np.abs((x - cx) * np.sin(angle) - (y - cy) * np.cos(angle))
        along = np.abs((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle))
        thickness = np.where((distance < width) & (along < length) & (coverage < 1), 0.0, thickness)
    if opening:
        half = optics.opening_um / 2.0
        thickness = np.where((np.abs(x) <= half) & (np.abs(y) <= half), thickness, np.inf)
    return thickness


def render_square_image(hole_xy_um: np.ndarray, hole_thickness_nm: np.ndarray, film_ice_nm: float,
                        rng: np.random.Generator, optics: Optics = Optics(), mag: Magnification = SQUARE_MAG,
                        defects: Defects | None = None) -> np.ndarray:
    """A square image (int16 counts) centred on the square: the opening with its lattice of holes, copper bars
    around it. Positions in µm from the square's centre."""
    thickness = render_film(mag, hole_xy_um, hole_thickness_nm, film_ice_nm, rng, optics, defects=defects,
                            opening=True)
    return counts(transmission(thickness, optics), mag.dose, rng)


def render_patch_image(hole_xy_um: np.ndarray, hole_thickness_nm: np.ndarray, film_ice_nm: float,
                       rng: np.random.Generator, centre_um: tuple[float, float], optics: Optics = Optics(),
                       mag: Magnification = PATCH_MAG, defects: Defects | None = None) -> np.ndarray:
    """A hole-magnification image (int16 counts) centred on ``centre_um`` of its square (same frame as the holes
    and defects)."""
    thickness = render_film(mag, hole_xy_um, hole_thickness_nm, film_ice_nm, rng, optics, defects=defects,
                            centre_um=centre_um, opening=True)
    return counts(transmission(thickness, optics), mag.dose, rng)


def render_atlas_tile(cell_transmission: np.ndarray, rng: np.random.Generator, optics: Optics = Optics(),
                      mag: Magnification = ATLAS_MAG) -> np.ndarray:
    """An atlas tile (int16 counts): a ``(rows, cols)`` block of mesh cells, each square opening uniformly bright
    at its mean transmission (NaN: no film at all, fully transmitting), copper bars dark."""
    x, y = _pixel_grid(mag)
    rows, cols = cell_transmission.shape
    pitch = optics.mesh_pitch_um
    col = np.floor(x / pitch + cols / 2.0).astype(np.int64)
    row = np.floor(y / pitch + rows / 2.0).astype(np.int64)
    inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
    local_x = x - (col - cols / 2.0 + 0.5) * pitch
    local_y = y - (row - rows / 2.0 + 0.5) * pitch
    half = optics.opening_um / 2.0
    open_area = inside & (np.abs(local_x) <= half) & (np.abs(local_y) <= half)
    cell = np.nan_to_num(cell_transmission, nan=1.0)[np.clip(row, 0, rows - 1), np.clip(col, 0, cols - 1)]
    shading = 1.0 + 0.05 * _smooth_noise(mag.shape, 20.0, rng)        # uneven illumination
    intensity = np.where(open_area, cell * shading, 0.0)
    return counts(intensity, mag.dose, rng)


def cut_crops(image: np.ndarray, centres_px: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """``size`` × ``size`` crops centred on each (x, y) pixel position, edge-padded where they leave the image."""
    half = size // 2
    padded = np.pad(image, half, mode="edge")
    offsets = np.arange(size) - half
    cx = np.round(centres_px[:, 0]).astype(np.int64) + half
    cy = np.round(centres_px[:, 1]).astype(np.int64) + half
    return padded[cy[:, None, None] + offsets[None, :, None], cx[:, None, None] + offsets[None, None, :]]
