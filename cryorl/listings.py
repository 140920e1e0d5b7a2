"""What the command line lists without importing the modules that register it: committed tables in ``resources/``.

The agent names (``cryorl evaluate --help``) come from the policy registry, which pandas-using modules fill; the
perception backbones (``cryorl perception models``) from the model registry, which needs torch to build each model
and count its parameters and GMACs; the grid formats ``--data`` reads from the format registry. They are read here
from ``resources/policies.csv``, ``resources/perception_models.csv`` and ``resources/grid_formats.csv`` with the
standard library only, and regenerated from their registries by

    python -m cryorl.listings --write

(``tests/test_listings.py`` fails when a committed table differs from what its registry generates.)
"""
from __future__ import annotations

import csv
import fnmatch
import io
import sys
from pathlib import Path

from cryorl.resources import RESOURCES

__all__ = ["POLICY_TABLE", "MODEL_TABLE", "FORMAT_TABLE", "policy_names", "benchmark_agents", "perception_models",
           "grid_format_names", "format_models", "generated_tables", "write_tables"]

POLICY_TABLE = RESOURCES / "policies.csv"
MODEL_TABLE = RESOURCES / "perception_models.csv"
FORMAT_TABLE = RESOURCES / "grid_formats.csv"
POLICY_COLUMNS = ("name", "benchmark", "needs_truth", "description")
MODEL_COLUMNS = ("model", "family", "input", "params (M)", "GMACs", "description")
FORMAT_COLUMNS = ("name", "description")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def policy_names() -> tuple[str, ...]:
    """Every registered policy name, in registration order (as :func:`cryorl.agents.registry.policy_names`)."""
    return tuple(row["name"] for row in _rows(POLICY_TABLE))


def benchmark_agents() -> tuple[str, ...]:
    """The agents a benchmark runs by default (as :data:`cryorl.reporting.benchmark.DEFAULT_AGENTS`)."""
    return tuple(row["name"] for row in _rows(POLICY_TABLE) if row["benchmark"] == "True")


def grid_format_names() -> tuple[str, ...]:
    """Every registered grid format, in the order tried (as :func:`cryorl.formats.grid_formats`)."""
    return tuple(row["name"] for row in _rows(FORMAT_TABLE))


def perception_models(pattern: str = "*") -> list[dict[str, str]]:
    """Rows of the backbone table whose name matches a shell pattern, sorted by name (every row when none does,
    as ``model_table(list_models(pattern))`` lists)."""
    rows = sorted(_rows(MODEL_TABLE), key=lambda row: row["model"])
    return [row for row in rows if fnmatch.fnmatch(row["model"], pattern)] or rows


def format_models(rows: list[dict[str, str]]) -> str:
    """The backbone table as ``DataFrame.to_string(index=False)`` writes it with 3 decimals: every column right
    aligned to its widest cell, one space apart, a number's cells (and its header) led by a space for the sign."""
    numbers = ("params (M)", "GMACs")
    header = [f" {column}" if column in numbers else column for column in MODEL_COLUMNS]
    cells = [[f" {float(row[column]):.3f}" if column in numbers else row[column] for column in MODEL_COLUMNS]
             for row in rows]
    widths = [max(len(text) for text in column) for column in zip(header, *cells)]
    return "\n".join(" ".join(text.rjust(width) for text, width in zip(line, widths)) for line in [header, *cells])


def _csv(columns: tuple[str, ...], rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def generated_tables() -> dict[Path, str]:
    """Each committed table's text as its registry generates it now (imports the agents, and torch)."""
    from cryorl.agents.registry import policy_entries
    from cryorl.formats import grid_formats
    from cryorl.perception import model_table

    policies = [{"name": e.name, "benchmark": e.benchmark, "needs_truth": e.needs_truth,
                 "description": e.description} for e in policy_entries()]
    models = model_table().to_dict(orient="records")
    for row in models:                                 # full precision: the listing rounds to 3 decimals
        row["params (M)"], row["GMACs"] = repr(float(row["params (M)"])), repr(float(row["GMACs"]))
    formats = [{"name": f.name, "description": f.description} for f in grid_formats()]
    return {POLICY_TABLE: _csv(POLICY_COLUMNS, policies), MODEL_TABLE: _csv(MODEL_COLUMNS, models),
            FORMAT_TABLE: _csv(FORMAT_COLUMNS, formats)}


def write_tables() -> list[Path]:
    """Regenerate the committed tables from their registries; returns the paths written."""
    tables = generated_tables()
    for path, text in tables.items():
        path.write_text(text, encoding="utf-8")
    return list(tables)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m cryorl.listings --write   (regenerates resources/policies.csv, "
                 "resources/perception_models.csv and resources/grid_formats.csv from the registries)")
    for written in write_tables():
        print(f"wrote {written}")
