"""Markdown tables of the report, rendered by polars (its MARKDOWN table format), not by hand."""

from __future__ import annotations

import polars as pl


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a GitHub-flavoured Markdown table; every cell is text, shown in full."""
    frame = pl.DataFrame([list(map(str, r)) for r in rows], schema=[(h, pl.String) for h in header], orient="row")
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=10_000, tbl_width_chars=60_000):
        return str(frame).splitlines()
