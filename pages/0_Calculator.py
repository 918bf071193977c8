"""VRAM & GPU cost calculator: the main page.

Inputs (bound to the URL) -> model lookup -> the engine's plan -> headline, breakdown, precision x
mode table, context chart, GPU ranking, "what fits on my GPU", export, FAQ. All logic lives in
`calculator/` and `ui/`; this script only lays things out.
"""

from __future__ import annotations

import streamlit as st

from calculator.errors import CalculatorError
from calculator.estimate import component_labels
from calculator.gpus import get_gpu
from ui import figures, loaders, navigation, text, widgets
from ui.export import estimate_csv, estimate_json, with_model_identity
from ui.state import MAIN_ALWAYS, MAIN_PARAMS, PageState

navigation.run_through_declared_navigation()
st.set_page_config(page_title="VRAM & GPU cost calculator", page_icon="🧮", layout="wide")
widgets.page_style()

page = PageState("main", MAIN_PARAMS, always=MAIN_ALWAYS)
values, url_notes, fixes = widgets.load_workload_page(page)

st.title("VRAM & GPU cost calculator")
st.markdown("How much GPU memory does a Hugging Face model need to run or fine-tune, and what is the cheapest GPU that fits?")
widgets.show_notes(url_notes, fixes)
widgets.model_inputs(page)
widgets.workload_inputs(page)

resolved, stale, workload = widgets.model_and_workload(values)
if resolved is None:
    st.stop()
widgets.audio_share_input(page, resolved.spec)

prices = loaders.price_setup()
widgets.show_notes(prices.issues)
results = st.container(key="stale_results" if stale else "results")
with results:
    try:
        v = loaders.view(resolved, workload, headroom_pct=values["headroom"], prices=prices)
    except CalculatorError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    est, plan = v.plan.estimate, v.plan
    spec = est.spec

    st.subheader(f"{spec.model_id}")
    facts = loaders.model_facts(resolved)
    widgets.model_facts(resolved, facts)
    widgets.trainer_problem_box(page, est)
    widgets.headline(resolved, est, plan.cheapest)
    if est.host_bytes:
        st.caption(f":material/memory: Host RAM for offloaded tensors: {widgets.both_units(est.host_bytes)} (besides the GPU peak).")
    st.markdown(widgets.summary_sentence(est, plan.cheapest))
    for note in est.notes:
        if note != est.trainer_problem:  # already the red box above
            st.caption(f":material/info: {note}")

    st.header("Memory breakdown")
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(figures.breakdown_figure(est.breakdown, labels=component_labels(workload.runtime)), key="chart_breakdown", theme=None)
        st.dataframe(widgets.fixed_decimals(widgets.breakdown_table(est)), hide_index=True,
                     column_config={"What it is": st.column_config.TextColumn(width="large")})
    with right:
        st.markdown(text.MEMORY_KINDS)
        st.table(widgets.memory_kinds_table(est))
        st.markdown(text.UNITS)

    st.header("Precision × mode")
    st.caption(widgets.precision_mode_caption(workload))
    # Under vLLM no cell is the selection (the cells are transformers'), so none is highlighted.
    st.table(widgets.highlight_cell(widgets.precision_mode_frame(v.table), workload.precision if workload.runtime != "vllm" else "", workload.mode))
    if selected := widgets.selected_cell_note(workload.precision, workload.mode):
        st.caption(f":material/info: {selected}")

    st.header("VRAM vs context length")
    capacity = [g for g in prices.gpus if g.id in figures.CAPACITY_GPU_IDS]
    st.plotly_chart(
        figures.context_figure(v.sweep, current_context=workload.context_length, current_bytes=est.total_bytes, capacity_gpus=capacity,
                               headroom_fraction=values["headroom"] / 100, max_position_embeddings=spec.max_position_embeddings),
        key="chart_context",
        theme=None,
    )

    st.header("GPU configurations")
    only_fit = st.toggle("Only configurations that fit", value=True, key="main.only_fit")
    shown = [c for c in plan.ranking if c.fits] if only_fit else plan.ranking
    margin = f" + {values['headroom']}% headroom" if values["headroom"] else ""
    st.caption(f"1, 2, 4 and 8 GPUs of each kind, cheapest first; fit = peak per GPU{margin} ≤ usable memory (nvidia-smi total). {prices.note}")
    # Chart above the table, each full width: side by side at 1280 px the chart's bar labels were cut
    # ("$0.13/hr · 81% us") and the table showed five of its columns.
    st.plotly_chart(figures.ranking_figure(shown), key="chart_ranking", theme=None)
    st.dataframe(widgets.fixed_decimals(widgets.ranking_frame(shown, plan=plan)), hide_index=True, height=560)
    st.caption("Speeds and $ per 1M output tokens are estimates: decode reads the active weights and the KV cache once per "
               "token at a measured share of peak memory bandwidth (calculator/throughput.py states the sources).")

    if workload.runtime == "vllm":
        st.header("Will `vllm serve` start?")
        st.caption(f"vLLM {workload.vllm_version or 'current release'}'s start-up budget per GPU: weights, the profiled batch and "
                   "sampler, non-torch memory, CUDA graphs, then the KV cache (calculator/vllm.py names the vLLM code of each term).")
        widgets.vllm_start_section(plan, shown)

    st.header("What fits on my GPU?")
    gpu_ids = [g.id for g in prices.gpus]
    if values["my_gpu"] not in gpu_ids:
        page.set("my_gpu", gpu_ids[0])
    by_id = {g.id: g for g in prices.gpus}
    f1, f2 = st.columns([3, 2])
    f1.selectbox("I have this GPU", gpu_ids, key=page.key("my_gpu"), format_func=lambda i: widgets.gpu_label(by_id[i]))
    f2.radio("How many", widgets.gpu_count_choices(), key=page.key("my_gpus"), horizontal=True, format_func=lambda n: f"{n}×")
    mine = by_id.get(page.get("my_gpu")) or get_gpu("rtx-4090")
    count = int(page.get("my_gpus"))
    limits, changes = loaders.fit_on_gpu(resolved, workload, mine, count, headroom_pct=values["headroom"])
    on_rig = next((f for f in limits if f.precision == workload.precision and f.mode == workload.mode), None)
    if not changes:
        st.success(f"Your setting fits on {count}× {mine.name}.", icon=":material/check_circle:")
    else:
        first = changes[0]
        verb = "The smallest change that makes it fit" if first.fits else "Even combined, these changes are not enough"
        st.warning(f"Your setting does not fit on {count}× {mine.name}. {verb}: **{first.description}** "
                   f"({widgets.both_units(first.required_bytes)} per GPU).", icon=":material/build:")
        if len(changes) > 1:
            st.markdown("Other single changes that fit, least disruptive first:\n" + "\n".join(
                f"- {c.description}: {widgets.both_units(c.required_bytes)} per GPU" for c in changes[1:]))
    if on_rig is None:
        st.caption(f"{text.PRECISION_LABELS[workload.precision]} is not a row of the table below; it shows FP16, INT8 and INT4.")
    st.dataframe(widgets.fit_limits_frame(limits, context=workload.context_length, batch=workload.batch_size), hide_index=True)

    st.header("Export and share")
    e1, e2, e3 = st.columns([1.5, 1.5, 4])  # [1, 1, 4] cut "Download JSON" to "Download J…" at 1280 px
    stem = spec.model_id.replace("/", "__")
    export = with_model_identity(v.export, source=resolved.source, revision=resolved.revision, sha=resolved.sha,
                                 facts=facts.as_dict() if facts else None)
    e1.download_button("Download JSON", estimate_json(export), file_name=f"{stem}.json", mime="application/json", key="main.dl_json")
    e2.download_button("Download CSV", estimate_csv(export), file_name=f"{stem}.csv", mime="text/csv", key="main.dl_csv")
    base = (st.context.url or "").split("?")[0] if getattr(st.context, "url", None) else ""
    e3.markdown("**Shareable link** (opens this exact view):")
    e3.code(f"{base}?{page.share_query(extra=loaders.shared_url_params() | widgets.pinned_model_param(resolved))}", language=None, wrap_lines=True)

    widgets.similar_models_section(page, spec, extra=loaders.shared_url_params())

st.header("FAQ")
for question, answer in text.FAQ:
    with st.expander(question):
        st.markdown(answer)
