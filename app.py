"""VRAM & GPU cost calculator: the entry script (`streamlit run app.py`).

It only declares the navigation: the pages, their names in the sidebar and their URL paths come
from `ui/navigation.py`; the main page itself is `pages/0_Calculator.py`, served at `/`.
"""

from __future__ import annotations

import streamlit as st

from ui.navigation import NAV_PAGES

st.navigation([
    st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path or None, default=p.default) for p in NAV_PAGES
]).run()
