"""Verification: check the estimate against the real model, traced on CPU or measured on a GPU.

Settings come from the URL, with the main page's parameter names (a link from the main page opens
this page on the same view) or, without any, the main page's last values in this session. All the
work is `calculator.verify.run_verification`; this script lays out widgets and shows its answer.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from calculator.errors import CalculatorError
from calculator.units import format_bytes
from calculator.verify import comparison_table, run_verification, trace_available
from calculator.verify.limits import SIZED_DOWN_LAYERS, plan_trace
from calculator.verify.live import cuda_available
from ui import loaders, navigation, profile_view, text, widgets
from ui.state import MAIN_ALWAYS, MAIN_PARAMS, PageState

navigation.run_through_declared_navigation()
st.set_page_config(page_title="Verification · VRAM & GPU cost calculator", page_icon="🧮", layout="wide")
widgets.page_style()

page = PageState("verify", MAIN_PARAMS, always=MAIN_ALWAYS)
if not any(p.name in st.query_params for p in MAIN_PARAMS) and "_url_state.verify" not in st.session_state:
    # Opened from the sidebar (no URL parameters): start from the main page's last values in this session.
    st.session_state["_url_state.verify"] = st.session_state.get("_url_state.main") or {}
values, url_notes, fixes = widgets.load_workload_page(page)

st.title("Verify the estimate")
st.markdown(
    "The estimate is arithmetic over `config.json`. Here the same workload runs through the real model code: "
    "**Trace** builds the architecture with transformers on fake tensors on CPU (no GPU, no download) and records every "
    "tensor it would allocate; **Live GPU** runs it on this machine's GPU with random weights and reads "
    "`torch.cuda.max_memory_allocated`."
)
widgets.show_notes(url_notes, fixes)

c1, c2, c3, c4, c5 = st.columns([2.6, 1.6, 1.1, 1.1, 1])  # [3, 1, 1, 1, 1] cut "Inference" to "Inferenc" at 1280 px
c1.text_input("Model id (Hugging Face)", key=page.key("model"))
c2.selectbox("Mode", ("inference", "lora", "qlora", "full"), key=page.key("mode"), format_func=text.MODE_LABELS.get)
c3.selectbox("Precision", ("fp32", "bf16", "fp16", "fp8", "int8", "int4"), key=page.key("precision"), format_func=text.PRECISION_LABELS.get)
c4.number_input("Context length (tokens)", min_value=1, max_value=10_000_000, step=1024, key=page.key("context"))
c5.number_input("Batch size", min_value=1, max_value=100_000, key=page.key("batch"))
# A plain link (st.page_link cannot name the entry script when the page runs on its own, e.g. in AppTest).
st.markdown(f":material/arrow_back: [Open these settings on the main page](./?{page.share_query(extra=loaders.shared_url_params())})")
other = widgets.settings_beyond(values, MAIN_PARAMS, MAIN_ALWAYS)
if other:
    st.caption("Also from the main page: " + ", ".join(other) + ".")

resolved, stale, workload = widgets.model_and_workload(values)
if resolved is None or stale:  # a model that failed to load is not verified with the last good one
    st.stop()
spec = resolved.spec
widgets.audio_share_input(page, spec)

trace_ok, trace_why = trace_available()
gpu_ok, gpu_why = cuda_available() if trace_ok else (False, "torch is not installed.")
l1, l2 = st.columns([2, 3])
level = l1.radio(
    "Level", ("trace", "live"), key="verify.level", horizontal=True,
    format_func={"trace": "Trace (CPU, no GPU)", "live": "Live GPU"}.get,
    captions=("Fake tensors: nothing is allocated, any model size.", "Random weights on this machine's CUDA GPU." if gpu_ok else gpu_why),
)
sized_down = l2.checkbox(
    f"Sized-down ({SIZED_DOWN_LAYERS} layers)", value=True, key="verify.sized_down",
    help=f"Cut the model to its first {SIZED_DOWN_LAYERS} decoder layers for both the estimate and the measurement. Per-layer weights, "
    "KV cache, activations, gradients and optimizer states scale with the layer count; embeddings, LM head, logits and loss "
    "buffers do not, so compare the error %, not the bytes.",
)

if not trace_ok:
    st.info(
        "Verification needs PyTorch, transformers and peft, which this deployment does not install (they are large). "
        "Locally: `pip install -r requirements-dev.txt`. On Streamlit Community Cloud: add `torch`, `transformers` and "
        f"`peft` to requirements.txt. ({trace_why})",
        icon=":material/info:",
    )
    st.stop()
if level == "live" and not gpu_ok:
    st.info(f"Live GPU is unavailable here: {gpu_why} The trace gives the same per-component check without a GPU.", icon=":material/info:")

profile_view.analytic_vs_profile(spec, workload)
try:
    plan = plan_trace(spec, workload, sized_down=sized_down)
except CalculatorError as exc:
    plan = None
    st.warning(str(exc), icon=":material/warning:")
run_key = (loaders.spec_key(resolved), repr(workload), level, sized_down)
clicked = st.button(
    "Run the trace" if level == "trace" else "Run on the GPU", type="primary", key="verify.run",
    disabled=plan is None or (level == "live" and not gpu_ok),
    help=None if plan is None else f"About {plan.predicted_seconds:.0f} s.",
)
if clicked and plan is not None:
    with st.spinner("Tracing the model on fake tensors…" if level == "trace" else "Running on the GPU…"):
        try:
            st.session_state["verify.result"] = (run_key, run_verification(spec, workload, level=level, timeout=plan.timeout_seconds, layers=plan.layers))
        except CalculatorError as exc:
            st.session_state.pop("verify.result", None)
            st.error(str(exc), icon=":material/error:")

stored = st.session_state.get("verify.result")
if not stored or stored[0] != run_key:
    st.stop()
data = stored[1]
measured = "trace" if data["level"] == "trace" else "live"
st.subheader(f"Estimate vs {'trace' if measured == 'trace' else 'live GPU'}: {data['model']} ({data['layers']} of {data['full_layers']} layers)")
m1, m2, m3 = st.columns(3)
m1.metric("Estimate (PyTorch allocated)", format_bytes(data["total"]["estimate_bytes"], "GiB", 2))
m2.metric("Trace peak" if measured == "trace" else "max_memory_allocated", format_bytes(data["total"]["measured_bytes"], "GiB", 2))
err = data["total"]["error_pct"]
m3.metric("Error", "n/a" if err is None else f"{err:+.1f}%", help="(estimate - measured) / measured; positive = the estimate is higher.")
st.dataframe(widgets.fixed_decimals(pd.DataFrame(comparison_table(data)), digits=3), hide_index=True)
st.caption(
    "Groups: weights = parameters + buffers (LoRA adapters included); activations = KV cache + activations + logits/loss, "
    "which the trace files as activations + temporaries + inputs; gradients; optimizer states (with the step's temporary). "
    "The trace counts tensor storage only: the allocator's cache and the CUDA context come on top in a real run."
)
if "full_estimate" in data:
    st.caption(
        f"Full model ({data['full_layers']} layers), estimated: {format_bytes(data['full_estimate']['torch_allocated_bytes'], 'GiB', 2)} "
        "allocated by PyTorch. The sized-down run checks the per-layer formulas; the full model adds the remaining layers' share."
    )
for note in [*data["notes"], *data.get(measured, {}).get("notes", [])]:
    st.caption(f":material/info: {note}")
