"""Streamlit building blocks shared by the pages: inputs bound to URL state, result sections.

Every widget gets its value from session state (filled by `PageState.load`), never from a
`value=`/`index=` argument, so a link, a correction and a click all go through one place.
Labels and headings are stable: the browser test finds elements by them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pandas as pd
import streamlit as st

from calculator import report, speech
from calculator.catalog import catalog_model_ids
from calculator.errors import CalculatorError, GatedModelError, HubUnavailableError
from calculator.estimate import Estimate, component_labels
from calculator.facts import ModelFacts, facts_line, facts_provenance
from calculator.gpus import GPU
from calculator.pricing import GPUConfiguration
from calculator.profile import counted_from
from calculator.resolve import ResolvedModel
from calculator.spec import ModelSpec
from calculator.stacks import STACK_NAMES, STACKS
from calculator.trainers import DEFAULT_TRAINER, PRESETS
from calculator.units import GB, GiB, format_bytes, format_count
from calculator.workload import ATTENTION_IMPLS, CACHE_IMPLEMENTATIONS, LORA_TARGETS, MODES, OPTIMIZERS, PARALLELISMS, QUANT_METHODS, Workload

from . import loaders, text
from .formatting import fixed_decimals
from .state import (
    ADAPTER_PRECISIONS,
    GPU_COUNT_CHOICES,
    KV_DTYPES,
    MAX_GPUS_INPUT,
    RUNTIMES,
    TRAINER_KEYS,
    VLLM_VERSION_CHOICES,
    PageState,
    main_workload,
    model_id_problem,
    reconcile_main,
    resolve_trainer_values,
    trainer_defaults,
    workload_lengths,
)

CSS = """
<style>
/* Results of a model that failed to load are kept, dimmed, under the error. */
.st-key-stale_results { opacity: 0.5; filter: grayscale(60%); }
/* Larger table text for projectors. */
[data-testid="stTable"] td, [data-testid="stTable"] th { font-size: 1.05rem; }
[data-testid="stMetricLabel"] p { font-size: 1.05rem; }
/* The model facts line under the model's name (as model pages show it). */
.model-facts { font-size: 1.1rem; font-weight: 600; color: #31333F; margin: -0.4rem 0 0.1rem 0; }
</style>
"""


def page_style() -> None:
    st.html(CSS)


def both_units(num_bytes: int) -> str:
    """'12.14 GiB (13.03 GB)': both units, labelled."""
    return f"{num_bytes / GiB:,.2f} GiB ({num_bytes / GB:,.2f} GB)"


def show_notes(warnings: Sequence[str], infos: Sequence[str] = ()) -> None:
    for note in warnings:
        st.warning(note, icon=":material/warning:")
    for note in infos:
        st.info(note, icon=":material/info:")


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def load_workload_page(page: PageState) -> tuple[dict, list[str], list[str]]:
    """Read a workload page's state from the URL, correct contradictions (QLoRA needs int4, ...),
    and write the corrected state back to the URL. Returns (values, URL notes, corrections)."""
    url_notes = page.load() + loaders.load_shared_from_url()
    values, fixes = reconcile_main(page.values())
    if "trainer" in page.by_name:
        values = _follow_trainer(page, values)
    for name, value in values.items():
        if value != page.get(name):
            page.set(name, value)
    page.write_url(extra=loaders.shared_url_params())
    return values, url_notes, fixes


def settings_beyond(values: dict, params: Sequence[Any], always: Sequence[str]) -> list[str]:
    """'label value' for each input that is not on the page itself and not at its default: a trainer
    setting counts when it differs from the trainer's value, and only for a fine-tuning mode (the
    Verification page listed 'gradient checkpointing on, fp32 weights on, ...' for an inference trace)."""
    training = values.get("mode", "inference") != "inference"
    preset = trainer_defaults(values.get("trainer", DEFAULT_TRAINER), values.get("mode", "inference"))
    out = []
    for p in params:
        value = values.get(p.name, p.default)
        if p.name in always or ((p.name in TRAINER_KEYS or p.name == "trainer") and not training):
            continue
        if p.name in TRAINER_KEYS:
            if value is None or value == preset[p.name]:
                continue
        elif value == p.default and p.name != "trainer":
            continue
        out.append(f"{p.label} {p.format(value)}")
    return out


def _follow_trainer(page: PageState, values: dict) -> dict:
    """Settings the trainer decides: None (not in the link) -> the trainer's value; and when the
    trainer or the mode changed since the last run, every setting still at the old preset's value
    follows the new one (a preset is a starting point; what the user changed stays)."""
    basis_key = f"_trainer_basis.{page.page}"
    basis = (values["trainer"], values["mode"])
    old = st.session_state.get(basis_key)
    if old is not None and old != basis:
        before, after = trainer_defaults(*old), trainer_defaults(*basis)
        for name in TRAINER_KEYS:
            if values.get(name) == before[name]:
                values[name] = after[name]
    st.session_state[basis_key] = basis
    return resolve_trainer_values(values)


def _pick_catalog_model(page: PageState) -> None:
    picked = st.session_state.get("main.catalog_pick")
    if picked:
        page.set("model", picked)


def model_inputs(page: PageState) -> None:
    """Free text for any Hub repo id, and the catalog's models as suggestions."""
    left, right = st.columns([3, 2])
    left.text_input(
        "Model id (Hugging Face)",
        key=page.key("model"),
        help="Any Hub repository, e.g. meta-llama/Llama-3.1-8B or Qwen/Qwen2.5-7B-Instruct@main. Catalog models work offline.",
        placeholder="org/name",
    )
    ids = catalog_model_ids()
    right.selectbox(
        "…or pick a catalog model",
        ids,
        index=None,
        key="main.catalog_pick",
        placeholder=f"{len(ids)} models bundled with the app",
        on_change=_pick_catalog_model,
        args=(page,),
    )


def workload_inputs(page: PageState) -> None:
    c1, c2, c3, c4 = st.columns([2, 3, 1.3, 1.3])
    c1.selectbox("Precision", ("fp32", "bf16", "fp16", "fp8", "int8", "int4"), key=page.key("precision"), format_func=text.PRECISION_LABELS.get,
                 help="Storage type of the weights. int8/int4 are weight-only quantization (bitsandbytes, GPTQ, AWQ).")
    c2.radio("Mode", MODES, key=page.key("mode"), format_func=text.MODE_LABELS.get, horizontal=True)
    c3.number_input("Context length (tokens)", min_value=1, max_value=10_000_000, step=1024, key=page.key("context"),
                    help="Tokens per sequence: prompt plus generated tokens (or the training sequence length).")
    c4.number_input("Batch size", min_value=1, max_value=100_000, step=1, key=page.key("batch"),
                    help="Sequences processed together (per GPU when training is sharded).")
    if page.get("mode") != "inference":
        trainer_inputs(page)
    with st.expander("Advanced", expanded=False):
        a1, a2, a3, a4 = st.columns(4)
        with a1:
            st.markdown("**Training**")
            st.selectbox("Optimizer", OPTIMIZERS, key=page.key("optimizer"))
            st.checkbox("Gradient checkpointing", key=page.key("grad_ckpt"))
            st.checkbox("FP32 weights (autocast)", key=page.key("master_weights"),
                        help="Model loaded in fp32 and trained under bf16/fp16 autocast: TRL's default for a model id "
                             "(off = model_init_kwargs={'dtype': 'bfloat16'}). Full fine-tuning keeps fp32 master weights and states.")
        with a2:
            st.markdown("**LoRA**")
            st.number_input("LoRA rank", min_value=1, max_value=4096, step=8, key=page.key("lora_rank"))
            st.selectbox("LoRA targets", LORA_TARGETS, key=page.key("lora_targets"),
                         help="all-linear (peft: every linear but the output layer; MoE experts and router too), attention only, "
                              "attention + dense/shared MLP, MLP only, or q and v.")
            st.selectbox("Adapter precision", ADAPTER_PRECISIONS, key=page.key("adapter_precision"))
        with a3:
            st.markdown("**Runtime**")
            st.selectbox("KV-cache precision", KV_DTYPES, key=page.key("kv_dtype"), help="auto = same as the compute precision.")
            st.selectbox("Generate cache", CACHE_IMPLEMENTATIONS, key=page.key("cache"),
                         help="transformers generate's cache_implementation: dynamic grows with the text; static preallocates "
                              "the whole context at the first forward; quantized stores K/V at the KV-cache precision (auto/int4: "
                              "4-bit quanto/HQQ; int8: HQQ; fp8) and dequantizes one layer at a time.")
            st.number_input("Generated tokens (of the context)", min_value=0, max_value=10_000_000 - 1, step=256, key=page.key("gen"),
                            help="Inference: how many of the context's tokens generate() produces. 0 sizes one forward over the "
                                 "whole context; otherwise the prompt is the rest (a static cache is preallocated at its prefill).")
            st.selectbox("Attention implementation", ATTENTION_IMPLS, key=page.key("attention"))
            st.radio("Runtime", RUNTIMES, key=page.key("runtime"), horizontal=True)
            st.selectbox("Stack versions", STACK_NAMES, key=page.key("stack"), format_func=lambda n: STACKS[n].label,
                         help="Older transformers (<= 4.35) held the old and new KV cache during each decode step; PyTorch <= 1.12 "
                         "loaded every CUDA kernel into the context. Pick yours if it is older than the current stack.")
            not_vllm = page.get("runtime") != "vllm"
            st.slider("vLLM gpu_memory_utilization", min_value=0.05, max_value=1.0, step=0.05, key=page.key("gpu_util"),
                      disabled=not_vllm)
            st.selectbox("vLLM version", VLLM_VERSION_CHOICES, key=page.key("vllm_version"), disabled=not_vllm,
                         help="The release whose start-up budget is modelled (profile, sampler, CUDA graphs; calculator/vllm.py).")
            st.number_input("vLLM --max-num-seqs (0 = default)", min_value=0, max_value=100_000, step=64, key=page.key("max_num_seqs"),
                            disabled=not_vllm, help="0: vLLM's default for the GPU (1,024 on >= 70 GiB cards other than A100, else 256).")
            st.number_input("vLLM --max-num-batched-tokens (0 = default)", min_value=0, max_value=10_000_000, step=1024,
                            key=page.key("max_batched"), disabled=not_vllm,
                            help="The profiled batch. 0: vLLM's default (8,192 on >= 70 GiB cards other than A100, else 2,048).")
            st.checkbox("vLLM --enforce-eager (no CUDA graphs)", key=page.key("eager"), disabled=not_vllm)
            st.selectbox("Quantization method", QUANT_METHODS, key=page.key("quant"),
                         help="auto: NF4 for int4, LLM.int8 for int8, per-channel fp8 for fp8, or the checkpoint's own quantization_config.")
        with a4:
            st.markdown("**GPUs**")
            st.number_input("Number of GPUs", min_value=1, max_value=MAX_GPUS_INPUT, step=1, key=page.key("gpus"))
            st.selectbox("Parallelism", PARALLELISMS, key=page.key("parallelism"),
                         help="auto: tensor parallel for inference, FSDP for training. tp is inference only; ddp/zero/fsdp are training only.")
            st.slider("Headroom for production traffic (%)", min_value=0, max_value=100, step=5, key=page.key("headroom"),
                      help="The ranking only counts GPUs whose usable memory covers the peak plus this margin.")


def trainer_inputs(page: PageState) -> None:
    """The trainer preset and every memory saver it sets, each adjustable (calculator/trainers.py
    cites the framework code of each default)."""
    from calculator.trainers import PRESETS
    from calculator.workload import CHECKPOINT_POLICIES, CPU_OFFLOADS, KERNELS, LOSS_IMPLS, PACKINGS, PEFT_METHODS

    t1, t2 = st.columns([2, 5])
    t1.selectbox("Trainer", tuple(PRESETS), key=page.key("trainer"), format_func=lambda n: PRESETS[n].label,
                 help="The training loop whose defaults fill the settings below; each stays adjustable.")
    preset = PRESETS[page.get("trainer")]
    t2.caption(f"Assumes **{preset.label}** defaults ({preset.source}). A preset is a starting point: change any setting below.")
    with st.expander("Trainer settings (memory savers)", expanded=False):
        s1, s2, s3, s4 = st.columns(4)
        s1.selectbox("Loss", LOSS_IMPLS, key=page.key("loss"),
                     help="full fp32 logits (transformers), torchtune chunked output CE, TRL's fused LM head, Liger/Unsloth fused linear CE.")
        s1.slider("Trained token fraction", min_value=0.01, max_value=1.0, step=0.01, key=page.key("trained_frac"),
                  help="Share of tokens with a label (completion-only / assistant-only loss); fused heads score only those.")
        s2.number_input("Checkpoint every k-th layer", min_value=1, max_value=1024, step=1, key=page.key("ckpt_every"))
        s2.selectbox("Checkpointing policy", CHECKPOINT_POLICIES, key=page.key("ckpt_policy"), disabled=not page.get("grad_ckpt"),
                     help="full: a checkpointed layer keeps only its input. selective-op: torchtitan's op-level selective AC, which "
                          "also keeps every other matmul output and the attention output (less recompute, more memory).")
        s2.checkbox("Activation offloading to CPU", key=page.key("offload"))
        s2.selectbox("Packing", PACKINGS, key=page.key("packing"))
        s3.checkbox("Optimizer step in backward", key=page.key("opt_in_bwd"))
        s3.checkbox("Fused AdamW", key=page.key("fused_opt"))
        s3.checkbox("Paged optimizer", key=page.key("paged_opt"))
        s3.checkbox("torch.compile", key=page.key("compile"),
                    help="torchtune compile=True: the decoder layers save the min-cut partitioner's set (traced, full fine-tune in one "
                         "dtype with SDPA; other cases are sized as eager and the notes say so) and the chunked loss keeps only its chunks.")
        s3.selectbox("CPU offload (ZeRO/FSDP)", CPU_OFFLOADS, key=page.key("cpu_offload"))
        adapters = page.get("mode") in ("lora", "qlora")
        s4.selectbox("PEFT method", PEFT_METHODS, key=page.key("peft"), disabled=not adapters,
                     help="oft and vera adapt the modules chosen under LoRA targets (nn.Linear only); ia3 and prompt-tuning use peft's defaults.")
        s4.number_input("OFT block size", min_value=1, max_value=4096, step=1, key=page.key("oft_block"),
                        disabled=not adapters or page.get("peft") != "oft",
                        help="peft OFTConfig(oft_block_size=...), default 32: each adapted input is rotated by in/32 orthogonal 32 x 32 blocks.")
        s4.number_input("VeRA rank", min_value=1, max_value=4096, step=1, key=page.key("vera_rank"),
                        disabled=not adapters or page.get("peft") != "vera",
                        help="peft VeraConfig(r=...), default 256: rank of the shared frozen random projections.")
        s4.selectbox("RMSNorm kernel", KERNELS, key=page.key("norm_kernel"))
        s4.selectbox("SwiGLU kernel", KERNELS, key=page.key("mlp_kernel"))
        lengths_input(page)


def summarise_lengths_box(key: str) -> None:
    """on_change of a lengths box: a pasted list becomes its summary (a link stays short). Text
    that is not a list is left as typed; the page shows the library's message for it."""
    import contextlib

    from calculator.errors import InvalidWorkloadError
    from calculator.lengths import format_lengths, parse_lengths, summarise_lengths

    with contextlib.suppress(InvalidWorkloadError):
        st.session_state[key] = format_lengths(summarise_lengths(parse_lengths(st.session_state.get(key) or "")))


def _read_lengths_file(key: str, file_key: str) -> None:
    """on_change of the upload: a text, CSV or JSON list of lengths, read up to MAX_TEXT_CHARS."""
    from calculator.errors import InvalidWorkloadError
    from calculator.lengths import MAX_TEXT_CHARS, format_lengths, parse_lengths, summarise_lengths

    upload = st.session_state.get(file_key)
    if upload is None:
        return
    data = upload.getvalue()[: MAX_TEXT_CHARS + 1]
    try:
        lengths = parse_lengths(data.decode("utf-8", errors="replace"))
        st.session_state[key] = format_lengths(summarise_lengths(lengths))
        st.session_state[f"{file_key}.error"] = ""
    except InvalidWorkloadError as exc:
        st.session_state[f"{file_key}.error"] = str(exc)


def lengths_input(page: PageState) -> None:
    """The dataset's sequence lengths: typed, pasted or uploaded, kept as their summary
    (calculator/lengths.py), with what the page makes of them."""
    from calculator.errors import InvalidWorkloadError
    from calculator.lengths import MAX_SUMMARY_POINTS, describe_lengths

    key, file_key = page.key("lengths"), f"{page.page}.lengths_file"
    l1, l2 = st.columns([3, 2])
    l1.text_area(
        "Sample lengths (tokens)", key=key, height=68, on_change=summarise_lengths_box, args=(key,),
        placeholder="e.g. 180, 420, 760, 1900 (empty: every sequence is as long as the context)",
        help="Your dataset's sequence lengths, or a sample of them (commas, spaces or new lines). Padded batches pad to the "
        f"batch's longest; padding-free rows hold the batch's tokens; the allocator reserve grows as shapes change. Kept as "
        f"{MAX_SUMMARY_POINTS} quantiles at most; lengths above the context are truncated to it.",
    )
    l2.file_uploader("…or upload a list (txt, csv, json)", type=["txt", "csv", "json"], key=file_key, on_change=_read_lengths_file,
                     args=(key, file_key))
    if st.session_state.get(f"{file_key}.error"):
        l2.error(st.session_state[f"{file_key}.error"], icon=":material/error:")
    try:
        lengths = workload_lengths(page.get("lengths"))
    except InvalidWorkloadError as exc:
        l1.error(str(exc), icon=":material/error:")
        return
    l1.caption(describe_lengths(lengths).capitalize() + ".")


def trainer_problem_box(page: PageState, est: Estimate) -> None:
    """The chosen trainer cannot start on this model (`calculator.trainers.runnable_workload`): say
    so in red, with the run that is sized instead and one click that switches the page to it (the
    same figures, with a link that names that trainer)."""
    if not est.trainer_problem:
        return
    st.error(est.trainer_problem, icon=":material/error:")
    st.button(f"Switch to {PRESETS[est.workload.trainer].label} with these settings", key="main.switch_trainer", type="primary",
              on_click=_switch_trainer, args=(page, est.workload), icon=":material/swap_horiz:")


def trainer_sized_label(est: Estimate) -> str:
    """The trainer a fine-tuning figure is sized for ('—' for inference), with the reason when it is not
    the one chosen (`Estimate.trainer_problem`)."""
    w = est.workload
    if not w.is_training:
        return "—"
    label = PRESETS[w.trainer].label if w.trainer in PRESETS else w.trainer
    return f"{label} (chosen trainer cannot start)" if est.trainer_problem else label


def _switch_trainer(page: PageState, sized: Workload) -> None:
    """Set the page to the sized run: its trainer and each setting as sized (the preset follow in
    `_follow_trainer` must not move them to the new trainer's defaults)."""
    from calculator.trainers import switch_settings

    settings = switch_settings(sized)
    for name, field in TRAINER_KEYS.items():
        page.set(name, settings[field])
    page.set("trainer", settings["trainer"])
    st.session_state[f"_trainer_basis.{page.page}"] = (settings["trainer"], sized.mode)


def audio_share_input(page: PageState, spec: ModelSpec) -> None:
    """The audio-token share, shown only for a model whose layers route tokens between a text and
    an audio FFN (`spec.dual_ffn`, read from the config), and the audio-codec switch for a model
    that generates audio codes (`calculator.speech`)."""
    if speech.speech_codec(spec) is not None:
        # The estimate counts the codec only for transformers inference (calculator/estimate.py): elsewhere the switch
        # is greyed out rather than ticked over a number that leaves the codec out.
        counted = page.get("mode") == "inference" and page.get("runtime") == "transformers"
        st.checkbox(
            "Audio codec on this GPU" if counted else "Audio codec on this GPU (counted for transformers inference only)", key=page.key("codec"),
            disabled=not counted,
            help="A text-to-speech model emits audio codes; its serving stack loads the audio codec on the same GPU to decode them "
            "to a waveform (after generation) and to encode reference audio. Untick if the codec runs elsewhere. "
            "Fine-tuning does not load it, and the vLLM estimate leaves it out (see the note under the headline).",
        )
    if not spec.dual_ffn:
        return
    st.slider(
        "Audio tokens in the prompt (DualFFN share)", min_value=0.0, max_value=1.0, step=0.05, key=page.key("audio_share"),
        help="This model's layers hold a text FFN and an audio FFN and send each token to one of them. The share of prompt "
        "(or training) tokens that are audio, e.g. reference audio for voice cloning, sets how many tokens each FFN processes "
        "at once; generated tokens are audio. The trace on the Verification page uses the same share.",
    )


# --------------------------------------------------------------------------------------------
# Model lookup
# --------------------------------------------------------------------------------------------

LAST_GOOD_KEY = "main.last_good"


def lookup_message(exc: CalculatorError) -> str:
    """The library's message, plus what to do for the errors a web user can fix."""
    message = str(exc)
    if isinstance(exc, GatedModelError) and "HF_TOKEN" not in message:
        message += " Set HF_TOKEN (environment variable or .streamlit/secrets.toml) to a read token with access."
    if isinstance(exc, GatedModelError) and loaders.hf_token() is None:
        message += " No HF_TOKEN is configured for this app."
    if isinstance(exc, HubUnavailableError) and "catalog" not in message:
        message += " The catalog models still work offline."
    return message


def model_and_workload(values: dict) -> tuple[ResolvedModel | None, bool, Workload | None]:
    """(model, stale, workload) for a workload page: the model as `resolve_model_input` gives it, and
    the workload the URL values describe; an invalid workload is shown as an error and gives no model."""
    resolved, stale = resolve_model_input(values["model"])
    try:
        workload = main_workload(values)
    except CalculatorError as exc:
        st.error(str(exc), icon=":material/error:")
        return None, stale, None
    if resolved is not None:
        from ui.profile_view import with_profile  # trace profile for architectures outside the analytic families

        resolved = with_profile(resolved, workload)
    return resolved, stale, workload


def resolve_model_input(ref: str) -> tuple[ResolvedModel | None, bool]:
    """(model, stale): the model for `ref`, or after an error (shown) the last model that loaded
    in this session with stale=True, or None."""
    problem = model_id_problem(ref)
    error = ""
    if problem:
        error = f"{problem[0].upper()}{problem[1:]}."
    else:
        try:
            with st.spinner(f"Looking up {ref.strip()}…"):
                resolved = loaders.resolve(ref)
        except CalculatorError as exc:
            error = lookup_message(exc)
        else:
            st.session_state[LAST_GOOD_KEY] = resolved
            return resolved, False
    st.error(error, icon=":material/error:")
    last = st.session_state.get(LAST_GOOD_KEY)
    if last is not None:
        st.caption(f"Your other settings are kept. The results below are for the last model that loaded, **{last.spec.model_id}**, dimmed.")
    return last, True


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


# The longest metric value a quarter-width headline column shows whole on a 1280 px screen.
SHORT_METRIC_CHARS = 10


def headline(resolved: ResolvedModel, est: Estimate, cheapest: GPUConfiguration | None) -> None:
    spec = est.spec
    b = est.breakdown
    c1, c2, c3, c4 = st.columns([1, 1.4, 1.2, 1.2])
    c1.metric("Parameters", format_count(spec.num_params), help=f"{spec.num_params:,} parameters" +
              (f"; {format_count(spec.active_params)} active per token (mixture of experts)" if spec.is_moe else ""))
    per = " per GPU" if est.num_gpus > 1 else ""
    c2.metric(f"Peak VRAM{per}", f"{b.total_bytes / GiB:,.2f} GiB", help="What nvidia-smi would show at the peak: tensors + allocator cache + CUDA context.")
    c2.caption(f"= **{b.total_bytes / GB:,.2f} GB** · peak during {est.peak_phase}")
    if cheapest is not None:
        c3.metric("Cheapest GPU", f"${cheapest.total_usd_per_hour:,.2f}/hr", help=f"The cheapest configuration that fits. {cheapest.price_note or ''}".strip())
        low = " · marketplace offer (low-confidence price)" if cheapest.price_confidence == "low" else ""
        c3.caption(f"**{cheapest.count}× {cheapest.gpu.name}** at {cheapest.cheapest_provider} · {cheapest.utilisation:.0%} of memory used{low}")
    else:
        c3.metric("Cheapest GPU", "none", help="No priced configuration of up to 8 GPUs fits.")
        c3.caption("No priced 1–8 GPU configuration fits: see the suggestions under *What fits on my GPU?*")
    # The metric holds one short word (a quarter-width column shows ~14 characters at 1500 px and ~10 at
    # 1280 px: "config arithmetic" was cut to "config arithme…", "catalog (exact)" to "catalog (ex…" on a
    # 1280 x 720 projector); the full wording leads the caption under it.
    source = text.SOURCE_TEXT.get(spec.param_source, spec.param_source) + (" + trace profile" if spec.profile is not None else "")
    short = len(source) <= SHORT_METRIC_CHARS
    c4.metric("Counted from", source if short else source.split()[0],
              help="Parameters: analytic formulas, the checkpoint, or transformers' inventory; activations/KV: analytic formulas or a trace profile.")
    detail = resolved.detail if short else f"{source} · {resolved.detail}"
    if spec.counted_by == "inventory":  # no analytic formula: transformers' own class was read (calculator/inventory.py)
        # counted_from names a shipped inventory / profile ("transformers inventory (shipped) + trace profile (shipped)").
        detail = f"architecture: {counted_from(spec)} ({spec.architecture} on the meta device) · {detail}"
    c4.caption(f"{detail[:160]}{'…' if len(detail) > 160 else ''}")


def model_facts(resolved: ResolvedModel, facts: ModelFacts | None) -> None:
    """The model page's facts line ('5.8B params · text-to-speech · ... · updated May 31, 2026'),
    with where and when the facts were taken and the commit the estimate was computed from."""
    spec = resolved.spec
    if facts is None:
        line = f"{format_count(spec.num_params)} params · {spec.model_type}"
        where = "Hub facts (downloads, likes, last update) are not available for this model right now."
    else:
        line, where = facts_line(facts, num_params=spec.num_params), facts_provenance(facts)
    sha = resolved.sha or (facts.sha if facts else None)
    pinned = f" Estimate computed from commit `{sha[:12]}`." if sha else ""
    st.markdown(f"<div class='model-facts'>{html.escape(line)}</div>", unsafe_allow_html=True)
    st.caption(where + pinned)


def pinned_model_param(resolved: ResolvedModel) -> dict[str, str]:
    """The share link's `model=org/name@commit` when the commit is known, so the link names the exact checkpoint."""
    return {"model": f"{resolved.spec.model_id}@{resolved.sha}"} if resolved.sha else {}


def similar_models_section(page: PageState, spec: ModelSpec, *, extra: dict[str, str]) -> None:
    """Links to catalog models like this one (same family, then task, then size: `ui.compare.similar_models`,
    as on Compare); each opens the main page for that model with every other input of this view."""
    from .compare import catalog_specs, catalog_task, family, similar_models

    suggestions = similar_models(spec, catalog_specs(), task_of=catalog_task)
    if not suggestions:
        return
    st.header("Similar models")
    st.caption(f"From the bundled catalog: the same family as {spec.model_id} first, then the same task, then the closest in size. "
               "Each link opens that model with your other settings.")
    cols = st.columns(len(suggestions))
    # The view's query once (it reads every input), then only `model` differs between the links.
    query = dict(parse_qsl(page.share_query(extra=extra), keep_blank_values=True))
    for col, other in zip(cols, suggestions, strict=True):
        link = f"./?{urlencode(query | {'model': other.model_id}, safe='/,:@')}"
        details = " · ".join(p for p in (f"{format_count(other.num_params)} params", family(other), catalog_task(other.model_id)) if p)
        col.markdown(f"**[{other.model_id.split('/')[-1]}]({link})**  \n{other.model_id.split('/')[0]} · {details}")


def summary_sentence(est: Estimate, cheapest: GPUConfiguration | None) -> str:
    w = est.workload
    name = est.spec.model_id.split("/")[-1]
    doing = "run" if w.mode == "inference" else {"lora": "LoRA fine-tune", "qlora": "QLoRA fine-tune", "full": "fully fine-tune"}[w.mode]
    # A fine-tuning figure names the trainer it sizes (the one that starts, when the chosen one cannot).
    by = f" with **{PRESETS[w.trainer].label}**" if w.is_training and w.trainer in PRESETS and w.trainer != "custom" else ""
    s = (f"To {doing} **{name}**{by} at **{text.PRECISION_LABELS[w.precision]}** with {w.context_length:,} tokens × batch {w.batch_size}, "
         f"you need about **{both_units(est.total_bytes)}**{' per GPU on ' + str(est.num_gpus) + ' GPUs' if est.num_gpus > 1 else ''}.")
    if cheapest is not None:
        s += (f" The cheapest fit is **{cheapest.count}× {cheapest.gpu.name}** at about **${cheapest.total_usd_per_hour:,.2f}/hr** "
              f"({cheapest.cheapest_provider}).")
    return s


def breakdown_table(est: Estimate) -> pd.DataFrame:
    b = est.breakdown
    labels = component_labels(est.workload.runtime)
    rows = []
    for name, num_bytes in b.as_dict().items():
        if num_bytes <= 0:
            continue
        rows.append({
            "Component": labels[name],
            "GiB": round(num_bytes / GiB, 2),
            "GB": round(num_bytes / GB, 2),
            "Share": f"{num_bytes / b.total_bytes:.0%}",
            "What it is": text.COMPONENT_HELP[name],
        })
    return pd.DataFrame(rows)


def memory_kinds_table(est: Estimate) -> pd.DataFrame:
    """The three readings, named as the text beside it names them (the torch call names in a cell
    pushed the numbers off the right edge of the narrow column at 1280 px)."""
    b = est.breakdown
    return pd.DataFrame([
        {"Reading": name, "GiB": f"{n / GiB:,.2f}", "GB": f"{n / GB:,.2f}"}
        for name, n in (("Allocated", b.torch_allocated_bytes), ("Reserved", b.torch_reserved_bytes), ("nvidia-smi (headline)", b.total_bytes))
    ]).set_index("Reading")


def precision_mode_frame(table: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([
        {"Precision": text.TABLE_ROW_LABELS[row["precision"]], **{text.MODE_LABELS[m]: (format_bytes(row[m]) if row[m] is not None else "—")
                                                                    for m in ("inference", "lora", "qlora", "full")}}
        for row in table
    ])
    return frame.set_index("Precision")


def precision_mode_absent_note() -> str:
    """What each — of the precision x mode table stands for: each reason once, after the cells it explains."""
    by_reason: dict[str, list[str]] = {}
    for p in report.TABLE_PRECISIONS:
        for m in report.TABLE_MODES:
            if why := report.table_cell_absent(p, m):
                by_reason.setdefault(why, []).append(f"{text.TABLE_ROW_LABELS[p]} · {text.MODE_LABELS[m].split()[0]}")
    reasons = [f"{', '.join(cells)}: {why}" for why, cells in by_reason.items()]
    return "— marks a combination with no number of its own: " + "; ".join(reasons) + "."


def precision_mode_caption(workload: Any) -> str:
    """The table's caption: what its cells hold and whether the selection is one of them. The cells
    are sized for transformers at the table's precisions (`report.table_workload`), so a vLLM view
    has no highlighted cell, and the caption says so instead of claiming one. Every precision is a
    row: the 16-bit one is computed at the selected 16-bit type (FP16 unless BF16 is picked)."""
    w = workload
    head = f"Peak VRAM per GPU (nvidia-smi) at {w.context_length:,} tokens × batch {w.batch_size}"
    sixteen = "BF16" if w.precision == "bf16" else "FP16"
    same = f"FP16 and BF16 store 2 bytes per value and size alike: that row is computed at {sixteen}."
    if w.runtime == "vllm":
        return (f"{head}, sized for transformers (fine-tuning has no vLLM), everything else as set above. Your vLLM selection is not a cell: "
                f"its number is the headline above, which also counts vLLM's pre-allocated KV pool. {same} {precision_mode_absent_note()}")
    return f"{head}, everything else as set above. Your selection is highlighted. {same} {precision_mode_absent_note()}"


def selected_cell_note(precision: str, mode: str) -> str | None:
    """When the selected precision and mode land on a — cell, what the headline computes instead."""
    if precision not in report.table_precisions(precision) or not report.table_cell_absent(precision, mode):
        return None
    base = {"int8": "an LLM.int8 (8-bit) base", "int4": "an NF4 (4-bit) base"}.get(precision)
    if mode in ("lora", "qlora") and base:
        return (f"Your selection, {text.PRECISION_LABELS[precision]} · {text.MODE_LABELS[mode]}, has no cell of its own: "
                f"the headline above computes LoRA adapters on {base}.")
    return None


def highlight_cell(frame: pd.DataFrame, precision: str, mode: str) -> Any:
    """A Styler with the selected precision x mode cell highlighted (no highlight when the
    selected precision is not a table row)."""
    row, col = text.TABLE_ROW_LABELS.get(precision), text.MODE_LABELS.get(mode)

    def style(df: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame("", index=df.index, columns=df.columns)
        if row in df.index and col in df.columns:
            out.loc[row, col] = "background-color: #0B5CAD; color: white; font-weight: 700"
        return out

    return frame.style.apply(style, axis=None)


def ranking_frame(configs: Sequence[GPUConfiguration], *, limit: int = 25, plan: report.Plan | None = None) -> pd.DataFrame:
    """The ranked configurations as a table; with the `plan`, inference rows also get the estimated
    decode speed and $ per 1M output tokens (calculator.throughput, labelled as estimates)."""
    rows = []
    for i, c in enumerate(configs[:limit], start=1):
        speed = report.throughput_for(plan, c) if plan is not None and c.fits else None
        serving = report.serving_for(plan, c) if plan is not None else None
        vllm = {
            "vLLM starts": "yes" if serving.starts else "no",
            "vLLM KV tokens": serving.kv_tokens if serving.starts else None,
            "vLLM sequences at once": serving.max_concurrent_sequences,
            "vLLM max context at batch": serving.max_context_at_batch,
            "vllm serve (or the smallest change that starts it)": serving.command if serving.starts or serving.fix is None else serving.fix.command,
            **_sglang_columns(plan, c),
        } if serving else {}
        rows.append({
            "Rank": i,
            "Configuration": f"{c.count}× {c.gpu.name}",
            "Total $/hr": None if c.total_usd_per_hour is None else round(c.total_usd_per_hour, 2),
            "$/GPU-hr": None if c.usd_per_gpu_hour is None else round(c.usd_per_gpu_hour, 2),
            "Cheapest at": c.cheapest_provider or "no price",
            "Range $/GPU-hr": f"{c.price_range[0]:.2f}–{c.price_range[1]:.2f} ({c.providers_count})" if c.price_range else "",
            "Memory used": f"{c.utilisation:.0%}",
            "Fits": "yes" if c.fits else "no",
            **vllm,
            "Decode tok/s (est.)": round(speed.decode.per_sequence_tokens_per_s, 1) if speed else None,
            "$ / 1M output tokens (est.)": round(speed.usd_per_million_output_tokens, 2) if speed and speed.usd_per_million_output_tokens else None,
            "Needs per GPU (GiB)": round(c.per_gpu_required_bytes / GiB, 2),
            "Usable per GPU (GiB)": round(c.gpu.usable_bytes / GiB, 2),
            "Total VRAM (GiB)": round(c.total_vram_bytes / GiB, 1),
            "Price as of": c.price_as_of,
            "Price confidence": c.price_confidence,
            "Notes": " ".join(x for x in (c.reason, "" if c.precision_ok else c.precision_note) if x),
        })
    return pd.DataFrame(rows)


def gpu_label(gpu: GPU) -> str:
    return f"{gpu.name} ({gpu.usable_bytes / GiB:,.1f} GiB usable)"


def fit_limits_frame(limits: Sequence[Any], *, context: int, batch: int) -> pd.DataFrame:
    rows = []
    for f in limits:
        ctx = "nothing fits" if f.max_context_length == 0 else f"{f.max_context_length:,}" + (" (model max)" if f.context_capped else "")
        rows.append({
            "Precision": text.PRECISION_LABELS[f.precision],
            "Mode": text.MODE_LABELS[f.mode],
            f"Fits at {context:,} tokens × {batch}": "yes" if f.fits else "no",
            "Needs per GPU": both_units(f.required_bytes),
            f"Longest context at batch {batch}": ctx,
            f"Largest batch at {context:,} tokens": "none" if f.max_batch_size == 0 else f"{f.max_batch_size:,}" + ("+" if f.max_batch_size >= 4096 else ""),
        })
    return pd.DataFrame(rows)


def gpu_count_choices() -> tuple[int, ...]:
    return GPU_COUNT_CHOICES


def vllm_start_section(plan: report.Plan, configs: Sequence[GPUConfiguration], *, limit: int = 8, failing: int = 3) -> None:
    """"Will `vllm serve` start?" for the first ranked configurations: the answer, the KV tokens and
    concurrency it gets, and the command line to run; then the closest configurations that do not
    start, each with the smallest flag change that starts it."""
    context = plan.estimate.workload.context_length
    starting = [c for c in configs if c.fits][:limit]
    closest = [c for c in plan.ranking if not c.fits and c.tensor_parallel_ok][:failing]
    first = (starting + closest)[:1]
    if first and (serving := report.serving_for(plan, first[0])) is not None and serving.budget is not None:
        with st.expander(f"Start-up budget term by term: {first[0].count}× {first[0].gpu.name}, per GPU", expanded=False):
            st.dataframe(fixed_decimals(vllm_terms_frame(serving.budget)), hide_index=True)
    for c in starting + closest:
        serving = report.serving_for(plan, c)
        if serving is None:
            return
        if serving.starts:
            st.markdown(f"**{c.count}× {c.gpu.name}** starts: {serving.kv_tokens:,} KV tokens, "
                        f"{serving.max_concurrency:.2f}× concurrency at {context:,} tokens per request.")
            st.code(serving.command, language="bash", wrap_lines=True)  # unwrapped, --tensor-parallel-size ran off the edge at 1280 px
        else:
            st.markdown(f"**{c.count}× {c.gpu.name}** does not start: {serving.reason}.")
            if serving.fix is not None:
                st.markdown(f"Smallest change: {serving.fix.description} → {serving.fix.kv_tokens:,} KV tokens, "
                            f"{serving.fix.max_concurrency:.2f}× concurrency.")
                st.code(serving.fix.command, language="bash", wrap_lines=True)


def _sglang_columns(plan: report.Plan | None, c: GPUConfiguration) -> dict[str, Any]:
    """SGLang's answer on the same configuration (calculator/sglang.py, SGLang 0.5.23 defaults)."""
    if plan is None:
        return {}
    from calculator.sglang import sglang_budget

    w = replace(plan.estimate.workload, num_gpus=c.count, parallelism="auto")
    b = sglang_budget(plan.estimate.spec, w, gpu_usable_bytes=c.gpu.usable_bytes, nvlink=c.gpu.nvlink == "yes",
                      datacenter=c.gpu.segment.startswith("datacenter"))
    return {"SGLang KV tokens": b.max_total_num_tokens if b.starts else None, "SGLang mem_fraction_static": b.mem_fraction_static}


def vllm_terms_frame(b: Any) -> pd.DataFrame:
    """vLLM's start-up budget on one GPU (a `calculator.vllm.VllmBudget`), term by term, with the
    vLLM code each comes from (calculator/vllm.py cites file and version)."""
    s = b.settings
    graphs_where = "inside the budget (0.20+)" if b.cudagraphs_in_budget else "outside the budget (from the 1 - utilization headroom)"
    rows = [
        ("Total (torch.cuda.mem_get_info)", b.gpu_total_bytes, "nvidia-smi total minus the driver's reserve"),
        (f"Budget = {s.gpu_memory_utilization:g} × total", b.requested_bytes, "gpu_memory_utilization"),
        ("Weights (this rank)", b.weights_bytes, f"TP {s.tensor_parallel_size}: linear layers, embeddings and LM head split"),
        ("Activation peak (profile)", b.activation_peak_bytes,
         f"{s.max_num_batched_tokens:,} tokens over {min(s.max_num_seqs, s.max_num_batched_tokens):,} requests; sampler "
         f"{b.sampler_bytes / GiB:.2f} GiB"
         + (f"; encoder profiled first: {b.encoder.items:,} images × {b.encoder.tokens_per_item:,} tokens "
            f"({b.encoder.peak_bytes / GiB:.2f} GiB tower peak)" if getattr(b, "encoder", None) else "")),
        ("Non-torch (kernels, NCCL)", b.non_torch_bytes,
         "per GPU class and engine; NCCL channels connected during the profile, and its setup too when the version snapshots first"),
        ("NCCL setup outside the budget", b.nccl_outside_bytes, "allocated before the snapshot (0.19+): must fit next to the CUDA context"),
        ("CUDA graphs", b.cudagraph_bytes, "none (--enforce-eager)" if s.enforce_eager else graphs_where),
        ("KV cache available", b.available_kv_bytes, f"{b.num_blocks:,} blocks of 16 tokens → {b.kv_tokens:,} tokens"),
    ]
    return pd.DataFrame([{"Term": t, "GiB": round(v / GiB, 2), "How vLLM " + s.version + " sizes it": why} for t, v, why in rows])
