"""Compare: several models at one setting, or one model at several settings, side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from calculator.catalog import catalog_model_ids
from calculator.errors import CalculatorError
from calculator.trainers import PRESETS
from calculator.units import GB, GiB, format_count
from ui import figures, loaders, navigation, text, widgets
from ui.compare import DEFAULT_SETTINGS, SETTING_CHOICES, CompareRow, catalog_task, similar_models
from ui.state import COMPARE_PARAMS, MAIN_PARAMS, PageState, main_workload, model_id_problem, reconcile_main

navigation.run_through_declared_navigation()
st.set_page_config(page_title="Compare · VRAM & GPU cost calculator", page_icon="🧮", layout="wide")
widgets.page_style()

page = PageState("compare", COMPARE_PARAMS, always=("what",))
url_notes = page.load() + loaders.load_shared_from_url()
page.write_url(extra=loaders.shared_url_params())

st.title("Compare models and settings")
widgets.show_notes(url_notes)

what = st.radio("Compare", ("models", "settings"), key=page.key("what"), horizontal=True,
                format_func={"models": "Several models, one setting", "settings": "One model, several settings"}.get)


def _add_typed_model() -> None:
    typed = (st.session_state.get("compare.add_model") or "").strip()
    current = list(st.session_state.get(page.key("models")) or ())
    if typed and not model_id_problem(typed) and typed not in current:
        st.session_state[page.key("models")] = (*current, typed)[:8]
    st.session_state["compare.add_model"] = ""


def _add_model(model_id: str) -> None:
    current = list(st.session_state.get(page.key("models")) or ())
    if model_id not in current:
        st.session_state[page.key("models")] = (*current, model_id)[:8]


t1, t2 = st.columns([2, 3])
t1.selectbox("Trainer (fine-tuning rows)", tuple(PRESETS), key=page.key("trainer"), format_func=lambda n: PRESETS[n].label,
             help="Fine-tuning rows use this trainer's defaults (calculator/trainers.py); inference rows ignore it.")
t2.text_input("Sample lengths, tokens (fine-tuning rows)", key=page.key("lengths"), on_change=widgets.summarise_lengths_box,
              args=(page.key("lengths"),), placeholder="e.g. 180, 420, 760, 1900 (empty: all as long as the context)",
              help="The dataset's sequence lengths (or a sample): padded batches pad to the batch's longest, and the allocator "
              "reserve grows as shapes change. Kept as at most 32 quantiles (calculator/lengths.py).")
if what == "models":
    chosen = tuple(page.get("models"))
    options = list(dict.fromkeys([*catalog_model_ids(), *chosen]))
    c1, c2 = st.columns([3, 2])
    c1.multiselect("Models to compare", options, key=page.key("models"), max_selections=8)
    c2.text_input("Add any Hub model id", key="compare.add_model", on_change=_add_typed_model, placeholder="org/name, then Enter")
    s1, s2, s3, s4 = st.columns(4)
    s1.selectbox("Precision", ("fp32", "bf16", "fp16", "fp8", "int8", "int4"), key=page.key("precision"), format_func=text.PRECISION_LABELS.get)
    s2.selectbox("Mode", ("inference", "lora", "qlora", "full"), key=page.key("mode"), format_func=text.MODE_LABELS.get)
    s3.number_input("Context length (tokens)", min_value=1, max_value=10_000_000, step=1024, key=page.key("context"))
    s4.number_input("Batch size", min_value=1, max_value=100_000, key=page.key("batch"))
    base = {"precision": page.get("precision"), "mode": page.get("mode")}
    jobs = [(m, m, base) for m in page.get("models")]
else:
    c1, c2 = st.columns([2, 3])
    c1.text_input("Model id (Hugging Face)", key=page.key("model"))
    c2.multiselect("Settings (precision / mode)", SETTING_CHOICES, key=page.key("settings"), max_selections=8)
    s3, s4 = st.columns(2)
    s3.number_input("Context length (tokens)", min_value=1, max_value=10_000_000, step=1024, key=page.key("context"))
    s4.number_input("Batch size", min_value=1, max_value=100_000, key=page.key("batch"))
    jobs = []
    for setting in page.get("settings") or DEFAULT_SETTINGS:
        precision, mode = setting.split("/")
        jobs.append((page.get("model"), setting, {"precision": precision, "mode": mode}))

prices = loaders.price_setup()
rows: list[CompareRow] = []
first_spec = None
for model_id, label, setting in jobs:
    problem = model_id_problem(model_id)
    if problem:
        st.error(f"{label}: {problem}.", icon=":material/error:")
        continue
    try:
        with st.spinner(f"Looking up {model_id}…"):
            resolved = loaders.resolve(model_id)
        values = {p.name: p.default for p in MAIN_PARAMS} | setting | {"context": page.get("context"), "batch": page.get("batch"),
                                                                    "trainer": page.get("trainer"), "lengths": page.get("lengths")}
        values, _ = reconcile_main(values)
        v = loaders.view(resolved, main_workload(values), headroom_pct=0, prices=prices)
    except CalculatorError as exc:
        st.error(f"{label}: {widgets.lookup_message(exc)}", icon=":material/error:")
        continue
    first_spec = first_spec or resolved.spec
    rows.append(CompareRow(label=label if what == "settings" else model_id.split("/")[-1], estimate=v.plan.estimate, cheapest=v.plan.cheapest))

if not rows:
    st.info("Pick at least one model and setting to compare.")
    st.stop()

st.header("Side by side")
table = pd.DataFrame([
    {
        "Compared": r.label,
        "Parameters": format_count(r.estimate.spec.num_params),
        "Precision": text.PRECISION_LABELS[r.estimate.workload.precision],
        "Mode": text.MODE_LABELS[r.estimate.workload.mode],
        "Trainer sized": widgets.trainer_sized_label(r.estimate),
        "Peak VRAM (GiB)": round(r.estimate.total_bytes / GiB, 2),
        "Peak VRAM (GB)": round(r.estimate.total_bytes / GB, 2),
        "Weights (GiB)": round(r.estimate.breakdown.weights_bytes / GiB, 2),
        "KV cache (GiB)": round(r.estimate.breakdown.kv_cache_bytes / GiB, 2),
        "Cheapest GPU that fits": f"{r.cheapest.count}× {r.cheapest.gpu.name}" if r.cheapest else "none (1–8 GPUs)",
        "$/hr": round(r.cheapest.total_usd_per_hour, 2) if r.cheapest else None,
    }
    for r in rows
])
st.dataframe(widgets.fixed_decimals(table), hide_index=True)
# A row whose trainer cannot start on its model is sized as the run that does; say which and why, once per model.
for r in {r.estimate.spec.model_id: r for r in rows if r.estimate.trainer_problem}.values():
    st.warning(f"{r.label}: {r.estimate.trainer_problem}", icon=":material/warning:")
st.plotly_chart(figures.compare_figure([{"label": r.label, "breakdown": r.estimate.breakdown} for r in rows]), key="chart_compare", theme=None)

if what == "models" and first_spec is not None:
    st.header("Similar models")
    st.caption(f"From the bundled catalog: the same family as {first_spec.model_id} first, then the same task, then the closest in size.")
    candidates = []
    for model_id in catalog_model_ids():
        try:
            candidates.append(loaders.resolve(model_id).spec)
        except CalculatorError:
            continue
    suggestions = similar_models(first_spec, candidates, exclude=page.get("models"), task_of=catalog_task)
    cols = st.columns(max(len(suggestions), 1))
    for col, spec in zip(cols, suggestions, strict=False):
        # The name only on the button (five columns cut "Add meta-llama/Llama-…" to the same text); the full id in the tooltip.
        col.button(f"+ {spec.model_id.split('/')[-1]}", key=f"compare.add.{spec.model_id}", on_click=_add_model, args=(spec.model_id,),
                   help=f"Add {spec.model_id} ({format_count(spec.num_params)} parameters) to the comparison")
