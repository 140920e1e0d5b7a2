"""Markdown tables from DataFrames (reports are built from tables, never from printed strings)."""
from __future__ import annotations

import pandas as pd

__all__ = ["markdown_table"]


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.1f}", index: bool = True) -> str:
    """A GitHub-flavoured Markdown table; index levels become leading columns when ``index``."""
    table = frame.reset_index() if index else frame
    header = [str(c) for c in table.columns]

    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else float_format.format(value)
        return str(value)

    rows = [[cell(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
