"""Number formatting for the pages' tables: bytes stay ints in the library and are converted here,
only when shown, with the unit in the column header."""

from __future__ import annotations

from typing import Any

import pandas as pd


def fixed_decimals(frame: pd.DataFrame, digits: int = 2) -> Any:
    """The frame for `st.dataframe` with every memory and price column (a header naming GiB, GB or $)
    at the same number of decimals: the grid trims trailing zeros, so a 0.30 GB component stood as
    "0.3" beside "0.47". Values stay numbers (the grid still sorts them); only the display is fixed.
    Missing values show as —. Marketed sizes and bandwidths are whole numbers and stay as they are."""
    cols = [c for c in frame.columns
            if pd.api.types.is_float_dtype(frame[c]) and any(u in str(c) for u in ("GiB", "GB", "$")) and "marketed" not in str(c)
            and "GB/s" not in str(c)]
    return frame.style.format(f"{{:,.{digits}f}}", subset=cols, na_rep="—")
