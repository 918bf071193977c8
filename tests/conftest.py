"""Fixtures shared by the page tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def fresh_streamlit_caches():
    """st.cache_data / st.cache_resource outlive AppTest runs; start and end every page test empty."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
