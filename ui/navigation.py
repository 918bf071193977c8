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


def run_through_declared_navigation() -> None:
    """Call first in every page: make sure the page runs inside `app.py`'s `st.navigation`.

    Streamlit 1.67 decides once per server process, from the mere existence of `pages/`, to run the
    legacy multipage mode (`PagesManager.uses_pages_directory`, streamlit/runtime/pages_manager.py),
    and only a call of `st.navigation` clears that flag (streamlit/commands/navigation.py). Until
    someone opens `/`, a server's sessions run the page files directly with auto-discovered pages: a
    shared link to `/Compare` on a freshly started server showed a sidebar of "app, Calculator,
    Compare, GPUs and prices, Verification" (seen in the browser test). A page that finds the flag
    set clears it and reruns, and the rerun goes through `app.py`, which serves the same URL path.
    """
    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
