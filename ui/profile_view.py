""""Analytic vs trace profile" on the Verification page, and the profile spinner for new architectures.

A profile (`calculator.profile`) traces 2-5 layer copies of the model at four sizes per mode; it
takes from about 15 s (a Llama-like decoder) to a few minutes (Mamba's token-by-token reference
scan) on one CPU core, and is cached on disk afterwards.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from calculator.errors import CalculatorError
from calculator.profile import ProfileUnavailableError, cached_profile, get_profile, settings_for
from calculator.units import GiB

from .formatting import fixed_decimals

# CPU seconds of `make_profile` on default configs (benchmarks/results/profile_speed_after.txt: llama 11, phi 9,
# qwen3_moe 11, gemma2 31, mamba2 19); wall time is longer on a busy machine.
PROFILE_SECONDS_HINT = "about 10-30 s for most decoders, a minute or more for Mamba-like models"


def _table(data: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([
        {"Component": r["component"], "Analytic (GiB)": round(r["analytic_bytes"] / GiB, 3), "Trace profile (GiB)": round(r["profile_bytes"] / GiB, 3),
         "Difference %": None if r["difference_pct"] is None else round(r["difference_pct"], 1)}
        for r in data["rows"]
    ])


def analytic_vs_profile(spec: Any, workload: Any) -> None:
    """An expander comparing the analytic estimate with the profile-based one (full depth)."""
    from calculator.verify.compare import analytic_vs_profile as compare

    if spec.counted_by != "analytic" or not spec.raw_config or workload.runtime == "vllm":
        return
    with st.expander("Analytic formulas vs trace profile (full model)", icon=":material/compare_arrows:"):
        st.caption(
            "The trace profile fits per-layer terms (bytes per token, per token², constants) from traces of 2-5 layer copies, "
            "and scales them to the full depth, context and batch: the path used for architectures the formulas do not know."
        )
        settings = settings_for(workload)
        profile = cached_profile(spec.raw_config, settings)
        key = f"verify.profile.{hash((spec.model_id, repr(sorted(settings.items()))))}"
        if profile is None:
            profile = st.session_state.get(key)
        label = "Compare with the trace profile" + ("" if profile is not None else f" (makes it: {PROFILE_SECONDS_HINT})")
        if not st.toggle(label, key="verify.profile_toggle"):
            return
        if profile is None:
            with st.spinner(f"Tracing sized-down copies of {spec.model_id} ({PROFILE_SECONDS_HINT})…"):
                try:
                    profile = get_profile(spec.raw_config, settings)
                except (CalculatorError, ProfileUnavailableError) as exc:
                    st.error(str(exc), icon=":material/error:")
                    return
            st.session_state[key] = profile
        data = compare(replace(spec, profile=None), workload, profile)
        if data["untraced"]:
            st.caption("Compared on the plain loop: a profile does not trace " + ", ".join(data["untraced"]) + ".")
        st.dataframe(fixed_decimals(_table(data), digits=3), hide_index=True)
        checks = ", ".join(f"{k} {v:+.2f}%" for k, v in sorted(data["check_error_pct"].items()))
        st.caption(f"Peak phase: analytic {data['analytic_phase']}, profile {data['profile_phase']}. "
                   f"Traced depths {', '.join(map(str, data['traced_depths']))}; held-out check (profile vs trace): {checks or 'n/a'}.")


def with_profile(resolved: Any, workload: Any) -> Any:
    """`resolved` with a trace profile on its spec when the analytic formulas do not know the
    architecture (spec counted from transformers' inventory): the cached or shipped one, or one
    made now under a spinner. Without torch the spec is returned as it is (its estimate carries
    the note that says how to enable profiles)."""
    from calculator.profile import profile_available

    spec = resolved.spec
    if spec.counted_by != "inventory" or not spec.raw_config or workload is None or workload.runtime == "vllm":
        return resolved
    settings = settings_for(workload)
    if spec.profile is not None and dict(spec.profile.settings) == settings:
        return resolved
    profile = cached_profile(spec.raw_config, settings)
    if profile is None:
        if not profile_available()[0]:
            return resolved
        with st.spinner(f"First view of {spec.model_type}: tracing sized-down copies of its transformers model for activations and "
                        f"KV cache / state ({PROFILE_SECONDS_HINT}; cached afterwards)…"):
            try:
                profile = get_profile(spec.raw_config, settings)
            except CalculatorError as exc:
                st.warning(f"The trace profile could not be made, so activations come from the analytic formulas: {exc}", icon=":material/warning:")
                return resolved
    return replace(resolved, spec=replace(spec, profile=profile))
