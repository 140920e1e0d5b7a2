"""Environment presets: YAML files in ``envs/`` (shipped in the package, :mod:`cryorl.resources`) naming a grid and
the collection settings.

A preset has optional keys ``description``, ``grid`` (simulator settings: ``GridSpec`` fields), ``grid_seed``,
``data`` (``{dir, split, era, predictions, missing_prediction}`` for a CryoRL-format folder, or ``{table: path}``
for a hole table written by ``Atlas.save``; either with ``prediction_quality`` and ``prediction_seed`` to replace
its predictions by ones of that quality, :func:`cryorl.prediction_quality.with_prediction_quality`), ``costs``,
``budget``, ``threshold``, ``feature_set`` and ``max_holes``. Relative paths are relative to the YAML file;
``{cache}`` expands to the data cache folder (``$CRYORL_CACHE``, default ``~/.cache/cryorl``) and ``~`` to the
home folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from cryorl.resources import PRESET_DIR

__all__ = ["PRESET_DIR", "list_presets", "preset_path", "load_preset", "resolve_settings"]

KNOWN_KEYS = {"description", "grid", "grid_seed", "data", "costs", "budget", "threshold", "feature_set",
              "max_holes"}


def list_presets(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the presets in ``envs/`` (or ``directory``)."""
    directory = Path(directory) if directory else PRESET_DIR
    return sorted(p.stem for p in directory.glob("*.yaml"))


def preset_path(preset: str | os.PathLike) -> Path:
    """A preset's YAML file, from a path or a name in ``envs/``."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"no preset file {path}")
        return path
    candidate = PRESET_DIR / f"{preset}.yaml"
    if not candidate.exists():
        raise ValueError(f"unknown preset {preset!r}; presets in {PRESET_DIR}: {', '.join(list_presets())}")
    return candidate


def _resolve(value: str, base: Path) -> Path:
    from cryorl.download import cache_dir

    path = Path(os.path.expanduser(str(value).replace("{cache}", str(cache_dir()))))
    return path if path.is_absolute() else (base / path)


def load_preset(preset: str | os.PathLike) -> dict[str, Any]:
    """Read a preset into ``CryoEMEnv`` keyword arguments; a ``data`` section is loaded into ``atlas``."""
    path = preset_path(preset)
    with open(path) as handle:
        settings = yaml.safe_load(handle) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: a preset must be a mapping of settings, not {type(settings).__name__}")
    unknown = set(settings) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown preset keys {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    settings.pop("description", None)
    data = settings.pop("data", None)
    if data is not None:
        from cryorl.formats import load_grid

        if "table" in data:
            settings["atlas"] = load_grid(_resolve(data["table"], path.parent)).atlas
        else:
            options = {k: data[k] for k in ("era", "missing_prediction") if k in data}
            if "predictions" in data:
                options["predictions"] = _resolve(data["predictions"], path.parent)
            settings["atlas"] = load_grid(_resolve(data["dir"], path.parent), data.get("split"), **options).atlas
        if "prediction_quality" in data:
            from cryorl.prediction_quality import with_prediction_quality

            settings["atlas"] = with_prediction_quality(settings["atlas"], data["prediction_quality"],
                                                        int(data.get("prediction_seed", 0)))
    return settings


def resolve_settings(preset: str | os.PathLike | None, atlas, defaults: dict[str, Any], **explicit: Any):
    """The environment's ``(atlas, settings)``: each setting is the explicit argument where one is given (not None,
    even at its default's value), else the preset's, else ``defaults``'; an explicit atlas wins over the preset's
    data."""
    if preset is not None:
        loaded = load_preset(preset)
        preset_atlas = loaded.pop("atlas", None)
        atlas = atlas if atlas is not None else preset_atlas
        explicit = {k: v if v is not None else loaded.get(k) for k, v in explicit.items()}
    return atlas, {k: v if v is not None else defaults.get(k) for k, v in explicit.items()}
