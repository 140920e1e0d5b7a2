"""Loaders for the CryoRL/Leginon file format (as published with the CryoRL papers).

- CTF CSV, no header: ``name, x, y, ctf_max_res, confidence`` — one row per hole exposure. ``confidence`` is the
  CTF fit's correlation score: mostly 0-1, but unbounded (the published val split holds -0.016). Whole-session
  files also list the atlas tiles, squares and patches and the raw ``…en`` exposures beside their aligned ``…en-a``
  copies, with -1 for CTFMaxRes and confidence where there is no CTF estimate: such rows carry no hole exposure and
  are skipped and counted (``frame.attrs["skipped"]``).
- Predictions TXT, space separated, no header: ``name predicted_ctf_max_res`` (regressor), or
  ``name p_lt_6A p_ge_6A`` (the earlier two-class classifier).
- ``timestamps.csv``, no header: ``name, acquisition time`` for tiles, squares, patches and exposures.

Every parse error is a :class:`DataFileError` naming the file and the 1-based line.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cryorl.atlas import MAX_FEATURE_CTF, Atlas
from cryorl.leginon import is_target_name, parse_exposure_names

__all__ = [
    "DataFileError", "read_ctf_csv", "read_predictions", "read_timestamps", "load_cryorl_dataset",
    "dataset_files", "build_atlas", "available_splits", "read_cryorl_split", "read_predictions_files",
    "WHOLE_SESSION",
]

CTF_COLUMNS = ["name", "x", "y", "ctf_max_res", "confidence"]
NO_ESTIMATE_CTF = -1.0
"""CTFMaxRes written on the rows of the published whole-session files that have no CTF estimate."""
SKIPPED_NOT_EXPOSURE = "not an exposure (atlas tile, square or patch row)"
SKIPPED_NO_ESTIMATE = "no CTF estimate (CTFMaxRes -1)"
SKIPPED_RAW_COPY = "raw exposure beside its aligned copy"
MissingPolicy = Literal["error", "drop", "worst"]

DATASET_FILES = {
    "2023": {"ctf": "target_CTF_Y1_{split}.csv", "predictions": "Y1_2_regress_8bit_res50_{split}_by_hl.txt"},
    "2022": {"ctf": "CTF_{split}_by_hl.csv", "predictions": "2_cat_8bit_res50_{split}_by_hl.txt"},
}
"""File names of the published splits, by era of the CryoRL papers: the one table every reader and writer uses."""
TIMESTAMPS_FILE = "timestamps.csv"
"""A session's acquisition times (shared by the splits of a session)."""


def dataset_file(era: str, kind: str, split: str) -> str:
    """The CryoRL file name of ``kind`` ("ctf" or "predictions") for ``split`` in ``era`` ("2023" or "2022")."""
    return DATASET_FILES[era][kind].format(split=split)


def ctf_tables(directory: str | os.PathLike) -> list[Path]:
    """The CTF tables in a folder, of either era (2023 first), sorted by name."""
    directory = Path(directory)
    return [path for era in DATASET_FILES for path in sorted(directory.glob(dataset_file(era, "ctf", "*")))]


class DataFileError(ValueError):
    """A data file is malformed; ``path`` and ``line`` (1-based, or None) say where."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


def _read_text_table(path: Path, sep: str, what: str) -> pd.DataFrame:
    """Read a header-less text table as strings; rows keep their file line number as index (1-based)."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        raise DataFileError(path, f"the {what} is empty")
    try:
        frame = pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False,
                            skip_blank_lines=False, engine="c")
    except pd.errors.ParserError as error:
        # pandas says e.g. "Expected 5 fields in line 7, saw 6"
        message = str(error).strip().splitlines()[-1]
        line = None
        if " line " in message:
            try:
                line = int(message.split(" line ")[1].split(",")[0])
            except ValueError:
                pass
        raise DataFileError(path, f"inconsistent number of fields ({message})", line) from None
    except UnicodeDecodeError as error:
        raise DataFileError(path, f"not a text file ({error.reason} at byte {error.start})") from None
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    blank = (frame == "").all(axis=1)
    return frame[~blank]


def _numeric(frame: pd.DataFrame, column: str, path: Path, label: str | None = None) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna()
    if bad.any():
        line = int(bad.idxmax())
        value = raw.loc[line]
        label = label or str(column)
        if value == "":
            raise DataFileError(path, f"missing value for column {label!r}", line)
        raise DataFileError(path, f"column {label!r} has {value!r}, which is not a number", line)
    return values.to_numpy(np.float64)


def _check_unique(names: pd.Series, path: Path, what: str = "name") -> None:
    dup = names.duplicated(keep="first")
    if dup.any():
        line = int(dup.idxmax())
        first = int(names.index[(names == names.loc[line]).to_numpy()][0])
        raise DataFileError(path, f"{what} {names.loc[line]!r} repeats line {first}", line)


def read_ctf_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CryoRL CTF CSV (no header): ``name, x, y, ctf_max_res, confidence``.

    Returns a DataFrame of the hole exposures with those columns (index = file line). CTF-fit failures (≥ 100 Å,
    including the 100000 sentinel) are kept as they are; the Atlas treats them as bad holes. Rows that carry no hole
    exposure are skipped, and ``frame.attrs["skipped"]`` counts them by reason: atlas tile, square and patch rows,
    rows without a CTF estimate (CTFMaxRes -1), and raw ``…en`` exposures whose aligned ``…en-a`` copy is listed too.
    The confidence is kept whatever its value (a correlation score, not a probability).
    """
    path = Path(path)
    raw = _read_text_table(path, ",", "CTF table")
    if raw.shape[1] != len(CTF_COLUMNS):
        raise DataFileError(path, f"expected {len(CTF_COLUMNS)} columns ({', '.join(CTF_COLUMNS)}), "
                                  f"found {raw.shape[1]}", int(raw.index[0]))
    raw.columns = CTF_COLUMNS
    names = raw["name"].str.strip()
    empty = names == ""
    if empty.any():
        raise DataFileError(path, "missing hole name", int(empty.idxmax()))
    _check_unique(names, path, "hole name")
    out = pd.DataFrame({"name": names}, index=raw.index)
    for column in CTF_COLUMNS[1:]:
        out[column] = _numeric(raw, column, path)
    target = is_target_name(names).to_numpy()
    no_estimate = ~target & (out["ctf_max_res"] == NO_ESTIMATE_CTF).to_numpy()
    exposures = out[~target & ~no_estimate]
    raw_copy = _raw_copies(exposures["name"])
    skipped = {SKIPPED_NOT_EXPOSURE: int(target.sum()), SKIPPED_NO_ESTIMATE: int(no_estimate.sum()),
               SKIPPED_RAW_COPY: int(raw_copy.sum())}
    exposures = exposures[~raw_copy]
    if exposures.empty:
        raise DataFileError(path, f"no hole exposure with a CTF estimate among its {len(out)} rows "
                                  f"({_describe_skipped(skipped)})")
    _check_plausible(exposures, path)
    exposures.attrs["skipped"] = {reason: n for reason, n in skipped.items() if n}
    return exposures


def _raw_copies(names: pd.Series) -> np.ndarray:
    """Rows naming a raw exposure (``…en``) whose aligned copy (``…en-a``, any variant) is listed too."""
    is_raw = names.str.endswith("en").to_numpy()
    if not is_raw.any():
        return is_raw
    stems = names.str.replace(r"-[A-Za-z0-9]+$", "", regex=True)
    aligned = set(stems[~is_raw & (stems != names)])
    return is_raw & names.isin(aligned).to_numpy()


def _describe_skipped(skipped: dict[str, int]) -> str:
    text = ", ".join(f"{n} {reason}" for reason, n in skipped.items() if n)
    return text or "nothing skipped"


def _check_plausible(table: pd.DataFrame, path: Path) -> None:
    """CTFMaxRes must be a positive resolution, and columns 4 and 5 must not be swapped: judged on the majority of
    rows (a fit confidence is a correlation, mostly ≤ 1; a CTFMaxRes is a few Å), since a table with the two columns
    swapped would otherwise load as "every hole good"."""
    ctf, confidence = table["ctf_max_res"], table["confidence"]
    if (confidence > 1.5).mean() > 0.5 and (ctf.abs() <= 1.5).mean() > 0.5:
        line = int(table.index[0])
        raise DataFileError(path, f"most confidences look like CTFMaxRes values (here {float(confidence.loc[line]):g})"
                                  " and most CTFMaxRes values like fit confidences: are columns 4 and 5 swapped? "
                                  "(expected name, x, y, ctf_max_res in Å, confidence)", line)
    bad = ~(ctf > 0) | ~np.isfinite(ctf)
    if bad.any():
        line = int(bad.idxmax())
        raise DataFileError(path, f"CTFMaxRes {float(ctf.loc[line]):g} Å is not a positive resolution (failed fits are "
                                  "written as 100000, rows without an estimate as -1)", line)


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a predictions file: ``name predicted_ctf`` (Å) or ``name p_good p_bad`` (classifier probabilities).

    Returns columns ``name`` and either ``predicted_ctf`` or ``predicted_good`` (probability of CTF < 6 Å).
    """
    path = Path(path)
    raw = _read_text_table(path, r"\s+", "predictions file")
    if raw.shape[1] == 2:
        kind, labels = "regression", ["name", "predicted_ctf"]
    elif raw.shape[1] == 3:
        kind, labels = "classification", ["name", "predicted_good", "predicted_bad"]
    else:
        raise DataFileError(path, f"expected 2 fields (name, predicted CTFMaxRes) or 3 (name, P(CTF<6Å), "
                                  f"P(CTF≥6Å)) per line, found {raw.shape[1]}", int(raw.index[0]))
    raw.columns = labels
    names = raw["name"].str.strip()
    _check_unique(names, path, "hole name")
    out = pd.DataFrame({"name": names}, index=raw.index)
    for column in labels[1:]:
        out[column] = _numeric(raw, column, path)
    if kind == "regression":
        bad = ~np.isfinite(out["predicted_ctf"]) | (out["predicted_ctf"] < 0)
        if bad.any():
            line = int(bad.idxmax())
            raise DataFileError(path, f"predicted CTFMaxRes {out.loc[line, 'predicted_ctf']} is not a finite, "
                                      "non-negative number of Å", line)
    else:
        probs = out[["predicted_good", "predicted_bad"]]
        bad = ((probs < 0) | (probs > 1)).any(axis=1)
        if bad.any():
            line = int(bad.idxmax())
            raise DataFileError(path, f"class probabilities {probs.loc[line].tolist()} are not in [0, 1]", line)
        out = out.drop(columns="predicted_bad")
    return out


def read_timestamps(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``timestamps.csv``: ``name, time`` for tiles, squares, patches and exposures (local clock time)."""
    path = Path(path)
    raw = _read_text_table(path, ",", "timestamps file")
    if raw.shape[1] != 2:
        raise DataFileError(path, f"expected 2 columns (name, time), found {raw.shape[1]}", int(raw.index[0]))
    raw.columns = ["name", "time"]
    times = pd.to_datetime(raw["time"], errors="coerce", format="%Y-%m-%d %H:%M:%S")
    bad = times.isna()
    if bad.any():
        line = int(bad.idxmax())
        raise DataFileError(path, f"time {raw.loc[line, 'time']!r} is not 'YYYY-MM-DD HH:MM:SS'", line)
    names = raw["name"].str.strip()
    _check_unique(names, path, "name")
    return pd.DataFrame({"name": names, "time": times}, index=raw.index)


WHOLE_SESSION = "session"
"""The split name of a release's whole-session CTF file (``target_CTF_Y1.csv``), read with every split's
predictions."""
WHOLE_SESSION_FILES = {"2023": "target_CTF_Y1.csv"}


def available_splits(data_dir: str | os.PathLike, era: str | None = None) -> list[tuple[str, str]]:
    """The ``(era, split)`` pairs whose CTF table is in ``data_dir`` (2023 first, splits by name); the whole-session
    file is the split ``"session"``."""
    data_dir = Path(data_dir)
    found = []
    for name in [era] if era else list(DATASET_FILES):
        if name not in DATASET_FILES:
            raise ValueError(f"unknown era {name!r}; expected one of {sorted(DATASET_FILES)}")
        prefix, suffix = dataset_file(name, "ctf", "\0").split("\0")
        for path in sorted(data_dir.glob(dataset_file(name, "ctf", "*"))):
            found.append((name, path.name[len(prefix):len(path.name) - len(suffix)]))
        whole = WHOLE_SESSION_FILES.get(name)
        if whole and (data_dir / whole).is_file():
            found.append((name, WHOLE_SESSION))
    return found


def dataset_files(data_dir: str | os.PathLike, split: str = "train", era: str | None = None) -> dict:
    """The CTF table, predictions file(s) and timestamps of a downloaded split (``era`` "2023" or "2022"; None:
    detect). For the whole-session split ``"session"``, ``predictions`` lists every split's predictions file."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no data folder at {data_dir}")
    eras = [era] if era else list(DATASET_FILES)
    for name in eras:
        if name not in DATASET_FILES:
            raise ValueError(f"unknown era {name!r}; expected one of {sorted(DATASET_FILES)}")
        files = {kind: data_dir / dataset_file(name, kind, split) for kind in DATASET_FILES[name]}
        if not files["ctf"].exists() and split == WHOLE_SESSION and (data_dir / WHOLE_SESSION_FILES.get(name, "\0")
                                                                      ).is_file():
            files = {"ctf": data_dir / WHOLE_SESSION_FILES[name],
                     "predictions": sorted(data_dir.glob(dataset_file(name, "predictions", "*")))}
            if not files["predictions"]:
                raise FileNotFoundError(f"{files['ctf']}: no predictions file "
                                        f"({dataset_file(name, 'predictions', '*')}) beside the whole-session file")
        if files["ctf"].exists():
            files["timestamps"] = data_dir / TIMESTAMPS_FILE
            return files
    present = sorted({split for _, split in available_splits(data_dir, era)})
    looked = [str(data_dir / dataset_file(name, "ctf", split)) for name in eras]
    have = f"it holds {', '.join(map(repr, present))}" if present else "it holds no CryoRL CTF table"
    raise FileNotFoundError(f"no {split!r} split in {data_dir} (looked for {', '.join(looked)}; {have})")


def read_predictions_files(paths: list[Path]) -> pd.DataFrame:
    """Predictions from several files (every split's, for the whole session); a hole predicted twice is refused."""
    frames = [read_predictions(path).assign(_file=str(path)) for path in paths]
    kinds = {"predicted_ctf" in frame for frame in frames}
    if len(kinds) > 1:
        raise DataFileError(paths[0], "the predictions files mix regressor values and classifier probabilities")
    table = pd.concat(frames)
    repeated = table["name"].duplicated(keep="first")
    if repeated.any():
        name = table["name"][repeated].iloc[0]
        where = table.loc[table["name"] == name, "_file"].tolist()
        raise DataFileError(where[-1], f"hole {name!r} is predicted in {where[0]} too")
    return table.drop(columns="_file")


def build_atlas(ctf: pd.DataFrame, predictions: pd.DataFrame, *, ctf_path: Path, predictions_path: Path,
                missing_prediction: MissingPolicy = "error") -> Atlas:
    """Join a CTF table and predictions into an Atlas ordered by tile, square and patch name (holes keep their file
    order inside a patch, as in the CryoRL reference)."""
    if missing_prediction not in ("error", "drop", "worst"):
        raise ValueError(f"missing_prediction must be 'error', 'drop' or 'worst', not {missing_prediction!r}")
    parts, ok = parse_exposure_names(ctf["name"])
    if not ok.all():
        line = int(ok.index[(~ok).to_numpy()][0])
        raise DataFileError(ctf_path, f"hole name {ctf.loc[line, 'name']!r} does not parse as a Leginon exposure "
                                      "name (…_NNNNNgr_NNNNNsq_vNN_NNNNNhl_vNN_NNNNNen[-a])", line)
    parts = parts.drop(columns="patch_image")     # every image version of a target is one patch (cryorl.leginon)
    table = pd.concat([ctf, parts], axis=1).merge(predictions, on="name", how="left", indicator=True)
    table.index = ctf.index
    missing = (table["_merge"] == "left_only").to_numpy()
    extra = len(predictions) - int((~missing).sum())
    if extra:
        warnings.warn(f"{predictions_path}: {extra} predictions name holes absent from {ctf_path}; ignored",
                      stacklevel=3)
    if missing.any():
        if missing_prediction == "error":
            lines = table.index[missing]
            shown = ", ".join(f"{table.loc[i, 'name']!r} (line {i})" for i in lines[:3])
            raise DataFileError(predictions_path, f"{missing.sum()} holes of {ctf_path} have no prediction, e.g. "
                                                  f"{shown}; pass missing_prediction='drop' or 'worst' to decide")
        if missing_prediction == "drop":
            warnings.warn(f"dropping {missing.sum()} holes without a prediction in {predictions_path}", stacklevel=3)
            table = table[~missing]
        else:
            for column, worst in (("predicted_ctf", MAX_FEATURE_CTF), ("predicted_good", 0.0)):
                if column in table:
                    table.loc[missing, column] = worst
    order = np.lexsort((table["patch"].to_numpy(), table["square"].to_numpy(), table["tile"].to_numpy()))
    table = table.iloc[order]
    frame = pd.DataFrame({
        "hole": table["name"], "tile": table["tile"], "square": table["square"], "patch": table["patch"],
        "x": table["x"], "y": table["y"], "true_ctf": table["ctf_max_res"],
        "predicted_ctf": table["predicted_ctf"] if "predicted_ctf" in table else np.nan,
        "ctf_confidence": table["confidence"],
    })
    if "predicted_good" in table:
        frame["predicted_good"] = table["predicted_good"]
    return Atlas.from_frame(frame, position_unit="px", source=str(ctf_path))


def load_cryorl_dataset(data_dir: str | os.PathLike, split: str = "train", *, era: str | None = None,
                        predictions: str | os.PathLike | None = None,
                        missing_prediction: MissingPolicy = "error") -> Atlas:
    """Load a CryoRL split (as laid out by ``cryorl data download``) into an :class:`Atlas`.

    Args:
        data_dir: folder with the published files under their original names.
        split: "train", "val", or "session" (the whole-session file ``target_CTF_Y1.csv`` with every split's
            predictions).
        era: "2023" (``target_CTF_Y1_*`` + regressor predictions) or "2022" (``CTF_*_by_hl`` + classifier
            probabilities); None picks whichever is present, 2023 first.
        predictions: another predictions file to use instead of the published one.
        missing_prediction: what to do with holes that have no prediction: "error" (default), "drop" them, or
            give them the "worst" prediction (20 Å, or probability 0 of being good).

    The rows skipped as carrying no hole exposure are counted in ``read_cryorl_split``'s second value.
    """
    return read_cryorl_split(data_dir, split, era=era, predictions=predictions,
                             missing_prediction=missing_prediction)[0]


def read_cryorl_split(data_dir: str | os.PathLike, split: str = "train", *, era: str | None = None,
                      predictions: str | os.PathLike | None = None,
                      missing_prediction: MissingPolicy = "error") -> tuple[Atlas, dict[str, int], dict]:
    """:func:`load_cryorl_dataset`, also returning the skipped rows by reason and the files read."""
    files = dataset_files(data_dir, split, era)
    ctf = read_ctf_csv(files["ctf"])
    if predictions is not None:
        pred_path = Path(predictions)
        preds = read_predictions(pred_path)
    elif isinstance(files["predictions"], list):
        pred_path = files["predictions"][0]
        preds = read_predictions_files(files["predictions"])
    else:
        pred_path = files["predictions"]
        preds = read_predictions(pred_path)
    atlas = build_atlas(ctf, preds, ctf_path=files["ctf"], predictions_path=pred_path,
                        missing_prediction=missing_prediction)
    return atlas, dict(ctf.attrs.get("skipped", {})), files
