"""Number formatting for the pages' tables: bytes stay ints in the library and are converted here,
only when shown, with the unit in the column header."""

from __future__ import annotations

from typing import Any

import pandas as pd


def fixed_decimals(frame: pd.DataFrame, digits: int = 2) -> Any:
    """The frame for `st.dataframe` with every memory and price column (a header naming GiB, GB or $)
    at the same number of decimals: the grid trims trailing zeros, so a 0.30 GB component stood as
    "0.3" beside "0.47". Values stay numbers (the grid still sorts them); only the display is fixed.
    Missing values show as —. Other floats (marketed sizes, TFLOPS, error %) show as they are."""
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    fixed = [c for c in floats if any(u in str(c) for u in ("GiB", "GB", "$")) and "marketed" not in str(c) and "GB/s" not in str(c)]
    # Other floats as the value is (a Styler would otherwise print "16.000000" for a marketed 16 GB).
    percent = [c for c in floats if c not in fixed and "%" in str(c)]  # error % to one decimal, as computed
    rest = [c for c in floats if c not in fixed and c not in percent]
    return (frame.style.format(f"{{:,.{digits}f}}", subset=fixed, na_rep="—")
            .format("{:.1f}", subset=percent, na_rep="—")
            .format(lambda v: f"{v:,.10g}", subset=rest, na_rep="—"))
