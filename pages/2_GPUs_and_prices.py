"""GPUs & prices: the GPU catalog with specs and prices, your own rates and GPUs, data provenance."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from calculator.errors import CalculatorError
from calculator.gpus import gpu_from_row
from calculator.pricing import bundled_as_of, current_prices, data_issues, load_prices
from calculator.units import GiB
from ui import loaders, navigation, widgets
from ui.state import GPU_PARAMS, GPU_SEGMENTS, GPU_VENDORS, MIN_GIB_MAX, MIN_GIB_STEP, PageState

navigation.run_through_declared_navigation()
st.set_page_config(page_title="GPUs & prices · VRAM & GPU cost calculator", page_icon="🧮", layout="wide")
widgets.page_style()

page = PageState("gpus", GPU_PARAMS)
url_notes = page.load() + loaders.load_shared_from_url()
page.write_url(extra=loaders.shared_url_params())

st.title("GPUs & prices")
widgets.show_notes(url_notes)

# --- price source -------------------------------------------------------------------------
# The widget has its own key (Streamlit drops a widget's state when its page is left); the
# session-wide switch is copied from it, so the other pages keep using live prices.
st.session_state["gpus.live"] = bool(st.session_state.get(loaders.LIVE_KEY))


def _copy_live() -> None:
    st.session_state[loaders.LIVE_KEY] = bool(st.session_state["gpus.live"])


st.toggle("Use live prices (gpuhunt)", key="gpus.live", on_change=_copy_live,
          help="Fetch current on-demand prices with dstack's gpuhunt catalog; falls back to the bundled snapshot when it is not installed or unreachable.")
setup = loaders.price_setup()
st.caption(setup.note.replace(loaders.BUNDLED_PRICES_POINTER, ""))  # this page is the GPUs & prices page
if not st.session_state.get(loaders.LIVE_KEY):
    st.caption(f"Bundled snapshot: dated prices up to {bundled_as_of()}; undated SkyPilot catalog rows are marked as such.")
widgets.show_notes(setup.issues)

# --- filters --------------------------------------------------------------------------------
f1, f2, f3, f4 = st.columns([2, 2, 2, 2])
f1.multiselect("Vendor", GPU_VENDORS, key=page.key("vendor"))
f2.multiselect("Segment", GPU_SEGMENTS, key=page.key("segment"))
f3.slider("Minimum usable memory (GiB)", 0, MIN_GIB_MAX, step=MIN_GIB_STEP, key=page.key("min_gib"))
f4.text_input("Search", key=page.key("q"), placeholder="H100, Ada, GDDR7…")

rates, _ = loaders.parse_rates(st.session_state.get(loaders.RATES_KEY, ""), known=[g.id for g in setup.gpus])
vendors, segments, min_gib, query = page.get("vendor"), page.get("segment"), page.get("min_gib"), page.get("q").strip().lower()
rows = []
for gpu in setup.gpus:
    if vendors and gpu.vendor not in vendors:
        continue
    if segments and not any(s in gpu.segment for s in segments):
        continue
    if gpu.usable_bytes < min_gib * GiB:
        continue
    if query and query not in f"{gpu.name} {gpu.architecture} {gpu.memory_type} {gpu.id}".lower():
        continue
    offers = setup.book.offers(gpu.id, 1)
    rows.append({
        "GPU": gpu.name,
        "id": gpu.id,
        "Vendor": gpu.vendor,
        "Architecture": gpu.architecture,
        "Memory (marketed GB)": gpu.memory_gb,
        "Usable (GiB, nvidia-smi)": round(gpu.usable_bytes / GiB, 2),
        "Usable is": "estimate" if gpu.usable_is_estimate else "reported",
        "Bandwidth (GB/s)": round(gpu.memory_bandwidth_bytes_per_s / 1e9),
        "BF16 TFLOPS (dense)": round(gpu.bf16_flops_per_s / 1e12, 1) if gpu.bf16_flops_per_s else None,
        "FP8": "yes" if gpu.supports_fp8 else "no",
        "Cheapest $/GPU-hr": round(offers[0].usd_per_gpu_hour, 2) if offers else None,
        "At": offers[0].provider if offers else "no price",
        "Providers": len(offers),
        "Price as of": offers[0].quote.as_of if offers else "",
        "Your rate": rates.get(gpu.id),
        "Source": "added by you" if gpu.user_added else gpu.source,
    })
st.header("GPU catalog")
st.caption(f"{len(rows)} of {len(setup.gpus)} GPUs. Usable memory is what nvidia-smi reports as total (the fit check uses it), not the marketed size.")
st.dataframe(widgets.fixed_decimals(pd.DataFrame(rows)), hide_index=True, height=min(38 * (len(rows) + 1) + 4, 720))

# --- your rates -------------------------------------------------------------------------------
st.header("Your negotiated prices")
st.caption("Your $/GPU-hour for a GPU joins the ranking as the provider “Your rate” on every page, and is kept in the link (rates=…).")
by_id = {g.id: g for g in setup.gpus}
r1, r2, r3, r4 = st.columns([2.6, 2, 1.2, 1.4])  # [3, 2, 1, 1] cut "Clear my rates" at 1280 px
r1.selectbox("GPU for your rate", list(by_id), key="gpus.rate_gpu", format_func=lambda i: by_id[i].name)
r2.number_input("Your price (USD per GPU-hour)", min_value=0.01, max_value=999.0, value=1.0, step=0.05, key="gpus.rate_usd")


def _set_rate() -> None:
    current, _ = loaders.parse_rates(st.session_state.get(loaders.RATES_KEY, ""), known=list(by_id))
    current[st.session_state["gpus.rate_gpu"]] = float(st.session_state["gpus.rate_usd"])
    st.session_state[loaders.RATES_KEY] = loaders.format_rates(current)


def _clear_rates() -> None:
    st.session_state[loaders.RATES_KEY] = ""


r3.button("Set my rate", on_click=_set_rate, key="gpus.set_rate")
r4.button("Clear my rates", on_click=_clear_rates, key="gpus.clear_rates", disabled=not rates)
if rates:
    st.table(pd.DataFrame([{"GPU": by_id[k].name if k in by_id else k, "Your $/GPU-hr": v} for k, v in sorted(rates.items())]))

# --- your GPUs ---------------------------------------------------------------------------------
st.header("Add your own GPU")
st.caption("Kept for this browser session (not in the link). Usable memory defaults to 99% of the marketed size unless you give the nvidia-smi total.")
with st.form("gpus.add_form", clear_on_submit=False):
    a1, a2, a3 = st.columns(3)
    gid = a1.text_input("GPU id", placeholder="my-card-48gb")
    gname = a2.text_input("GPU name", placeholder="My card 48GB")
    mem = a3.number_input("Memory (GB, as marketed)", min_value=1.0, max_value=4096.0, value=48.0)
    a4, a5, a6 = st.columns(3)
    bw = a4.number_input("Bandwidth (GB/s)", min_value=1.0, max_value=100_000.0, value=900.0)
    tflops = a5.number_input("BF16 TFLOPS (dense)", min_value=0.1, max_value=100_000.0, value=150.0)
    smi = a6.number_input("nvidia-smi total (MiB, 0 = estimate)", min_value=0, max_value=10_000_000, value=0)
    submitted = st.form_submit_button("Add GPU")
if submitted:
    row = {"id": gid.strip(), "name": gname.strip(), "memory_gb": mem, "memory_bandwidth_gbps": bw, "fp16_bf16_tflops_dense": tflops,
           "reported_total_mib": smi or "", "vendor": "NVIDIA"}
    try:
        gpu_from_row(row, user_added=True)
    except CalculatorError as exc:
        st.error(str(exc), icon=":material/error:")
    else:
        extra = [r for r in st.session_state.get(loaders.EXTRA_GPUS_KEY) or [] if r["id"] != row["id"]]
        st.session_state[loaders.EXTRA_GPUS_KEY] = [*extra, {k: str(v) for k, v in row.items()}]
        st.rerun()
if st.session_state.get(loaders.EXTRA_GPUS_KEY):
    st.caption("Your GPUs: " + ", ".join(r["name"] for r in st.session_state[loaders.EXTRA_GPUS_KEY]))
    if st.button("Remove my GPUs", key="gpus.clear_extra"):
        st.session_state[loaders.EXTRA_GPUS_KEY] = []
        st.rerun()

# --- provenance ----------------------------------------------------------------------------------
st.header("Where the numbers come from")
all_ids = [g.id for g in setup.gpus]
if page.get("gpu") not in all_ids:
    page.set("gpu", all_ids[0])
st.selectbox("Prices of one GPU, per provider", all_ids, key=page.key("gpu"), format_func=lambda i: by_id[i].name)
chosen = by_id[page.get("gpu")]
quotes = [q for q in current_prices(load_prices()) if q.gpu_id == chosen.id]
st.caption(f"{chosen.name}: {chosen.usable_note}. Spec source: {chosen.source or 'n/a'} (confidence: {chosen.confidence}).")
if quotes:
    st.dataframe(widgets.fixed_decimals(pd.DataFrame([
        {"Provider": q.provider, "$/GPU-hr": q.usd_per_gpu_hour, "GPUs per instance": q.gpus_per_instance, "Instance": q.instance, "As of": q.as_of,
         "Confidence": q.confidence, "Rule": q.basis, "Source": q.source}
        for q in sorted(quotes, key=lambda q: q.usd_per_gpu_hour)
    ])), hide_index=True)
else:
    st.info(f"No bundled price for {chosen.name}: enter your rate above to rank it by cost.")
issues = data_issues(setup.gpus)
with st.expander(f"Data issues ({len(issues)})", expanded=False):
    st.caption("Problems found in the bundled tables; nothing is dropped silently.")
    for issue in issues:
        st.markdown(f"- {issue}")
