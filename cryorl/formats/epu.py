"""Thermo Fisher EPU sessions as grids: foil holes, exposures, the operator's trace, CTF from the pipeline.

What is read (every file is .NET DataContract XML whatever its extension; parsed with the standard library's
ElementTree, elements matched by local name whatever their namespace, ``z:Ref`` references followed):

- ``EpuSession.dm``: the session's name, its grid squares (``Samples/…/GridSquares``), the atlas it uses
  (``AtlasId``), EPU's hole clustering (``ClusteringMode``, ``ClusteringRadius``) and the largest image shift of
  its acquisition template (``TargetAreaTemplate/MaximumImageShift``);
- the atlas's ``Atlas.dm`` (``Atlas/Atlas.dm`` or ``Atlas.dm`` in the session folder, the ``atlas_path`` given,
  or the tail of ``AtlasId`` under the session's parent folders): its tiles (``TilesEfficient``) and the grid
  square nodes each tile holds, with their stage positions and positions on the atlas;
- ``Metadata/GridSquare_<id>.dm``: every foil hole of the square (``TargetLocationsEfficient``): foil-hole id,
  stage position (``StagePosition``, or ``CorrectedStagePosition`` when ``IsPositionCorrected``), position in the
  square image (``PixelCenter``, px), ``IsNearGridBar``, ``Selected``, EPU's ice-filter signal
  (``FilterProperties/PixelIntensityMean`` and ``PixelIntensityStDev``), and the exposures taken on it
  (``ParticleAcquisitions``: micrograph names ``FoilHole_<hole>_Data_<area>_<setting>_<yyyymmdd>_<hhmmss>``);
- ``Images-Disc*/GridSquare_<id>/FoilHoles/FoilHole_<hole>_<date>_<time>.xml`` (a hole's image: the hole exists,
  and its stage position) and ``…/Data/FoilHole_…_Data_….xml`` (one exposure each, several per hole with
  image-shift multi-shot; its stage position and ``acquisitionDateTime``). Squares whose ``.dm`` is missing are
  loaded from these files.

The clock is the time in the exposure names (EPU's wall clock, the same for every exposure whatever file lists it;
a Data XML's own ``acquisitionDateTime`` is kept beside it). The human trace is the session's foil holes in the
order of their first exposure, with minutes since the session's first exposure.

Hierarchy (the environment's atlas tile → square → patch → hole):

- **atlas tile**: the ``Atlas.dm`` tile whose ``Nodes`` hold the square's node (``AtlasNodeId``). Without an atlas,
  or for a square on none of its tiles, every square is its own tile (a move between squares then costs a tile
  switch); ``missing`` says so.
- **grid square**: ``GridSquare_<id>``.
- **patch**: the foil holes one stage position serves by image shift. Where EPU recorded its own grouping (holes
  whose ``PrimaryId`` names another hole, or ``SecondaryTargetLocationIds``), a patch is a primary hole with its
  secondaries. Otherwise, per square, a greedy cover by stage positions at foil holes: the hole not yet in a
  patch whose ``patch_radius_um`` (stage coordinates) covers the most holes not yet in a patch (the first in
  EPU's hole order, ``Order``, on ties; holes known only from XML come after, by id) becomes a stage position and
  serves them; repeated until every hole is in a patch. Every hole so lies within the radius of the foil hole
  whose stage position serves it, and that hole is in its patch. The radius is, in this order:
  ``patch_radius_um``; EPU's ``ClusteringRadius`` when its clustering was on; the template's
  ``MaximumImageShift`` (5 µm in the shared EPU 3.7 session, which did not cluster: EPU moved the stage to every
  hole there); :data:`DEFAULT_PATCH_RADIUS_UM`. :attr:`EpuGrid.patch_rule` states the rule a grid was built with.
- **hole**: ``FoilHole_<id>``; the atlas's ``x, y`` are its stage position relative to its patch's stage
  position (µm), and :attr:`EpuGrid.stage_um` the absolute stage position (µm) for plans and navigator files.

Predicted quality from the ice filter (Beer–Lambert): a hole transmits ``I = I_ref · exp(−t / λ)`` for ice
``t`` thicker than the reference, so ``t / λ = −ln(I / I_ref)`` (:func:`relative_thickness`), with ``I_ref`` the
:data:`REFERENCE_QUANTILE` quantile of the square's hole intensities — its brightest holes, empty ones where the
square has any (then ``t`` is the ice thickness itself). :class:`IceModel` turns it into a predicted CTFMaxRes:
thickness ``offset_nm + λ · t/λ`` through :func:`cryorl.synth.ctf_from_thickness` (the simulator's CTFMaxRes of
ice thickness, calibrated to the real Aldolase session: best at 20-40 nm, 6 Å near 80 nm, poor for empty and
thick holes), clipped at 20 Å. The default λ is the simulator's 350 nm (:class:`cryorl.images.imaging.Optics`)
and the offset 0; :meth:`IceModel.fit` refits both where CTFs are known. Holes without an intensity get the worst
prediction, 20 Å. The probability that a hole is good follows from its predicted CTFMaxRes through the shipped
calibration (:mod:`cryorl.calibration`, refittable with ``Calibration.fit_atlases`` on grids with CTFs), as for
every other grid; a user's own predictions replace these with ``grid.atlas.with_predictions(...)``.

CTF per hole (``ctf=``, a RELION STAR file or a CTFFIND output folder, :mod:`cryorl.ctf_results`): each exposure
takes the CTFMaxRes of the micrograph with its name; a hole's is, by ``ctf_rule``, the ``"best"`` (lowest
CTFMaxRes, the default: the hole is as good as its best shot), the ``"median"`` or the ``"first"`` (the earliest
exposure with an estimate) of its exposures'. Holes never exposed, or with no estimate, have NaN.

``missing`` holds one line per kind of thing the session lacks (no atlas, squares without their GridSquare
``.dm``, holes known only from XML, holes without an intensity, exposures without a CTF estimate, micrographs
matching no exposure, …). A malformed or truncated file is a :class:`~cryorl.loaders.DataFileError` naming the
file and the element; a DOCTYPE that declares entities is refused (entities are never expanded).
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.parsers import expat

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryorl.atlas import FIT_FAILURE_CTF, MAX_FEATURE_CTF, Atlas
from cryorl.ctf_results import EPU_MICROGRAPH, micrograph_core, read_ctf_results
from cryorl.formats.base import Grid, GridFormat, register_format
from cryorl.human import HumanTrace
from cryorl.images.imaging import Optics
from cryorl.loaders import DataFileError
from cryorl.synth import ctf_from_thickness

__all__ = ["EpuGrid", "IceModel", "is_epu_session", "load_epu_session", "relative_thickness", "combine_ctf",
           "DEFAULT_PATCH_RADIUS_UM", "REFERENCE_QUANTILE", "CTF_RULES"]

DEFAULT_PATCH_RADIUS_UM = 5.0
"""Patch radius (µm) when a session states none: the ``MaximumImageShift`` of the shared EPU 3.7 session."""
REFERENCE_QUANTILE = 0.98
"""``I_ref`` of a square: this quantile of its holes' ice-filter intensities (its brightest holes)."""
CTF_RULES = ("best", "median", "first")
CtfRule = Literal["best", "median", "first"]

_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_Z_REF = "{http://schemas.microsoft.com/2003/10/Serialization/}Ref"
_Z_ID = "{http://schemas.microsoft.com/2003/10/Serialization/}Id"
_FOIL_HOLE_IMAGE = re.compile(r"^FoilHole_(\d+)_(\d{8})_(\d{6})$")     # file stems, never XML content
_EXPOSURE = re.compile(rf"^{EPU_MICROGRAPH}$")
_SQUARE_FOLDER = re.compile(r"^GridSquare_(\d+)$")


# ------------------------------------------------------------------------------------------------ XML reading
class _Refused(Exception):
    pass


class _PrologDone(Exception):
    pass


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _check_prolog(path: Path, data: bytes) -> None:
    """Refuse a DOCTYPE that declares entities; reads only the prolog (stops at the root element)."""
    parser = expat.ParserCreate()

    def refuse(*_):
        raise _Refused

    def stop(*_):
        raise _PrologDone

    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = stop
    try:
        parser.Parse(data, True)
    except _Refused:
        raise DataFileError(path, "its DOCTYPE declares entities (EPU files have none; entities are never "
                                  "expanded): refused") from None
    except (_PrologDone, expat.ExpatError):
        return


def _error_context(data: bytes, error: ET.ParseError) -> str:
    """The parse error with the innermost element open where it happened (the file is parsed again, event by
    event, only to say where)."""
    stack: list[str] = []
    parser = ET.XMLPullParser(events=("start", "end"))
    kind = "malformed"
    try:
        for start in range(0, len(data), 1 << 16):
            parser.feed(data[start:start + (1 << 16)])
            for event, element in parser.read_events():
                if event == "start":
                    stack.append(_local(element.tag))
                else:
                    stack.pop()
                    element.clear()
        kind = "truncated"              # all of it parsed: the document just stops
        parser.close()
    except ET.ParseError:
        pass
    where = f"inside element {'/'.join(stack[-4:])}" if stack else "before the root element"
    return f"{kind} XML ({error}) {where}"


def _parse(path: Path) -> ET.Element:
    data = path.read_bytes()
    _check_prolog(path, data)
    try:
        return ET.fromstring(data)
    except ET.ParseError as error:
        raise DataFileError(path, _error_context(data, error)) from None


class _Xml:
    """One parsed DataContract file: children by local name, ``z:Ref`` followed, errors naming file and element."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = _parse(path)
        self._ids: dict[str, ET.Element] | None = None

    def resolve(self, element: ET.Element) -> ET.Element:
        ref = element.get(_Z_REF)
        if ref is None:
            return element
        if self._ids is None:
            self._ids = {e.get(_Z_ID): e for e in self.root.iter() if e.get(_Z_ID) is not None}
        return self._ids.get(ref, element)

    def child(self, element: ET.Element, path: str) -> ET.Element | None:
        """The element at ``path`` (local names separated by ``/``) below ``element``; None if absent or nil."""
        for name in path.split("/"):
            element = next((self.resolve(c) for c in element if _local(c.tag) == name), None)
            if element is None or element.get(_XSI_NIL) == "true":
                return None
        return element

    def text(self, element: ET.Element, path: str, where: str, required: bool = True) -> str | None:
        found = self.child(element, path)
        text = (found.text or "").strip() if found is not None else ""
        if not text and required:
            raise DataFileError(self.path, f"{where}: element {path} is missing or empty")
        return text or None

    def number(self, element: ET.Element, path: str, where: str, required: bool = True) -> float:
        text = self.text(element, path, where, required)
        if text is None:
            return np.nan
        try:
            return float(text)
        except ValueError:
            raise DataFileError(self.path, f"{where}: element {path} is {text!r}, not a number") from None

    def integer(self, element: ET.Element, path: str, where: str) -> int:
        text = self.text(element, path, where)
        if not text.isdigit():
            raise DataFileError(self.path, f"{where}: element {path} is {text!r}, not an id")
        return int(text)

    def flag(self, element: ET.Element, path: str, where: str) -> bool | None:
        text = self.text(element, path, where, required=False)
        if text is None:
            return None
        if text not in ("true", "false"):
            raise DataFileError(self.path, f"{where}: element {path} is {text!r}, not true or false")
        return text == "true"

    def all(self, element: ET.Element, prefix: str) -> Iterator[ET.Element]:
        """Every element below ``element`` whose local name starts with ``prefix`` (nil entries left out)."""
        for found in element.iter():
            if _local(found.tag).startswith(prefix) and found.get(_XSI_NIL) != "true":
                yield self.resolve(found)

    def ints(self, element: ET.Element | None) -> list[int]:
        """The integers of a .NET ``List<int>`` (``_items`` up to ``_size``)."""
        if element is None:
            return []
        items = self.child(element, "_items")
        size = self.text(element, "_size", "", required=False)
        values = [int(c.text) for c in items if (c.text or "").strip().isdigit()] if items is not None else []
        return values[:int(size)] if size and size.isdigit() else values


def _stage_um(xml: _Xml, element: ET.Element, path: str, where: str) -> tuple[float, float]:
    return (xml.number(element, f"{path}/X", where) * 1e6, xml.number(element, f"{path}/Y", where) * 1e6)


# ------------------------------------------------------------------------------------------------ the session
def is_epu_session(path: str | os.PathLike) -> bool:
    """True for an EPU session folder (``EpuSession.dm``, ``Metadata/GridSquare_*.dm`` or
    ``Images-Disc*/GridSquare_*``) or its ``EpuSession.dm``."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.name == "EpuSession.dm"
    return path.is_dir() and ((path / "EpuSession.dm").is_file()
                              or any((path / "Metadata").glob("GridSquare_*.dm"))
                              or any(p.is_dir() for p in path.glob("Images-Disc*/GridSquare_*")))


@dataclass(frozen=True)
class _Session:
    name: str
    squares: list[int]
    atlas_id: str | None
    clustering: str | None
    clustering_radius_um: float
    max_image_shift_um: float


def _read_session(path: Path) -> _Session:
    xml = _Xml(path)
    root, where = xml.root, "EpuSessionXml"
    squares = []
    for pair in xml.all(root, "KeyValuePairOfintSerializedReferenceOfGridSquareXml"):
        squares.append(xml.integer(pair, "key", "EpuSessionXml GridSquares entry"))
    atlas_id = next((e.text for e in root.iter() if _local(e.tag) == "AtlasId" and e.text), None)
    template = next((e for e in root.iter() if _local(e.tag) == "TargetAreaTemplate"), None)
    shift = (xml.number(template, "MaximumImageShift", "TargetAreaTemplate", required=False) * 1e6
             if template is not None else np.nan)
    return _Session(name=xml.text(root, "Name", where, required=False) or path.parent.name,
                    squares=squares, atlas_id=atlas_id,
                    clustering=xml.text(root, "ClusteringMode", where, required=False),
                    clustering_radius_um=xml.number(root, "ClusteringRadius", where, required=False) * 1e6,
                    max_image_shift_um=shift)


def _find_atlas(folder: Path, atlas_id: str | None, atlas_path: Path | None) -> tuple[Path | None, list[Path]]:
    """The atlas's Atlas.dm, and where it was looked for."""
    if atlas_path is not None:
        candidates = [atlas_path / "Atlas.dm" if atlas_path.is_dir() else atlas_path]
    else:
        candidates = [folder / "Atlas" / "Atlas.dm", folder / "Atlas.dm"]
        if atlas_id:
            parts = [p for p in atlas_id.replace("\\", "/").split("/") if p and not p.endswith(":")]
            for base in list(folder.resolve().parents)[:3]:
                candidates += [base.joinpath(*parts[-k:]) for k in range(2, len(parts) + 1)]
    return next((c for c in candidates if c.is_file()), None), candidates


def _read_atlas(path: Path) -> pd.DataFrame:
    """Grid-square nodes of an Atlas.dm: ``square_id, tile, atlas_x_px, atlas_y_px, square_stage_x_um, …``."""
    xml = _Xml(path)
    rows = []
    for tile in xml.all(xml.root, "TileXml"):
        tile_id = xml.integer(tile, "Id", "atlas tile (TileXml)")
        for pair in xml.all(tile, "KeyValuePairOfintNodeXml"):
            node = xml.child(pair, "value")
            if node is None:
                continue
            where = f"atlas tile {tile_id}, node {xml.text(pair, 'key', 'node', required=False)}"
            stage = "AlignedStagePosition" if xml.child(node, "AlignedStagePosition") is not None else "StagePosition"
            x, y = _stage_um(xml, node, stage, where)
            rows.append((xml.integer(node, "Id", where), f"Tile_{tile_id}",
                         xml.number(node, "PositionOnTheAtlas/Center/x", where, required=False),
                         xml.number(node, "PositionOnTheAtlas/Center/y", where, required=False), x, y))
    return pd.DataFrame(rows, columns=["square_id", "tile", "atlas_x_px", "atlas_y_px", "square_stage_x_um",
                                       "square_stage_y_um"]).drop_duplicates("square_id")


_HOLE_COLUMNS = ["foil_hole", "square_id", "order", "stage_x_um", "stage_y_um", "image_x_px", "image_y_px",
                 "near_grid_bar", "selected", "intensity_mean", "intensity_sd", "state", "primary", "source"]


def _read_grid_square(path: Path) -> tuple[int, list[tuple], list[tuple], dict[int, int]]:
    """A GridSquare .dm: its id, hole rows (:data:`_HOLE_COLUMNS`), exposure rows ``(micrograph, foil_hole)`` and
    EPU's grouping ``{secondary hole: primary hole}``."""
    xml = _Xml(path)
    root = xml.root
    square = xml.integer(root, "Id", "GridSquareXml")
    holes, exposures, grouping = [], [], {}
    for pair in xml.all(root, "KeyValuePairOfintTargetLocationXml"):
        hole = xml.child(pair, "value")
        if hole is None:
            raise DataFileError(path, f"GridSquareXml TargetLocations entry {xml.text(pair, 'key', 'entry')}: "
                                      "element value is missing")
        hole_id = xml.integer(hole, "Id", "TargetLocationXml")
        where = f"foil hole {hole_id}"
        corrected = xml.flag(hole, "IsPositionCorrected", where)
        x, y = _stage_um(xml, hole, "CorrectedStagePosition" if corrected else "StagePosition", where)
        primary = xml.text(hole, "PrimaryId", where, required=False)
        if primary is not None and primary.isdigit() and int(primary) != hole_id:
            grouping[hole_id] = int(primary)
        secondaries = xml.child(hole, "SecondaryTargetLocationdIds")        # EPU 3.7's spelling
        if secondaries is None:
            secondaries = xml.child(hole, "SecondaryTargetLocationIds")
        for secondary in xml.ints(secondaries):
            grouping.setdefault(secondary, hole_id)
        holes.append((hole_id, square, xml.number(hole, "Order", where, required=False), x, y,
                      xml.number(hole, "PixelCenter/x", where, required=False),
                      xml.number(hole, "PixelCenter/y", where, required=False),
                      xml.flag(hole, "IsNearGridBar", where), xml.flag(hole, "Selected", where),
                      xml.number(hole, "FilterProperties/PixelIntensityMean", where, required=False),
                      xml.number(hole, "FilterProperties/PixelIntensityStDev", where, required=False),
                      xml.text(hole, "State", where, required=False), -1, "GridSquare .dm"))
        acquisitions = xml.child(hole, "ParticleAcquisitions")
        if acquisitions is None:
            continue
        for shot in xml.all(acquisitions, "KeyValuePairOfintParticleAcquisitionDataXml"):
            name = xml.text(shot, "value/Image/BaseFileName", f"{where}, exposure")
            match = _EXPOSURE.match(name)
            if match is None:
                raise DataFileError(path, f"{where}: element ParticleAcquisitions/…/Image/BaseFileName is {name!r}, "
                                          "not FoilHole_<hole>_Data_<area>_<setting>_<yyyymmdd>_<hhmmss>")
            if int(match["foil_hole"]) != hole_id:
                raise DataFileError(path, f"{where}: exposure {name} (element ParticleAcquisitions/…/Image/"
                                          "BaseFileName) names another foil hole")
            exposures.append((name, hole_id, square))
    return square, holes, exposures, grouping


def _read_image_xml(path: Path) -> tuple[float, float, pd.Timestamp | None]:
    """Stage x, y (µm) and acquisition wall-clock time of an EPU image's MicroscopeImage XML."""
    xml = _Xml(path)
    where = "MicroscopeImage"
    x, y = _stage_um(xml, xml.root, "microscopeData/stage/Position", where)
    text = xml.text(xml.root, "microscopeData/acquisition/acquisitionDateTime", where, required=False)
    if text is None:
        return x, y, None
    try:
        time = pd.Timestamp(text)
    except ValueError:
        raise DataFileError(path, f"{where}: element microscopeData/acquisition/acquisitionDateTime is {text!r}, "
                                  "not a time") from None
    return x, y, time.tz_localize(None) if time.tzinfo is not None else time      # the wall clock as written


def _read_image_folders(folder: Path) -> tuple[list[tuple], list[tuple]]:
    """FoilHole and Data XML of every ``Images-Disc*/GridSquare_<id>``: hole rows ``(foil_hole, square, x, y,
    time, source)`` and exposure rows ``(micrograph, foil_hole, square, x, y, xml_time)``."""
    holes, exposures = [], []
    for square_folder in sorted(folder.glob("Images-Disc*/GridSquare_*")):
        match = _SQUARE_FOLDER.match(square_folder.name)
        if match is None or not square_folder.is_dir():
            continue
        square = int(match[1])
        for image in sorted((square_folder / "FoilHoles").glob("FoilHole_*.xml")):
            name = _FOIL_HOLE_IMAGE.match(image.stem)
            if name is None:
                continue
            x, y, _ = _read_image_xml(image)
            time = pd.Timestamp(f"{name[2]}T{name[3]}")
            holes.append((int(name[1]), square, x, y, time, "FoilHole XML"))
        for image in sorted((square_folder / "Data").glob("FoilHole_*_Data_*.xml")):
            name = _EXPOSURE.match(image.stem)
            if name is None:
                continue
            x, y, time = _read_image_xml(image)
            exposures.append((image.stem, int(name["foil_hole"]), square, x, y, time))
    return holes, exposures


# --------------------------------------------------------------------------------------------- predictions
def relative_thickness(intensity: np.ndarray, square: np.ndarray,
                       quantile: float = REFERENCE_QUANTILE) -> np.ndarray:
    """Ice thickness beyond the square's brightest holes, in mean free paths: ``−ln(I / I_ref)`` with ``I_ref``
    the ``quantile`` of the square's finite intensities (Beer–Lambert; module docstring). NaN where ``I`` is NaN;
    an intensity ≤ 0 counts as 1e-6 of ``I_ref``."""
    intensity = np.asarray(intensity, dtype=np.float64)
    frame = pd.DataFrame({"i": intensity, "square": np.asarray(square)})
    reference = frame.groupby("square")["i"].transform(lambda i: i.quantile(quantile)).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return -np.log(np.maximum(intensity, 1e-6 * reference) / reference)


@dataclass(frozen=True)
class IceModel:
    """Predicted CTFMaxRes (Å) of a hole's relative thickness ``t`` (mean free paths beyond the square's brightest
    holes): :func:`cryorl.synth.ctf_from_thickness` of ``offset_nm + mean_free_path_nm · t``, clipped at 20 Å.
    The defaults are the simulator's: λ = 350 nm (``cryorl.images.imaging.Optics``), the brightest holes empty."""

    mean_free_path_nm: float = Optics().mean_free_path_nm
    offset_nm: float = 0.0
    source: str = "cryorl.synth physics (λ of cryorl.images.imaging.Optics)"

    def thickness_nm(self, t: np.ndarray) -> np.ndarray:
        return self.offset_nm + self.mean_free_path_nm * np.asarray(t, dtype=np.float64)

    def predicted_ctf(self, t: np.ndarray) -> np.ndarray:
        """Predicted CTFMaxRes in Å; the worst (20 Å) where ``t`` is NaN (no intensity)."""
        thickness = self.thickness_nm(t)
        return np.where(np.isfinite(thickness), np.minimum(ctf_from_thickness(np.nan_to_num(thickness)),
                                                           MAX_FEATURE_CTF), MAX_FEATURE_CTF)

    @classmethod
    def fit(cls, t: np.ndarray, true_ctf: np.ndarray, source: str = "") -> IceModel:
        """Least-squares fit of λ and the offset on log CTFMaxRes (clipped at 20 Å; failed fits count as 20 Å) of
        the holes where both ``t`` and the CTF are known."""
        from scipy.optimize import least_squares

        t, ctf = np.asarray(t, dtype=np.float64), np.asarray(true_ctf, dtype=np.float64)
        known = np.isfinite(t) & ~np.isnan(ctf)
        if known.sum() < 10:
            raise ValueError(f"{int(known.sum())} holes with both an intensity and a CTF are too few to fit on")
        t, target = t[known], np.log(np.minimum(np.where(ctf >= FIT_FAILURE_CTF, MAX_FEATURE_CTF, ctf),
                                                MAX_FEATURE_CTF)[known])

        def residuals(p):
            return np.log(np.minimum(ctf_from_thickness(p[1] + p[0] * t), MAX_FEATURE_CTF)) - target

        default = cls()
        result = least_squares(residuals, [default.mean_free_path_nm, default.offset_nm],
                               bounds=([20.0, -300.0], [5000.0, 300.0]))
        return cls(float(result.x[0]), float(result.x[1]), source or f"fitted on {int(known.sum())} holes")


def combine_ctf(hole: np.ndarray, ctf: np.ndarray, time: np.ndarray, rule: CtfRule = "best") -> pd.Series:
    """Per hole, the CTFMaxRes of its exposures by ``rule`` (``best``: lowest; ``median``; ``first``: the earliest
    exposure with an estimate); exposures without an estimate (NaN) are left out. Indexed by hole."""
    if rule not in CTF_RULES:
        raise ValueError(f"unknown CTF rule {rule!r}; choose one of {', '.join(CTF_RULES)}")
    frame = pd.DataFrame({"hole": hole, "ctf": ctf, "time": time}).dropna(subset=["ctf"])
    groups = frame.sort_values("time", kind="stable").groupby("hole")["ctf"]
    return {"best": groups.min, "median": groups.median, "first": groups.first}[rule]()


# ---------------------------------------------------------------------------------------------------- patches
def _greedy_patches(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """For holes in EPU's order, the index of the hole whose stage position serves each (module docstring): the
    free hole whose radius covers the most free holes (first in order on ties) serves them, until none is free.
    Loops over patches, not holes: each round is one sparse product."""
    from scipy import sparse

    n = len(x)
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(radius, output_type="ndarray")
    rows = np.concatenate([np.arange(n), pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([np.arange(n), pairs[:, 1], pairs[:, 0]])
    near = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    seed = np.full(n, -1, dtype=np.int64)
    while (free := seed < 0).any():
        cover = np.where(free, near @ free, -1.0)
        first = int(np.argmax(cover))
        served = near.indices[near.indptr[first]:near.indptr[first + 1]]
        seed[served[free[served]]] = first
    return seed


def _patches(holes: pd.DataFrame, grouping: dict[int, int], radius: float) -> tuple[np.ndarray, str]:
    """Each hole's patch, named by the foil hole whose stage position serves it, and the rule used."""
    seed = np.empty(len(holes), dtype=np.int64)
    ids = holes["foil_hole"].to_numpy()
    position = {hole: i for i, hole in enumerate(ids)}
    rules = set()
    for _, rows in holes.groupby("square_id", sort=False).indices.items():
        in_square = set(rows.tolist())                  # a primary in another square does not count
        primary = [p if (p := position.get(grouping.get(h, h), i)) in in_square else i for h, i in zip(ids[rows], rows)]
        if np.any(np.asarray(primary) != rows):
            seed[rows] = primary
            rules.add("EPU's own grouping (PrimaryId / SecondaryTargetLocationIds)")
        else:
            seed[rows] = rows[_greedy_patches(holes["stage_x_um"].to_numpy()[rows],
                                              holes["stage_y_um"].to_numpy()[rows], radius)]
            rules.add(f"greedy cover: holes within {radius:g} µm of a foil hole's stage position")
    return seed, "; ".join(sorted(rules))


# ------------------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True, eq=False)
class EpuGrid:
    """An EPU session as a grid.

    Attributes:
        atlas: the grid (holes ``FoilHole_<id>``, squares ``GridSquare_<id>``, tiles ``Tile_<id>``, patches
            ``Patch_<id of the foil hole serving it>``); positions in µm relative to the patch's stage position.
        holes: one row per atlas hole, in atlas order: ``hole, foil_hole, tile, square, patch, stage_x_um,
            stage_y_um, image_x_px, image_y_px`` (position in the square image), ``near_grid_bar, selected``
            (nullable booleans), ``intensity_mean, intensity_sd`` (EPU's ice filter), ``relative_thickness,
            predicted_ctf, probability_good, exposures`` (count), ``true_ctf`` (Å, NaN if unknown), ``state,
            source`` (the file that listed the hole).
        exposures: one row per exposure, by time: ``micrograph, foil_hole, hole, square, time`` (EPU's clock, from
            the name), ``xml_time`` (the Data XML's ``acquisitionDateTime``), ``in_dm, in_xml, ctf_max_res``.
        squares: one row per grid square the session knows: ``square, square_id, tile, atlas_x_px, atlas_y_px,
            square_stage_x_um, square_stage_y_um, has_dm, holes``.
        trace: the operator's collection order (holes by first exposure) with minutes since the first exposure.
        missing: one line per kind of thing the session lacks.
        patch_rule: how patches were formed, with the radius.
        ice_model: the mapping of relative thickness to predicted CTFMaxRes.
    """

    atlas: Atlas
    holes: pd.DataFrame
    exposures: pd.DataFrame
    squares: pd.DataFrame
    trace: HumanTrace
    missing: tuple[str, ...]
    patch_rule: str
    ice_model: IceModel
    session: str
    source: str

    @property
    def stage_um(self) -> tuple[np.ndarray, np.ndarray]:
        """Stage x, y (µm) of every atlas hole (as :func:`cryorl.planning.make_plan` takes them)."""
        return self.holes["stage_x_um"].to_numpy(np.float64), self.holes["stage_y_um"].to_numpy(np.float64)


def _boolean(values: list) -> pd.Series:
    return pd.Series(pd.array(values, dtype="boolean"))


def _foil_holes(folder: Path, missing: list[str]) -> tuple[pd.DataFrame, dict, list, list, pd.DataFrame, str | None]:
    """Every foil hole the session knows: the GridSquare .dm entries, then those known only from their FoilHole or
    Data XML. Returns the holes, EPU's patch grouping, the squares with a .dm, the .dm's exposures, the Data XML's
    exposures, and the note on XML-only holes (None without any)."""
    hole_rows, exposure_rows, grouping, with_dm = [], [], {}, []
    for dm in sorted((folder / "Metadata").glob("GridSquare_*.dm")):
        square, holes, exposures, groups = _read_grid_square(dm)
        with_dm.append(square)
        hole_rows += holes
        exposure_rows += exposures
        grouping.update(groups)
        if not holes:
            missing.append(f"{dm.name} lists no foil holes")
    image_holes, image_exposures = _read_image_folders(folder)

    holes = pd.DataFrame(hole_rows, columns=_HOLE_COLUMNS)
    known = set(holes["foil_hole"])
    extra = pd.DataFrame(image_holes, columns=["foil_hole", "square_id", "stage_x_um", "stage_y_um", "time", "source"])
    extra = extra.sort_values("time", kind="stable").drop_duplicates("foil_hole", keep="last")   # EPU's last image
    from_data = pd.DataFrame(image_exposures, columns=["micrograph", "foil_hole", "square_id", "stage_x_um",
                                                       "stage_y_um", "xml_time"])
    data_holes = (from_data.groupby("foil_hole").agg(square_id=("square_id", "first"),
                                                     stage_x_um=("stage_x_um", "median"),
                                                     stage_y_um=("stage_y_um", "median")).reset_index()
                  .assign(source="Data XML"))
    extra = pd.concat([extra.drop(columns="time"), data_holes[~data_holes["foil_hole"].isin(extra["foil_hole"])]])
    extra = extra[~extra["foil_hole"].isin(known)].sort_values(["square_id", "foil_hole"])
    xml_only = None
    if len(extra):
        n_squares = extra["square_id"].nunique()
        xml_only = (f"{len(extra)} foil holes of {n_squares} square{'s' * (n_squares > 1)} are known only from "
                    "their FoilHole/Data XML (no GridSquare .dm entry): no ice-filter intensity, position in the "
                    "square image, grid-bar flag or selection")
        extra = extra.assign(order=np.nan, image_x_px=np.nan, image_y_px=np.nan, near_grid_bar=None, selected=None,
                             intensity_mean=np.nan, intensity_sd=np.nan, state=None, primary=-1)
        holes = pd.concat([holes, extra[_HOLE_COLUMNS]], ignore_index=True)
    if holes.empty:
        raise DataFileError(folder, "no foil holes: no Metadata/GridSquare_*.dm lists any, and no "
                                    "Images-Disc*/GridSquare_*/FoilHoles or Data XML names any")
    holes["near_grid_bar"] = _boolean(holes["near_grid_bar"].tolist())
    holes["selected"] = _boolean(holes["selected"].tolist())
    return holes, grouping, with_dm, exposure_rows, from_data, xml_only


def _squares(square_ids: list, nodes: pd.DataFrame, atlas_file: Path | None, with_dm: list, holes: pd.DataFrame,
             missing: list[str]) -> pd.DataFrame:
    """One row per square (the session's, the .dm files', the image folders'), on its atlas tile."""
    squares = pd.DataFrame({"square_id": square_ids}).merge(nodes, on="square_id", how="left")
    squares.insert(0, "square", [f"GridSquare_{s}" for s in squares["square_id"]])
    off_atlas = squares["tile"].isna()
    if atlas_file is not None and off_atlas.any():
        missing.append(f"{int(off_atlas.sum())} squares are on no tile of {atlas_file.name} (e.g. "
                       f"{squares['square'][off_atlas].iloc[0]}): each is its own atlas tile")
    squares["tile"] = squares["tile"].where(~off_atlas, squares["square"] + " (no atlas tile)")
    squares["has_dm"] = squares["square_id"].isin(with_dm)
    squares["holes"] = squares["square_id"].map(holes["square_id"].value_counts()).fillna(0).astype(int)
    no_dm = squares[~squares["has_dm"]]
    if len(no_dm):
        with_holes = int((no_dm["holes"] > 0).sum())
        missing.append(f"{len(no_dm)} of {len(squares)} squares have no Metadata/GridSquare_<id>.dm (e.g. "
                       f"{no_dm['square'].iloc[0]}): {len(no_dm) - with_holes} without any foil hole known, "
                       f"{with_holes} with foil holes from their XML only")
    return squares


def _patch_radius(session: _Session, patch_radius_um: float | None) -> tuple[float, str]:
    """The radius (µm) of greedy patch clustering and where it comes from."""
    if patch_radius_um is not None:
        return float(patch_radius_um), "patch_radius_um"
    if session.clustering not in (None, "NoClustering") and session.clustering_radius_um > 0:
        return session.clustering_radius_um, f"EPU's ClusteringRadius ({session.clustering})"
    if np.isfinite(session.max_image_shift_um) and session.max_image_shift_um > 0:
        return session.max_image_shift_um, "EpuSession.dm TargetAreaTemplate/MaximumImageShift"
    return DEFAULT_PATCH_RADIUS_UM, "cryorl.formats.epu.DEFAULT_PATCH_RADIUS_UM"


def _with_patches(holes: pd.DataFrame, square_ids: list, squares: pd.DataFrame, grouping: dict, radius: float,
                  said: str) -> tuple[pd.DataFrame, str]:
    """Holes in patches (EPU's grouping, else greedy clustering within ``radius``), in square and patch order,
    with positions relative to the patch's centre hole and their names; and the rule that made the patches."""
    square_rank = {s: i for i, s in enumerate(square_ids)}
    holes["_square"] = holes["square_id"].map(square_rank)
    holes = holes.sort_values(["_square", "order", "foil_hole"], kind="stable", na_position="last",
                              ignore_index=True)
    seed, patch_rule = _patches(holes, grouping, radius)
    if "greedy" in patch_rule:
        patch_rule += f" (radius from {said})"
    holes["patch"] = [f"Patch_{h}" for h in holes["foil_hole"].to_numpy()[seed]]
    holes["x"] = holes["stage_x_um"].to_numpy() - holes["stage_x_um"].to_numpy()[seed]
    holes["y"] = holes["stage_y_um"].to_numpy() - holes["stage_y_um"].to_numpy()[seed]
    holes["_seed"] = seed
    holes = holes.sort_values(["_square", "_seed"], kind="stable", ignore_index=True)
    holes["hole"] = [f"FoilHole_{h}" for h in holes["foil_hole"]]
    holes["square"] = [f"GridSquare_{s}" for s in holes["square_id"]]
    holes["tile"] = holes["square_id"].map(dict(zip(squares["square_id"], squares["tile"])))
    return holes, patch_rule


def _exposures(exposure_rows: list, from_data: pd.DataFrame) -> pd.DataFrame:
    """The exposures of the .dm's and the Data XML's, one row per micrograph in the order of EPU's clock."""
    exposures = pd.DataFrame(exposure_rows, columns=["micrograph", "foil_hole", "square_id"]).drop_duplicates(
        "micrograph").assign(in_dm=True)
    exposures = exposures.merge(from_data[["micrograph", "foil_hole", "square_id", "xml_time"]].assign(in_xml=True),
                                on="micrograph", how="outer", suffixes=("", "_xml"))
    for column in ("foil_hole", "square_id"):
        exposures[column] = exposures[column].fillna(exposures.pop(f"{column}_xml")).astype(np.int64)
    exposures["in_dm"] = exposures["in_dm"].astype("boolean").fillna(False).astype(bool)
    exposures["in_xml"] = exposures["in_xml"].astype("boolean").fillna(False).astype(bool)
    exposures["xml_time"] = pd.to_datetime(exposures["xml_time"])
    stamp = exposures["micrograph"].str.extract(EPU_MICROGRAPH)
    exposures["time"] = pd.to_datetime(stamp["date"] + stamp["time"], format="%Y%m%d%H%M%S")
    exposures["hole"] = "FoilHole_" + exposures["foil_hole"].astype(str)
    exposures["square"] = "GridSquare_" + exposures["square_id"].astype(str)
    return exposures.sort_values(["time", "micrograph"], ignore_index=True)


def _measured_ctf(exposures: pd.DataFrame, ctf: str | os.PathLike | pd.DataFrame | None,
                  missing: list[str]) -> np.ndarray:
    """CTFMaxRes (Å) of every exposure from the CTF results (NaN where there is none); notes what does not match."""
    if ctf is None:
        return np.full(len(exposures), np.nan)
    if isinstance(ctf, pd.DataFrame):
        table, label = ctf.assign(micrograph=micrograph_core(ctf["micrograph"])), "the CTF table"
    else:
        table, label = read_ctf_results(ctf), Path(ctf).name
    values = table.dropna(subset=["micrograph"]).set_index("micrograph")["ctf_max_res"]
    measured = exposures["micrograph"].map(values)
    unmatched = int((~table["micrograph"].isin(set(exposures["micrograph"]))).sum())
    if unmatched:
        missing.append(f"{unmatched} of {len(table)} micrographs in {label} match no exposure of the session")
    without = int(measured.isna().sum())
    if without:
        holes_without = len(set(exposures["hole"]) - set(exposures["hole"][measured.notna()]))
        missing.append(f"{without} of {len(exposures)} exposures have no CTF estimate in {label}: "
                       f"{holes_without} exposed holes without a true CTFMaxRes")
    return measured.to_numpy(np.float64)


def load_epu_session(path: str | os.PathLike, *, ctf: str | os.PathLike | pd.DataFrame | None = None,
                     ctf_rule: CtfRule = "best", patch_radius_um: float | None = None,
                     atlas_path: str | os.PathLike | None = None, ice_model: IceModel | None = None,
                     threshold: float = 6.0) -> EpuGrid:
    """Open an EPU session folder (or its ``EpuSession.dm``) as a grid; see the module docstring for what is read
    and how. ``ctf``: a RELION STAR file, a CTFFIND output folder, or a table with ``micrograph`` (EPU name) and
    ``ctf_max_res`` columns. ``threshold`` (Å) is the one ``probability_good`` is about."""
    if ctf_rule not in CTF_RULES:
        raise ValueError(f"unknown CTF rule {ctf_rule!r}; choose one of {', '.join(CTF_RULES)}")
    if patch_radius_um is not None and not (np.isfinite(patch_radius_um) and patch_radius_um > 0):
        raise ValueError(f"patch_radius_um must be a positive number of µm, not {patch_radius_um!r}")
    folder = Path(path).expanduser()
    folder = folder.parent if folder.is_file() else folder
    if not is_epu_session(folder):
        raise FileNotFoundError(f"no EPU session at {folder} (no EpuSession.dm, Metadata/GridSquare_*.dm or "
                                "Images-Disc*/GridSquare_* folder)")
    missing: list[str] = []
    ice_model = ice_model or IceModel()

    session_file = folder / "EpuSession.dm"
    if session_file.is_file():
        session = _read_session(session_file)
    else:
        session = _Session(folder.name, [], None, None, 0.0, np.nan)
        missing.append("no EpuSession.dm: squares from Metadata/ and Images-Disc*/ only, no patch radius stated")
    atlas_file, looked = _find_atlas(folder, session.atlas_id, Path(atlas_path).expanduser() if atlas_path else None)
    nodes = _read_atlas(atlas_file) if atlas_file is not None else pd.DataFrame(
        columns=["square_id", "tile", "atlas_x_px", "atlas_y_px", "square_stage_x_um", "square_stage_y_um"])
    if atlas_file is None:
        missing.append(f"no Atlas.dm (looked for {looked[0]} and {len(looked) - 1} other places; pass atlas_path=): "
                       "every square is its own atlas tile")

    holes, grouping, with_dm, exposure_rows, from_data, xml_only = _foil_holes(folder, missing)
    square_ids = list(dict.fromkeys([*session.squares, *with_dm, *holes["square_id"]]))
    squares = _squares(square_ids, nodes, atlas_file, with_dm, holes, missing)
    if xml_only is not None:
        missing.append(xml_only)
    holes, patch_rule = _with_patches(holes, square_ids, squares, grouping, *_patch_radius(session, patch_radius_um))
    exposures = _exposures(exposure_rows, from_data)
    exposures["ctf_max_res"] = _measured_ctf(exposures, ctf, missing)
    per_hole = combine_ctf(exposures["hole"].to_numpy(), exposures["ctf_max_res"].to_numpy(),
                           exposures["time"].to_numpy(), ctf_rule)
    holes["true_ctf"] = holes["hole"].map(per_hole).astype(np.float64)
    holes["exposures"] = holes["hole"].map(exposures["hole"].value_counts()).fillna(0).astype(np.int64)
    holes, atlas = _predicted(holes, ice_model, threshold, folder, missing)
    squares = squares[["square", "square_id", "tile", "atlas_x_px", "atlas_y_px", "square_stage_x_um",
                       "square_stage_y_um", "has_dm", "holes"]]

    first = exposures.drop_duplicates("hole")
    minutes = (first["time"] - exposures["time"].min()).dt.total_seconds().to_numpy() / 60.0 if len(first) else None
    trace = HumanTrace(f"EPU {session.name}", tuple(first["hole"]), minutes, str(folder))
    return EpuGrid(atlas=atlas, holes=holes, exposures=exposures[["micrograph", "foil_hole", "hole", "square", "time",
                                                                  "xml_time", "in_dm", "in_xml", "ctf_max_res"]],
                   squares=squares, trace=trace, missing=tuple(missing), patch_rule=patch_rule,
                   ice_model=ice_model, session=session.name, source=str(folder))


def _predicted(holes: pd.DataFrame, ice_model: IceModel, threshold: float, folder: Path,
               missing: list[str]) -> tuple[pd.DataFrame, Atlas]:
    """Predicted CTFMaxRes from the ice filter and its probability of good; the holes' columns in their final
    order, and the grid as an :class:`Atlas`."""
    from cryorl.calibration import default_calibration

    holes["relative_thickness"] = relative_thickness(holes["intensity_mean"].to_numpy(np.float64),
                                                     holes["square_id"].to_numpy())
    holes["predicted_ctf"] = ice_model.predicted_ctf(holes["relative_thickness"].to_numpy())
    no_intensity = int(holes["intensity_mean"].isna().sum())
    if no_intensity:
        missing.append(f"{no_intensity} of {len(holes)} foil holes have no ice-filter intensity "
                       f"(PixelIntensityMean): predicted the worst, {MAX_FEATURE_CTF:g} Å")
    atlas = Atlas.from_frame(holes[["hole", "tile", "square", "patch", "x", "y", "true_ctf", "predicted_ctf"]],
                             position_unit="um", source=str(folder))
    holes["probability_good"] = default_calibration(threshold).probability_good(atlas)
    holes = holes[["hole", "foil_hole", "tile", "square", "patch", "stage_x_um", "stage_y_um", "image_x_px",
                   "image_y_px", "near_grid_bar", "selected", "intensity_mean", "intensity_sd",
                   "relative_thickness", "predicted_ctf", "probability_good", "exposures", "true_ctf", "state",
                   "source"]]
    return holes, atlas


# ---------------------------------------------------------------------------------------- the format registry
def _as_grid(path: Path, split: str | None, **options) -> Grid:
    epu = load_epu_session(path, **options)
    return Grid(epu.atlas, path, "epu", None, trace=epu.trace, stage=epu.stage_um, notes=epu.missing,
                extra={"epu": epu})


EPU_SESSION = register_format(GridFormat(
    "epu", "a Thermo Fisher EPU session folder (EpuSession.dm, Metadata/GridSquare_*.dm, Images-Disc*/) or its "
    "EpuSession.dm; the CTF from --ctf (a RELION STAR file or a CTFFIND folder)",
    is_epu_session, lambda path: [], _as_grid, options=("ctf", "ctf_rule", "patch_radius_um", "atlas_path")))
