"""What both inference features read from a table: the columns that name independent paths or
cells, and long ``time``/``species``/``count`` rows turned wide (one column per species)."""

from __future__ import annotations

import pandas as pd

ID_COLUMNS = ("trajectory", "cell")  # a column that tells independent paths (or cells) apart


def long_to_wide(df: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Long ``species``/``count`` rows as one column per species, one row per ``index`` value."""
    wide = df.pivot_table(index=index, columns="species", values="count", aggfunc="first").reset_index()
    wide.columns.name = None
    return wide
