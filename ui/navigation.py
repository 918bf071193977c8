"""The app's pages, in sidebar order: file, title and icon on screen, and URL path.

`app.py` turns these into `st.navigation([st.Page(...)])`; tests read the same table, so the names
and the URL paths a shared link uses are stated once. With `st.navigation` Streamlit no longer
discovers `pages/` by itself (streamlit/navigation/page.py, 1.67): a file in `pages/` is a page only
when it is listed here. The URL paths are the ones `pages/` discovery gave each file before
(number prefix dropped), so every link shared before still opens the same page.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class NavPage:
    path: str  # relative to the repository root (st.Page resolves it against app.py's folder)
    title: str
    icon: str
    url_path: str  # "" = the app's root URL (the default page)

    @property
    def default(self) -> bool:
        return self.url_path == ""


NAV_PAGES: tuple[NavPage, ...] = (
    NavPage(path="pages/0_Calculator.py", title="Calculator", icon=":material/calculate:", url_path=""),
    NavPage(path="pages/1_Compare.py", title="Compare", icon=":material/compare_arrows:", url_path="Compare"),
    NavPage(path="pages/2_GPUs_and_prices.py", title="GPUs & prices", icon=":material/memory:", url_path="GPUs_and_prices"),
    NavPage(path="pages/3_Verification.py", title="Verification", icon=":material/fact_check:", url_path="Verification"),
)
