"""CTF estimates of micrographs from the processing pipeline: RELION STAR files and CTFFIND output folders.

Acquisition software records no CTF; the pipeline estimates it per micrograph and names the micrograph after the
movie it was made from. Two sources are read, each into one table ``micrograph, ctf_max_res, name`` (CTFMaxRes in
Å: the resolution up to which the CTF's Thon rings were fitted; lower is better):

- a RELION STAR file (``micrographs_ctf.star`` of a CtfFind job, RELION 3.0 or 3.1+, read with ``starfile``):
  the data block with the columns ``rlnMicrographName`` and ``rlnCtfMaxResolution``;
- a CTFFIND output folder (searched recursively): one ``<micrograph>.txt`` per micrograph, as CTFFIND 4 and 5
  write it — comment lines starting ``#`` (the first is ``# Output from CTFFind …``) and one row of at least seven
  numbers: micrograph number, defocus 1 and 2 (Å), astigmatism azimuth (°), additional phase shift (rad), cross
  correlation, and the spacing up to which CTF rings were fit successfully (Å): CTFMaxRes. The file's stem names
  the micrograph. Rotational averages (``*_avrot.txt``) and other text files are not CTFFIND results and are
  skipped.

Micrograph names are matched on their EPU core, ``FoilHole_<hole>_Data_<area>_<setting>_<yyyymmdd>_<hhmmss>``,
wherever it stands in a path or stem, so ``MotionCorr/job002/Movies/FoilHole_…_102527_fractions.mrc``,
``…_102527_EER.mrc`` and ``FoilHole_…_102527.tiff`` all name the exposure ``FoilHole_…_102527``
(:func:`micrograph_core`). A name without that core is kept with ``micrograph`` NaN; it matches no EPU exposure.

Values: a CTFMaxRes ≤ 0 is a micrograph without an estimate (kept as NaN, counted by the caller); ``inf`` or a
value ≥ 100 Å is a failed fit (a bad exposure, as in :mod:`cryorl.atlas`); anything that is not a number is a
:class:`~cryorl.loaders.DataFileError` naming the file and micrograph. A micrograph listed twice is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.loaders import DataFileError

__all__ = ["EPU_MICROGRAPH", "micrograph_core", "read_relion_ctf", "read_ctffind_folder", "read_ctf_results"]

EPU_MICROGRAPH = (r"(FoilHole_(?P<foil_hole>\d+)_Data_(?P<area>\d+)_(?P<setting>\d+)"
                  r"_(?P<date>\d{8})_(?P<time>\d{6}))(?!\d)")
"""The core of an EPU exposure name (a file name, never XML content): foil hole, data acquisition area, acquisition
setting, date and time of the exposure."""
CTFFIND_HEADER = "# Output from CTFFind"
CTFFIND_MAX_RES_COLUMN = 6
"""0-based column of CTFFIND's "spacing up to which CTF rings were fit successfully" (Å)."""
RELION_NAME, RELION_MAX_RES = "rlnMicrographName", "rlnCtfMaxResolution"


def micrograph_core(names: pd.Series) -> pd.Series:
    """The EPU core of each micrograph name or path (see the module docstring); NaN where there is none."""
    base = names.astype(str).str.replace("\\", "/", regex=False).str.rsplit("/", n=1).str[-1]
    return base.str.extract(EPU_MICROGRAPH)[0]


def _table(path: Path, names: pd.Series, raw: pd.Series, what: str) -> pd.DataFrame:
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    bad = np.isnan(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFileError(path, f"micrograph {names.iloc[i]!r}: {what} {raw.iloc[i]!r} is not a number")
    values = np.where(values > 0, values, np.nan)       # ≤ 0: no estimate
    table = pd.DataFrame({"micrograph": micrograph_core(names).to_numpy(), "ctf_max_res": values,
                          "name": names.astype(str).to_numpy()})
    known = table["micrograph"].notna()
    repeated = table["micrograph"].duplicated(keep="first") & known
    if repeated.any():
        i = int(np.flatnonzero(repeated.to_numpy())[0])
        first = table.loc[table["micrograph"] == table["micrograph"].iloc[i], "name"].iloc[0]
        raise DataFileError(path, f"micrograph {table['micrograph'].iloc[i]} is listed twice ({first!r} and "
                                  f"{table['name'].iloc[i]!r})")
    return table


def read_relion_ctf(path: str | os.PathLike) -> pd.DataFrame:
    """A RELION STAR file's CTFMaxRes per micrograph: ``micrograph`` (EPU core), ``ctf_max_res`` (Å), ``name``."""
    import starfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"STAR file not found: {path}")
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=[RELION_NAME])
    except Exception as error:          # starfile raises plain exceptions of several kinds on a malformed file
        raise DataFileError(path, f"not a readable STAR file ({type(error).__name__}: {error})") from None
    tables = [(name, block) for name, block in blocks.items()
              if isinstance(block, pd.DataFrame) and {RELION_NAME, RELION_MAX_RES} <= set(block.columns)]
    if not tables:
        found = ", ".join(f"data_{name}" for name in blocks) or "none"
        raise DataFileError(path, f"no data block with columns {RELION_NAME} and {RELION_MAX_RES} (blocks: {found})")
    _, block = tables[0]
    return _table(path, block[RELION_NAME], block[RELION_MAX_RES], RELION_MAX_RES)


def _read_ctffind_file(path: Path) -> tuple[str, str] | None:
    """The CTFMaxRes field of one CTFFIND output file, or None when the file is not CTFFIND output."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        return None
    if not lines or not lines[0].startswith(CTFFIND_HEADER):
        return None
    rows = [(number, line.split()) for number, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith("#")]
    if len(rows) != 1:
        raise DataFileError(path, f"{len(rows)} result rows; CTFFIND output names one micrograph per file")
    number, fields = rows[0]
    if len(fields) <= CTFFIND_MAX_RES_COLUMN:
        raise DataFileError(path, f"{len(fields)} columns; CTFFIND writes at least {CTFFIND_MAX_RES_COLUMN + 1} "
                                  "(the 7th is the fit's CTFMaxRes)", number)
    return path.stem, fields[CTFFIND_MAX_RES_COLUMN]


def read_ctffind_folder(path: str | os.PathLike) -> pd.DataFrame:
    """CTFMaxRes per micrograph from a folder of CTFFIND output files (recursively): ``micrograph`` (EPU core),
    ``ctf_max_res`` (Å), ``name`` (the file stem)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"CTFFIND output folder not found: {path}")
    found = [result for file in sorted(path.rglob("*.txt")) if not file.name.endswith("_avrot.txt")
             if (result := _read_ctffind_file(file)) is not None]
    if not found:
        raise DataFileError(path, f"no CTFFIND output here (*.txt files whose first line is '{CTFFIND_HEADER} …')")
    names, values = (pd.Series(column, dtype=object) for column in zip(*found))
    return _table(path, names, values, "CTFMaxRes (column 7)")


def read_ctf_results(path: str | os.PathLike) -> pd.DataFrame:
    """CTF estimates from a RELION STAR file or a CTFFIND output folder (by what ``path`` is)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_ctffind_folder(path)
    if path.suffix.lower() == ".star":
        return read_relion_ctf(path)
    if not path.exists():
        raise FileNotFoundError(f"CTF results not found: {path} (a RELION .star file or a CTFFIND output folder)")
    raise DataFileError(path, "not a RELION .star file or a CTFFIND output folder")
