"""Page inputs <-> URL query parameters, with every correction reported.

Any page declares its inputs as `Param`s and binds them with `PageState`:

    state = PageState("main", MAIN_PARAMS)
    notes = state.load()               # URL (or this session's last values) -> st.session_state
    ... widgets with key=state.key(name) and no value=/index= argument ...
    state.write_url()                  # st.session_state -> st.query_params

The parsing half (`Param.parse`, `read_params`, `encode_params`, `reconcile_main`) is pure and
tested without Streamlit. A value that cannot be used is never a crash: it is replaced (by the
default, or the nearest allowed value) and a sentence saying so is returned for `st.warning`.

Loading rule: widget keys already in the session win (the user is interacting). Otherwise, when
the URL names any of the page's parameters, the URL defines the view (missing ones take their
defaults: a link reproduces a view). Otherwise the page's last values in this session are used
(pages are left and re-entered; Streamlit drops widget state of pages not shown), else defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from calculator.gpus import load_gpus
from calculator.stacks import STACK_NAMES
from calculator.trainers import DEFAULT_TRAINER
from calculator.units import PRECISIONS
from calculator.vllm import CURRENT_VLLM_VERSION, VLLM_VERSIONS
from calculator.workload import (
    ATTENTION_IMPLS,
    CACHE_IMPLEMENTATIONS,
    CHECKPOINT_POLICIES,
    CPU_OFFLOADS,
    KERNELS,
    LORA_TARGETS,
    LOSS_IMPLS,
    MAX_BATCH_SIZE,
    MAX_CONTEXT_TOKENS,
    MAX_LORA_RANK,
    MODES,
    OPTIMIZERS,
    PACKINGS,
    PARALLELISMS,
    PEFT_METHODS,
    QUANT_METHODS,
    TRAINER_NAMES,
    Workload,
)

ParamKind = Literal["choice", "int", "float", "bool", "str", "list", "lengths"]

# A Hugging Face repo id (`org/name`, or a legacy bare `name`) with an optional `@revision`. The Hub
# allows letters, digits, '-', '_', '.' (no '--' or '..', 96 characters per part); anything else
# (paths, '..', URLs, spaces) is refused before it reaches the resolver.
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?(@[A-Za-z0-9][A-Za-z0-9._/-]{0,99})?$")
MAX_LIST_ITEMS = 8


def model_id_problem(value: str) -> str:
    """Why `value` is not a usable model id ('' when it is)."""
    v = value.strip()
    if not v:
        return "no model id given"
    if ".." in v or "--" in v.split("@")[0] or not MODEL_ID_RE.match(v):
        return f"{v[:80]!r} is not a Hugging Face model id (expected org/name, letters, digits, '-', '_', '.')"
    return ""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One input of a page: its URL key (also its session-state key suffix), default and rule."""

    name: str
    label: str
    default: Any
    kind: ParamKind
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    check: Callable[[str], str] | None = field(default=None, compare=False)  # returns a problem, '' when fine

    def parse(self, raw: str) -> tuple[Any, str]:
        """(value, note): the value to use for the URL text `raw` and, when it is not `raw` as
        given, a sentence saying what was wrong and what is used instead."""
        text = str(raw).strip()
        shown = text if len(text) <= 40 else text[:40] + "…"

        def fallback(why: str, value: Any = None) -> tuple[Any, str]:
            use = self.default if value is None else value
            return use, f"URL parameter {self.name}={shown!r} ignored: {why}; using {self.format(use)}."

        if self.kind == "choice":
            for c in self.choices:
                if text.lower() == str(c).lower():
                    return c, ""
            if len(self.choices) > 10:
                return fallback(f"{self.label} must be one of {len(self.choices)} known values such as {', '.join(map(str, self.choices[:4]))}")
            return fallback(f"{self.label} must be one of {', '.join(map(str, self.choices))}")
        if self.kind == "bool":
            if text.lower() in _TRUE:
                return True, ""
            if text.lower() in _FALSE:
                return False, ""
            return fallback(f"{self.label} must be 1 or 0")
        if self.kind in ("int", "float"):
            try:
                number = float(text.replace(",", "").replace("_", ""))
            except ValueError:
                return fallback(f"{self.label} must be a number")
            if not math.isfinite(number):
                return fallback(f"{self.label} must be a finite number")
            if self.kind == "int" and number != int(number):
                return fallback(f"{self.label} must be a whole number")
            value = int(number) if self.kind == "int" else number
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                return fallback(f"{self.label} must be from {self.format(self.low)} to {self.format(self.high)}")
            return value, ""
        if self.kind == "list":
            items = [s.strip() for s in text.split(",") if s.strip()]
            good, bad = [], []
            for item in items:
                (bad if self.check and self.check(item) else good).append(item)
            note = ""
            if bad:
                note = f"URL parameter {self.name}: ignored {', '.join(repr(b[:40]) for b in bad[:3])} (not a valid {self.label})."
            if len(good) > MAX_LIST_ITEMS:
                good = good[:MAX_LIST_ITEMS]
                note = (note + " " if note else "") + f"URL parameter {self.name}: only the first {MAX_LIST_ITEMS} are used."
            return tuple(good), note
        if self.kind == "lengths":
            return _parse_lengths_param(self, text, fallback)
        # str
        problem = self.check(text) if self.check else ""
        if problem:
            return fallback(problem)
        return text, ""

    def format(self, value: Any) -> str:
        if value is None and self.name in TRAINER_KEYS:
            return "the trainer's default"
        if value is None or value == "":
            return "nothing"
        if self.kind == "bool":
            return "on" if value else "off"
        if self.kind == "int":
            return f"{int(value):,}"
        if self.kind == "float":
            return f"{value:g}"
        if self.kind == "list":
            return ", ".join(value) or "none"
        return str(value)

    def encode(self, value: Any) -> str:
        if self.kind == "bool":
            return "1" if value else "0"
        if self.kind == "float":
            return f"{value:g}"
        if self.kind == "list":
            return ",".join(value)
        return str(value)


def _parse_lengths_param(p: Param, text: str, fallback: Callable[..., tuple[Any, str]]) -> tuple[Any, str]:
    """A `lengths=` link: at most MAX_LINK_CHARS of comma-separated token counts, kept as the
    normalised summary text (sorted, at most MAX_SUMMARY_POINTS quantiles: calculator/lengths.py)."""
    from calculator.errors import InvalidWorkloadError
    from calculator.lengths import MAX_LINK_CHARS, MAX_SUMMARY_POINTS, format_lengths, parse_lengths, summarise_lengths

    if len(text) > MAX_LINK_CHARS:
        return fallback(f"{p.label} in a link are at most {MAX_LINK_CHARS} characters ({MAX_SUMMARY_POINTS} lengths)")
    try:
        lengths = parse_lengths(text, max_chars=MAX_LINK_CHARS)
    except InvalidWorkloadError as exc:
        return fallback(str(exc).rstrip("."))
    summary = summarise_lengths(lengths)
    note = "" if len(summary) == len(lengths) else (
        f"URL parameter {p.name}: {len(lengths)} lengths summarised as {len(summary)} quantiles.")
    return format_lengths(summary), note


def _first(raw: str | Sequence[str]) -> str:
    if isinstance(raw, str):
        return raw
    return raw[-1] if raw else ""


def read_params(params: Sequence[Param], query: Mapping[str, str | Sequence[str]]) -> tuple[dict[str, Any], list[str]]:
    """Values for every param from a query mapping (missing -> default), with notes for corrections."""
    values: dict[str, Any] = {}
    notes: list[str] = []
    for p in params:
        if p.name in query:
            value, note = p.parse(_first(query[p.name]))
            values[p.name] = value
            if note:
                notes.append(note)
        else:
            values[p.name] = p.default
    return values, notes


def encode_params(params: Sequence[Param], values: Mapping[str, Any], *, always: Sequence[str] = ()) -> dict[str, str]:
    """Query parameters for `values`: those in `always`, and every other one that differs from its default."""
    out = {}
    for p in params:
        value = values.get(p.name, p.default)
        if p.name in always or value != p.default:
            out[p.name] = p.encode(value)
    return out


# --------------------------------------------------------------------------------------------
# The main page's inputs
# --------------------------------------------------------------------------------------------

DEFAULT_MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
# URL parameter -> the Workload field a trainer preset decides.
TRAINER_KEYS: dict[str, str] = {
    "optimizer": "optimizer", "grad_ckpt": "gradient_checkpointing", "master_weights": "master_weights", "lora_rank": "lora_rank",
    "lora_targets": "lora_targets", "adapter_precision": "adapter_precision", "loss": "loss_impl", "ckpt_every": "checkpoint_every",
    "offload": "activation_offload", "opt_in_bwd": "optimizer_in_backward", "fused_opt": "fused_optimizer",
    "paged_opt": "paged_optimizer", "norm_kernel": "norm_kernel", "mlp_kernel": "mlp_kernel", "packing": "packing",
}
KV_DTYPES: tuple[str, ...] = ("auto", "fp16", "bf16", "fp8", "int8", "int4", "fp32")
RUNTIMES: tuple[str, ...] = ("transformers", "vllm")
ADAPTER_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
GPU_COUNT_CHOICES: tuple[int, ...] = (1, 2, 4, 8)
MAX_GPUS_INPUT = 64

VLLM_VERSION_CHOICES: tuple[str, ...] = tuple(VLLM_VERSIONS)

MAIN_PARAMS: tuple[Param, ...] = (
    Param(name="model", label="model id", default=DEFAULT_MODEL, kind="str", check=model_id_problem),
    Param(name="precision", label="precision", default="fp16", kind="choice", choices=PRECISIONS),
    Param(name="mode", label="mode", default="inference", kind="choice", choices=MODES),
    Param(name="context", label="context length", default=4096, kind="int", low=1, high=MAX_CONTEXT_TOKENS),
    Param(name="batch", label="batch size", default=1, kind="int", low=1, high=MAX_BATCH_SIZE),
    # Settings a trainer preset decides (calculator/trainers.py): default None = the trainer's value,
    # so a link carries only what differs from its trainer (`trainer_relative`).
    Param(name="trainer", label="trainer", default=DEFAULT_TRAINER, kind="choice", choices=TRAINER_NAMES),
    Param(name="optimizer", label="optimizer", default=None, kind="choice", choices=OPTIMIZERS),
    Param(name="grad_ckpt", label="gradient checkpointing", default=None, kind="bool"),
    Param(name="master_weights", label="fp32 weights (autocast)", default=None, kind="bool"),
    Param(name="lora_rank", label="LoRA rank", default=None, kind="int", low=1, high=min(MAX_LORA_RANK, 4096)),
    Param(name="lora_targets", label="LoRA targets", default=None, kind="choice", choices=LORA_TARGETS),
    Param(name="adapter_precision", label="adapter precision", default=None, kind="choice", choices=ADAPTER_PRECISIONS),
    Param(name="loss", label="loss implementation", default=None, kind="choice", choices=LOSS_IMPLS),
    Param(name="ckpt_every", label="checkpoint every k-th layer", default=None, kind="int", low=1, high=1024),
    Param(name="offload", label="activation offloading", default=None, kind="bool"),
    Param(name="opt_in_bwd", label="optimizer step in backward", default=None, kind="bool"),
    Param(name="fused_opt", label="fused AdamW", default=None, kind="bool"),
    Param(name="paged_opt", label="paged optimizer", default=None, kind="bool"),
    Param(name="norm_kernel", label="RMSNorm kernel", default=None, kind="choice", choices=KERNELS),
    Param(name="mlp_kernel", label="SwiGLU kernel", default=None, kind="choice", choices=KERNELS),
    Param(name="packing", label="packing", default=None, kind="choice", choices=PACKINGS),
    # The dataset's sequence lengths (calculator/lengths.py): '' = every sequence is `context` long.
    Param(name="lengths", label="sample lengths", default="", kind="lengths"),
    Param(name="peft", label="PEFT method", default="lora", kind="choice", choices=PEFT_METHODS),
    Param(name="oft_block", label="OFT block size", default=32, kind="int", low=1, high=min(MAX_LORA_RANK, 4096)),
    Param(name="vera_rank", label="VeRA rank", default=256, kind="int", low=1, high=min(MAX_LORA_RANK, 4096)),
    Param(name="ckpt_policy", label="checkpointing policy", default="full", kind="choice", choices=CHECKPOINT_POLICIES),
    # torch.compile of the layers and the chunked loss (torchtune `compile=True`; calculator/memory.py sizes what it saves).
    Param(name="compile", label="torch.compile (layers and loss)", default=False, kind="bool"),
    Param(name="cpu_offload", label="CPU offload (ZeRO/FSDP)", default="none", kind="choice", choices=CPU_OFFLOADS),
    Param(name="trained_frac", label="trained token fraction", default=1.0, kind="float", low=0.01, high=1.0),
    Param(name="kv_dtype", label="KV-cache precision", default="auto", kind="choice", choices=KV_DTYPES),
    Param(name="cache", label="generate cache", default="dynamic", kind="choice", choices=CACHE_IMPLEMENTATIONS),
    Param(name="gen", label="generated tokens", default=0, kind="int", low=0, high=MAX_CONTEXT_TOKENS - 1),
    Param(name="attention", label="attention implementation", default="sdpa", kind="choice", choices=ATTENTION_IMPLS),
    Param(name="runtime", label="runtime", default="transformers", kind="choice", choices=RUNTIMES),
    Param(name="gpu_util", label="vLLM gpu_memory_utilization", default=0.9, kind="float", low=0.05, high=1.0),
    Param(name="vllm_version", label="vLLM version", default=CURRENT_VLLM_VERSION, kind="choice", choices=VLLM_VERSION_CHOICES),
    Param(name="max_num_seqs", label="vLLM --max-num-seqs (0 = vLLM's default)", default=0, kind="int", low=0, high=MAX_BATCH_SIZE),
    Param(name="max_batched", label="vLLM --max-num-batched-tokens (0 = vLLM's default)", default=0, kind="int", low=0, high=MAX_CONTEXT_TOKENS),
    Param(name="eager", label="vLLM --enforce-eager", default=False, kind="bool"),
    Param(name="gpus", label="number of GPUs", default=1, kind="int", low=1, high=MAX_GPUS_INPUT),
    Param(name="parallelism", label="parallelism", default="auto", kind="choice", choices=PARALLELISMS),
    Param(name="headroom", label="headroom %", default=0, kind="int", low=0, high=100),
    Param(name="quant", label="quantization method", default="auto", kind="choice", choices=QUANT_METHODS),
    Param(name="my_gpu", label="your GPU", default="rtx-4090", kind="choice", choices=tuple(g.id for g in load_gpus())),
    Param(name="my_gpus", label="how many of your GPU", default=1, kind="choice", choices=GPU_COUNT_CHOICES),
    Param(name="audio_share", label="audio-token share", default=0.0, kind="float", low=0.0, high=1.0),
    Param(name="stack", label="stack", default="current", kind="choice", choices=STACK_NAMES),
    Param(name="codec", label="audio codec on this GPU", default=True, kind="bool"),
)
MAIN_ALWAYS: tuple[str, ...] = ("model", "precision", "mode", "context", "batch")


def trainer_defaults(trainer: str, mode: str) -> dict[str, Any]:
    """URL parameter -> the value `trainer`'s preset gives it for `mode`."""
    from calculator.trainers import preset_settings

    settings = preset_settings(trainer if trainer in TRAINER_NAMES else DEFAULT_TRAINER, mode)
    return {name: settings[field] for name, field in TRAINER_KEYS.items()}


def resolve_trainer_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill each trainer-decided setting left at None with the trainer's value."""
    v = dict(values)
    preset = trainer_defaults(v.get("trainer", DEFAULT_TRAINER), v.get("mode", "inference"))
    for name, value in preset.items():
        if v.get(name) is None:
            v[name] = value
    return v


def trainer_relative(values: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(values for the URL, extra keys always written): settings equal to the trainer's become None
    (left out of the link), and a fine-tuning view always names its trainer."""
    v = dict(values)
    preset = trainer_defaults(v.get("trainer", DEFAULT_TRAINER), v.get("mode", "inference"))
    for name, value in preset.items():
        if v.get(name) == value:
            v[name] = None
    return v, (("trainer",) if v.get("mode", "inference") != "inference" else ())
TRAINING_PARALLELISMS = ("auto", "ddp", "zero1", "zero2", "zero3", "fsdp")
INFERENCE_PARALLELISMS = ("auto", "tp")


def reconcile_main(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Resolve settings that contradict each other (the engine would refuse them), saying what changed.

    The mode wins over the precision and the runtime: picking QLoRA means a 4-bit base, picking
    full fine-tuning means 16-bit weights, training means the transformers runtime.
    """
    v = dict(values)
    notes = []
    training = v["mode"] != "inference"
    if v["mode"] == "qlora" and v["precision"] not in ("int4", "int8"):
        notes.append(f"QLoRA trains adapters on a quantized base, so precision {v['precision']} was changed to int4 (the QLoRA paper's NF4).")
        v["precision"] = "int4"
    if v["mode"] == "full" and v["precision"] in ("int8", "int4", "fp8"):
        notes.append(f"Full fine-tuning updates every weight, which {v['precision']} storage cannot hold: precision changed to bf16.")
        v["precision"] = "bf16"
    if training and v["runtime"] != "transformers":
        notes.append("vLLM serves inference only: the runtime was changed to transformers for training.")
        v["runtime"] = "transformers"
    if training and v["parallelism"] not in TRAINING_PARALLELISMS:
        notes.append(f"{v['parallelism']} is an inference split; training uses auto (FSDP on several GPUs).")
        v["parallelism"] = "auto"
    if int(v.get("gen", 0)) >= int(v["context"]) and int(v.get("gen", 0)) > 0:
        notes.append(f"{int(v['gen']):,} generated tokens do not fit a {int(v['context']):,}-token context (prompt + generated): "
                     f"using {int(v['context']) - 1:,}.")
        v["gen"] = int(v["context"]) - 1
    if v.get("cache", "dynamic") != "dynamic" and (training or v["runtime"] != "transformers"):
        why = "training keeps no cache" if training else "vLLM pages its own"
        notes.append(f"The {v['cache']} cache is transformers generate's; {why}, so it was set to dynamic.")
        v["cache"] = "dynamic"
    if v.get("cache") == "quantized" and v["kv_dtype"] not in ("auto", "int4", "int8", "fp8"):
        notes.append(f"transformers' quantized cache stores int4, int8 or fp8, not {v['kv_dtype']}: KV-cache precision changed to int4.")
        v["kv_dtype"] = "int4"
    if not training and v["parallelism"] not in INFERENCE_PARALLELISMS:
        notes.append(f"{v['parallelism']} shards training state; inference uses auto (tensor parallel on several GPUs).")
        v["parallelism"] = "auto"
    return v, notes


def workload_lengths(text: str) -> tuple[int, ...]:
    """The summarised lengths of an input box or link text (raises InvalidWorkloadError)."""
    from calculator.lengths import parse_lengths, summarise_lengths

    return summarise_lengths(parse_lengths(str(text or "")))


def main_workload(values: Mapping[str, Any]) -> Workload:
    """The engine's workload for reconciled main-page values (raises InvalidWorkloadError if still invalid).
    Trainer-decided settings left at None take the trainer's values."""
    values = resolve_trainer_values(values)
    return Workload(
        trainer=values["trainer"],
        loss_impl=values["loss"],
        checkpoint_every=int(values["ckpt_every"]),
        checkpoint_policy=values.get("ckpt_policy", "full"),
        compile_layers=bool(values.get("compile", False)),
        compile_loss=bool(values.get("compile", False)),
        activation_offload=bool(values["offload"]),
        optimizer_in_backward=bool(values["opt_in_bwd"]),
        fused_optimizer=bool(values["fused_opt"]),
        paged_optimizer=bool(values["paged_opt"]),
        norm_kernel=values["norm_kernel"],
        mlp_kernel=values["mlp_kernel"],
        packing=values["packing"],
        sample_lengths=workload_lengths(values.get("lengths", "")),
        peft_method=values["peft"],
        oft_block_size=int(values.get("oft_block", 32)),
        vera_rank=int(values.get("vera_rank", 256)),
        cpu_offload=values["cpu_offload"],
        trained_token_fraction=float(values["trained_frac"]),
        mode=values["mode"],
        precision=values["precision"],
        quant_method=values["quant"],
        context_length=int(values["context"]),
        batch_size=int(values["batch"]),
        kv_cache_precision=None if values["kv_dtype"] == "auto" else values["kv_dtype"],
        cache_implementation=values.get("cache", "dynamic"),
        generated_tokens=0 if values["mode"] != "inference" else int(values.get("gen", 0)),
        attention=values["attention"],
        gradient_checkpointing=bool(values["grad_ckpt"]),
        optimizer=values["optimizer"],
        master_weights=bool(values["master_weights"]),
        lora_rank=int(values["lora_rank"]),
        lora_targets=values["lora_targets"],
        adapter_precision=values["adapter_precision"],
        runtime=values["runtime"],
        gpu_memory_utilization=float(values["gpu_util"]),
        vllm_version="" if values.get("vllm_version", CURRENT_VLLM_VERSION) == CURRENT_VLLM_VERSION else values["vllm_version"],
        max_num_seqs=int(values.get("max_num_seqs", 0)) or None,
        max_num_batched_tokens=int(values.get("max_batched", 0)) or None,
        enforce_eager=bool(values.get("eager", False)),
        num_gpus=int(values["gpus"]),
        parallelism=values["parallelism"],
        audio_token_share=float(values.get("audio_share", 0.0)),
        stack=values.get("stack", "current"),
        speech_codec=bool(values.get("codec", True)),
    )


# --------------------------------------------------------------------------------------------
# Streamlit glue
# --------------------------------------------------------------------------------------------


class PageState:
    """Binds a page's `Param`s to `st.session_state` keys `<page>.<name>` and to `st.query_params`."""

    def __init__(self, page: str, params: Sequence[Param], *, always: Sequence[str] = ()) -> None:
        self.page = page
        self.params = tuple(params)
        self.by_name = {p.name: p for p in self.params}
        self.always = tuple(always)
        self._mirror = f"_url_state.{page}"

    def _url_values(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """What the link carries: trainer-decided settings relative to the page's trainer."""
        if "trainer" in self.by_name:
            return trainer_relative(values)
        return dict(values), ()

    def key(self, name: str) -> str:
        return f"{self.page}.{name}"

    def load(self) -> list[str]:
        """Fill session state for params whose widgets are not live; return correction notes."""
        import streamlit as st

        missing = [p for p in self.params if self.key(p.name) not in st.session_state]
        if not missing:
            return []
        query = {k: st.query_params.get_all(k) for k in st.query_params}
        from_url = any(p.name in query for p in self.params)
        mirror = st.session_state.get(self._mirror) or {}
        notes: list[str] = []
        if from_url:
            values, notes = read_params(self.params, query)
        else:
            values = {p.name: mirror.get(p.name, p.default) for p in self.params}
        for p in missing:
            st.session_state[self.key(p.name)] = values[p.name]
        return notes

    def get(self, name: str) -> Any:
        import streamlit as st

        return st.session_state.get(self.key(name), self.by_name[name].default)

    def set(self, name: str, value: Any) -> None:
        """Set an input; call before its widget is drawn in this run."""
        import streamlit as st

        st.session_state[self.key(name)] = value

    def values(self) -> dict[str, Any]:
        return {p.name: self.get(p.name) for p in self.params}

    def write_url(self, extra: Mapping[str, str] | None = None) -> None:
        """Make the URL (and this session's memory of the page) match the inputs, plus `extra`
        parameters shared by several pages (e.g. your GPU rates)."""
        import streamlit as st

        values = self.values()
        st.session_state[self._mirror] = values
        url_values, always = self._url_values(values)
        wanted = encode_params(self.params, url_values, always=self.always + always) | dict(extra or {})
        current = {k: st.query_params.get(k) for k in st.query_params}
        if current != wanted:
            st.query_params.from_dict(wanted)

    def share_query(self, extra: Mapping[str, str] | None = None) -> str:
        """The query string of a link that reproduces this view."""
        from urllib.parse import urlencode

        url_values, always = self._url_values(self.values())
        return urlencode(encode_params(self.params, url_values, always=self.always + always) | dict(extra or {}), safe="/,:@")


# --------------------------------------------------------------------------------------------
# The Compare page's inputs
# --------------------------------------------------------------------------------------------


def _setting_problem(value: str) -> str:
    from .compare import setting_problem

    return setting_problem(value)


COMPARE_DEFAULT_MODELS: tuple[str, ...] = (DEFAULT_MODEL, "meta-llama/Llama-3.2-3B", "Qwen/Qwen2.5-7B")
COMPARE_PARAMS: tuple[Param, ...] = (
    Param(name="what", label="what to compare", default="models", kind="choice", choices=("models", "settings")),
    Param(name="models", label="model id", default=COMPARE_DEFAULT_MODELS, kind="list", check=model_id_problem),
    Param(name="model", label="model id", default=DEFAULT_MODEL, kind="str", check=model_id_problem),
    Param(name="settings", label="setting (precision/mode)", default=("fp16/inference", "int8/inference", "int4/inference", "fp16/lora", "int4/qlora"),
          kind="list", check=_setting_problem),
    Param(name="precision", label="precision", default="fp16", kind="choice", choices=PRECISIONS),
    Param(name="mode", label="mode", default="inference", kind="choice", choices=MODES),
    Param(name="context", label="context length", default=4096, kind="int", low=1, high=MAX_CONTEXT_TOKENS),
    Param(name="batch", label="batch size", default=1, kind="int", low=1, high=MAX_BATCH_SIZE),
    Param(name="trainer", label="trainer", default=DEFAULT_TRAINER, kind="choice", choices=TRAINER_NAMES),
    Param(name="lengths", label="sample lengths", default="", kind="lengths"),
)


# --------------------------------------------------------------------------------------------
# The GPUs & prices page's inputs
# --------------------------------------------------------------------------------------------

GPU_VENDORS: tuple[str, ...] = tuple(sorted({g.vendor for g in load_gpus()}))
GPU_SEGMENTS: tuple[str, ...] = ("datacenter", "workstation", "consumer")


def _vendor_problem(value: str) -> str:
    return "" if value in GPU_VENDORS else "vendor"


def _segment_problem(value: str) -> str:
    return "" if value in GPU_SEGMENTS else "segment"


def _search_problem(value: str) -> str:
    return "" if len(value) <= 60 and all(c.isalnum() or c in " -_." for c in value) else "search text (letters, digits, spaces, '-', '_', '.')"


# The GPUs page's memory slider: 0-288 GiB in steps of 8 (the largest bundled GPU has 285 GiB usable).
# The URL parameter has the same bound, so a link can never hold a value the slider refuses.
MIN_GIB_MAX = 288
MIN_GIB_STEP = 8

GPU_PARAMS: tuple[Param, ...] = (
    Param(name="vendor", label="vendor", default=(), kind="list", check=_vendor_problem),
    Param(name="segment", label="segment", default=(), kind="list", check=_segment_problem),
    Param(name="min_gib", label="minimum usable GiB", default=0, kind="int", low=0, high=MIN_GIB_MAX),
    Param(name="q", label="search", default="", kind="str", check=_search_problem),
    Param(name="gpu", label="GPU", default="h100-sxm", kind="choice", choices=tuple(g.id for g in load_gpus())),
)
