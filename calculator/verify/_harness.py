"""The torch side of `trace_workload`: imported only when a trace runs.

Everything here runs inside one `FakeTensorMode`: parameters, activations, caches and optimizer
states are FakeTensors (shape, dtype and device, no data), so a 70B model traces on a laptop.
`_PhaseTracker` is torch's `MemTracker` with three changes, each for a reason written next to it:
it samples the running totals per phase, it installs gradient hooks only on trainable parameters,
and it gives up after a deadline.

Workarounds for transformers under fake tensors (see /work/shared/TRACE-NOTES.md):
- packed-sequence detection: `masking_utils.find_packed_sequence_indices` cannot read fake
  `position_ids` and assumes packing, which builds an explicit [batch, 1, seq, seq] mask, makes SDPA
  expand K/V to every query head (`repeat_kv`) and takes it off its `is_causal` path. Our inputs are
  never packed, so during the trace it answers "not packed" (None), as it does for real unpacked
  input.
- no 2D attention mask is passed: an all-ones mask is skipped in a real run (`fast_all`), but a
  fake one cannot be read and would be expanded to an explicit 4D mask. Passing none is what an
  unpadded real run amounts to.
- data-dependent routing (boolean-mask indexing, `nonzero`, `torch.where(mask)`): the mode has a
  ShapeEnv and `routing.ValueShadow` on top, which keeps real values for the token ids we feed
  (`inputs.py`: the workload's audio-token share for DualFFN models) and the masks computed from
  them, and gives router `topk` choices balanced routing; fake kernels read the counts from there.
- peft places adapters with `Module.to()`, which cannot swap fake parameters; while peft builds
  them, `to()` re-creates parameters in the requested dtype instead (their values do not matter).
- SDPA with a query/key head size unlike the value's (multi-head latent attention: DeepSeek-V3
  192 vs 128) takes CPU's math path, [batch, heads, seq, seq] scores saved for backward; a GPU runs
  its memory-efficient kernel (output + fp32 logsumexp). During the trace those calls run that
  kernel's op and CUDA backward allocations instead (`_sdpa.py`); equal head sizes are untouched.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    UnsupportedOperatorException,
)
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

from ..spec import ModelSpec, model_spec_from_config
from ..workload import Workload
from . import routing
from .inputs import next_step_inputs, token_inputs, training_labels
from .trace import CATEGORIES, TraceResult, TraceUnsupportedError

_CATEGORY_OF = {
    _MemRefType.PARAM: "parameters",
    _MemRefType.BUFFER: "buffers",
    _MemRefType.GRAD: "gradients",
    _MemRefType.OPT: "optimizer",
    _MemRefType.ACT: "activations",
    _MemRefType.TEMP: "temporaries",
    _MemRefType.OTH: "inputs",
}
_TOTAL_KEY = "Total"  # torch.distributed._tools.mem_tracker._TOTAL_KEY
_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_NESTED_CONFIG_KEYS = ("text_config", "llm_config", "language_config", "thinker_config")


class _PhaseTracker(MemTracker):
    """MemTracker that also keeps, per phase we name, the peak total and each category's maximum."""

    def __init__(self, deadline: float | None, max_seconds: float | None) -> None:
        super().__init__()
        self.phase: str | None = None  # None: allocations are tracked but not counted in any peak
        self.phase_peaks: dict[str, int] = {}
        self.peak_total = 0
        self.peak_phase = ""
        self.peak_split: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.max_split: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self._deadline = deadline
        self._max_seconds = max_seconds

    def current(self) -> tuple[dict[str, int], int]:
        split = dict.fromkeys(CATEGORIES, 0)
        total = 0
        for dev_snap in self._curr_mem_snap.values():
            for key, value in dev_snap.items():
                if key == _TOTAL_KEY:
                    total += value
                else:
                    split[_CATEGORY_OF[key]] += value
        return split, total

    def set_phase(self, phase: str | None) -> None:
        self.phase = phase
        self._record()

    def mark_inputs(self, *tensors: torch.Tensor) -> None:
        """Re-file tensors we created as model inputs ("Other") instead of activations."""
        for t in tensors:
            self._update_and_maybe_create_winfos(t, _MemRefType.OTH)

    # MemTracker calls this after every dispatched op, once the op's outputs are tracked and
    # before its temporaries are freed: the same sampling points as MemTracker's own peak. We skip
    # the per-module peak bookkeeping of the base class (unused here, and O(modules) per op).
    def _update_peak_stats(self, peak_state: Any) -> None:
        self._record()

    def _record(self) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise TraceUnsupportedError(
                f"The trace took longer than {self._max_seconds:g} s and was stopped; try a smaller batch or context, "
                "or a smaller model of the same family."
            )
        if self.phase is None:
            return
        split, total = self.current()
        if total > self.phase_peaks.get(self.phase, -1):
            self.phase_peaks[self.phase] = total
        if total > self.peak_total:
            self.peak_total = total
            self.peak_split = split
            self.peak_phase = self.phase
        for name, value in split.items():
            if value > self.max_split[name]:
                self.max_split[name] = value

    # MemTracker registers a gradient hook on every parameter of every module it sees, and
    # `register_hook` raises on parameters that do not require grad (a frozen LoRA base, or any
    # model in inference). Frozen parameters are still counted; they just get no hook.
    def _track_module_params_and_buffers(self, module: nn.Module, install_grad_hooks: bool = True) -> tuple[int, int]:
        def _grad_hook(grad: torch.Tensor) -> None:
            self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

        param_memory = 0
        for param in module.parameters():
            winfos = self._update_and_maybe_create_winfos(param, _MemRefType.PARAM)
            param_memory += sum(winfo.mem_consumed for winfo in winfos)
            if param.grad is not None:
                self._update_and_maybe_create_winfos(param.grad, _MemRefType.GRAD)
            if install_grad_hooks and param.requires_grad and self._param_to_grad_hook_handles.get(param, None) is None:
                self._param_to_grad_hook_handles[param] = (
                    param.register_hook(_grad_hook),
                    param.register_post_accumulate_grad_hook(lambda p: _grad_hook(p.grad)),
                )
        buffer_memory = 0
        for buffer in module.buffers():
            winfos = self._update_and_maybe_create_winfos(buffer, _MemRefType.BUFFER)
            buffer_memory += sum(winfo.mem_consumed for winfo in winfos)
        return param_memory, buffer_memory


# --------------------------------------------------------------------------------------------
# What can be traced
# --------------------------------------------------------------------------------------------


def _check_supported(spec: ModelSpec, w: Workload) -> None:
    if w.runtime == "vllm":
        raise TraceUnsupportedError(
            "The trace runs the transformers code path; vLLM pre-allocates its KV cache from gpu_memory_utilization "
            "instead of growing it. Trace with the transformers runtime, or use the analytic vLLM estimate."
        )
    if w.mode == "qlora" or w.precision in ("int8", "int4", "fp8"):
        raise TraceUnsupportedError(
            f"{'QLoRA' if w.mode == 'qlora' else w.precision} weights run in quantized kernels (bitsandbytes, fp8 GEMMs) "
            "that do not execute on fake tensors, so this workload cannot be traced. Trace the bf16 equivalent "
            "(LoRA or inference at bf16) to check activations, and use the analytic estimate for the weights."
        )
    if spec.quantization is not None and w.precision not in ("fp32", "bf16", "fp16"):  # pragma: no cover - caught above
        raise TraceUnsupportedError("Pre-quantized checkpoints cannot be traced; pick bf16.")
    if w.optimizer == "adamw-8bit" and w.is_training:
        raise TraceUnsupportedError(
            "8-bit AdamW (bitsandbytes) runs CUDA kernels that do not execute on fake tensors; trace with adamw or "
            "adafactor and use the analytic estimate for the 8-bit states (2 bytes per trainable parameter)."
        )
    analytic = {
        "chunked-output": w.loss_impl == "chunked-output",
        "Liger / Unsloth fused linear cross-entropy (Triton, GPU only)": w.loss_impl == "fused-linear-liger",
        "Liger RMSNorm / SwiGLU kernels (Triton, GPU only)": w.norm_kernel != "torch" or w.mlp_kernel != "torch",
        "activation offloading": w.activation_offload,
        "the optimizer step in backward": w.optimizer_in_backward,
        "paged optimizer states": w.paged_optimizer,
        "ZeRO/FSDP CPU offload": w.cpu_offload != "none",
        "checkpointing every k-th layer": w.gradient_checkpointing and w.checkpoint_every > 1,
        "a sample-length distribution": bool(w.sample_lengths),
    }
    skipped = [name for name, used in analytic.items() if used and w.is_training]
    if skipped:
        raise TraceUnsupportedError(
            f"The trace runs transformers' / TRL's code on CPU; {', '.join(skipped)} is sized analytically (calculator/memory.py) and "
            "not traced. Trace the same workload without it (e.g. trainer 'trl-sft' or 'custom') to check the rest."
        )
    if w.loss_impl == "fused-linear" and w.is_training and importlib.util.find_spec("trl") is None:
        raise TraceUnsupportedError("TRL's fused LM-head loss is traced with trl itself: pip install trl==1.16.0 (requirements-dev.txt).")
    if spec.is_encoder_decoder and w.is_training:
        raise TraceUnsupportedError(f"{spec.model_id or spec.model_type}: encoder-decoder training is not traced (inference only); "
                                    "use the analytic estimate.")
    if not spec.is_causal_lm and w.is_training:
        raise TraceUnsupportedError(
            f"{spec.model_id or spec.model_type} is an encoder; its training memory depends on the task head, so only "
            "inference (one forward pass) is traced."
        )


def _hf_config(config: dict[str, Any], notes: list[str]) -> Any:
    """A transformers config object from the raw dict: no remote code, no quantization."""
    from transformers import AutoConfig

    cfg = copy.deepcopy(config)
    removed = cfg.pop("quantization_config", None) is not None
    for key in _NESTED_CONFIG_KEYS:
        if isinstance(cfg.get(key), dict):
            removed |= cfg[key].pop("quantization_config", None) is not None
    if removed:
        notes.append("quantization_config was removed: the trace runs the unquantized architecture in the chosen dtype.")
    cfg.pop("auto_map", None)  # remote-code pointers: never followed
    model_type = cfg.pop("model_type", None)
    try:
        return AutoConfig.for_model(model_type, **cfg)
    except (ValueError, KeyError) as e:
        import transformers

        raise TraceUnsupportedError(
            f"transformers {transformers.__version__} has no built-in model_type {model_type!r}, and the trace never "
            f"runs repository code (trust_remote_code): {e}"
        ) from e


def _model_class(hf_config: Any, spec: ModelSpec, notes: list[str]) -> Any:
    """The class to trace: the one the inventory counts and the profile traces (`inventory.model_class`).

    A composite config with a vision/audio sub-config is the multimodal model even where
    AutoModelForCausalLM maps its type to a text-only class (transformers 5.24): MllamaConfig()
    cut to 2 layers builds MllamaForCausalLM with 1.49e9 parameters and MllamaForConditionalGeneration
    with 2.35e9 (its vision tower; the inventory's count). Qwen3.5, Qwen3.5-MoE, Llama 4 and Emu3 map
    the same way. Tracing the text class left their towers out of the trace and the sweep read the
    estimate as +49% (mllama) and +15% (qwen3_5) off."""
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM

    from ..inventory import model_class as inventory_class

    if spec.is_encoder_decoder:
        return inventory_class(hf_config)[0]  # BartForConditionalGeneration, ...: the class generate() runs
    if not spec.is_causal_lm:
        return AutoModel
    try:
        counted, generates = inventory_class(hf_config)
    except Exception:  # no auto mapping knows the type: said below
        counted, generates = None, False
    causal = AutoModelForCausalLM._model_mapping.get(type(hf_config), None)  # _LazyAutoMapping.get needs the default
    if causal is not None:
        if not generates or counted is causal:
            return AutoModelForCausalLM
        notes.append(f"Traced as transformers.{counted.__name__}, the class the inventory counts (AutoModelForCausalLM builds "
                     f"{causal.__name__}, the text model alone).")
        return counted
    for arch in getattr(hf_config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            notes.append(f"{arch} is not an AutoModelForCausalLM; traced as transformers.{arch}.")
            return cls
    # Default configs name no architectures: the class transformers' auto mappings build for the
    # config (LlavaForConditionalGeneration, Qwen2VLForConditionalGeneration, ...).
    if counted is None or not generates:
        raise TraceUnsupportedError(f"transformers has no causal-LM class for model_type {hf_config.model_type!r}.")
    notes.append(f"{hf_config.model_type} has no AutoModelForCausalLM class; traced as transformers.{counted.__name__}, the class its auto "
                 "mapping builds (text tokens only: no image or audio inputs).")
    return counted


@contextlib.contextmanager
def _transformers_patches() -> Iterator[set[tuple[int, int]]]:
    """Patches that make transformers under fake tensors do what it does on real, unpacked input (and SDPA
    as a GPU runs it: yields the (q/k, v) head sizes `_sdpa` ran as the memory-efficient kernel)."""
    from unittest import mock

    from transformers import masking_utils

    from ._sdpa import gpu_sdpa_kernels

    with (
        mock.patch.object(masking_utils, "find_packed_sequence_indices", lambda position_ids: None),
        mock.patch.object(nn.Module, "_apply", _apply_replacing_fakes),
        mock.patch.object(torch.nn.init, "_no_grad_trunc_normal_", _trunc_normal_on_fakes),
        gpu_sdpa_kernels() as sdpa_substituted,
    ):
        yield sdpa_substituted


_ORIGINAL_APPLY = nn.Module._apply
# One per outermost `_apply` call: id(old parameter) -> (old, new), so tied parameters stay tied (the old one is
# kept alive for the call, so its id cannot be reused by a new object).
_APPLY_MEMO: list[dict[int, tuple[nn.Parameter, nn.Parameter]]] = []


def _apply_replacing_fakes(self: nn.Module, fn: Any, recurse: bool = True) -> nn.Module:
    """`Module._apply` (what `.to()`, `.float()`, `.half()` run) that works on fake parameters.

    torch 2.13 `Module._apply` (torch/nn/modules/module.py) always converts a FakeTensor parameter
    in place with `torch.utils.swap_tensors` (`p_should_use_swap_tensors = ... or isinstance(param,
    FakeTensor)`), and `swap_tensors` refuses a tensor that has a weakref; a fake parameter has one
    (`nn.Parameter(fake)` runs `detach()`, and FakeTensorMode files a detached fake in its converter's
    memo, `MetaConverter.tensor_memo`, a WeakValueDictionary: torch/_subclasses/meta_utils.py), so
    every `.to()` on a fake module raises "_apply(): Couldn't swap <Module>.weight". Models
    call it in `__init__`: DeepSeek-V4 `self.q_a_norm = DeepseekV4RMSNorm(...).to(dtype=torch.float32)`
    (models/deepseek_v4/modeling_deepseek_v4.py, transformers 5.24.0), HY-V4's hyper-connection
    and Inkling's short convolution likewise. Here a module holding fake parameters gets new
    Parameter objects instead (torch's own path for tensors that cannot be swapped or set in
    place, `out_param = Parameter(param_applied, ...)`), shared ones replaced once so that tied
    weights stay tied; real modules keep torch's behaviour."""
    from torch._subclasses.fake_tensor import FakeTensor

    outermost = not _APPLY_MEMO
    if outermost:
        _APPLY_MEMO.append({})
    try:
        if recurse:
            for child in self.children():
                child._apply(fn)
        if not any(isinstance(p, FakeTensor) for p in self._parameters.values() if p is not None):
            return _ORIGINAL_APPLY(self, fn, recurse=False)
        memo = _APPLY_MEMO[0]
        for key, param in self._parameters.items():
            if param is None:
                continue
            if id(param) not in memo:
                with torch.no_grad():
                    new = nn.Parameter(fn(param), requires_grad=param.requires_grad)
                    if param.grad is not None:
                        new.grad = fn(param.grad)
                memo[id(param)] = (param, new)
            self._parameters[key] = memo[id(param)][1]
        for key, buf in self._buffers.items():
            if buf is not None:
                self._buffers[key] = fn(buf)
        return self
    finally:
        if outermost:
            _APPLY_MEMO.clear()


def _trunc_normal_on_fakes(tensor: torch.Tensor, mean: float, std: float, a: float, b: float, generator: Any = None) -> torch.Tensor:
    """`nn.init.trunc_normal_` without its rejection loop. torch 2.13's `_no_grad_trunc_normal_`
    (torch/nn/init.py) redraws until `not mask.any()`, an `.item()` that a fake tensor cannot answer
    (ModernBERT's `_init_weights`, transformers 5.24 modeling_modernbert.py, initializes every
    linear this way). Values never matter under fake tensors; the in-place draw allocates nothing
    that lives on, and the model is built before the tracker runs, so the measured bytes are unchanged."""
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator).clamp_(a, b)


def _module_to_on_fakes(self: nn.Module, *args: Any, **kwargs: Any) -> nn.Module:
    """`Module.to()` for fake CPU modules: a device move is a no-op (everything is on the fake CPU), a
    dtype change re-creates the floating-point parameters. The real `to()` swaps parameters in place
    (`torch.utils.swap_tensors`), which fails on FakeTensors."""
    _device, dtype, _non_blocking, _memory_format = torch._C._nn._parse_to(*args, **kwargs)
    if dtype is not None:
        _recreate_params(self, dtype)
    return self


def _recreate_params(module: nn.Module, dtype: torch.dtype) -> None:
    for owner in module.modules():
        for name, param in list(owner.named_parameters(recurse=False)):
            if param.dtype.is_floating_point and param.dtype != dtype:
                setattr(owner, name, nn.Parameter(torch.empty_like(param, dtype=dtype), requires_grad=param.requires_grad))


# --------------------------------------------------------------------------------------------
# Running the workload
# --------------------------------------------------------------------------------------------


def trace(config: dict[str, Any], w: Workload, *, model_id: str, max_seconds: float | None) -> TraceResult:
    started = time.monotonic()
    spec = model_spec_from_config(model_id or str(config.get("model_type", "")), config)
    _check_supported(spec, w)
    notes: list[str] = []
    compute_dtype = _TORCH_DTYPES[w.precision]
    # fp32 weights under autocast: the full fine-tune's master copy, or a LoRA base loaded in fp32
    # (TRL SFTTrainer's default for a model id: `dtype` float32 unless model_init_kwargs says otherwise).
    master = w.mode in ("full", "lora") and w.master_weights and w.precision != "fp32"
    param_dtype = torch.float32 if master else compute_dtype
    attn = "eager" if w.attention == "eager" else "sdpa"
    if w.attention == "flash":
        notes.append(
            "flash attention traced as SDPA (its CPU kernel is flash-style: no seq x seq matrix, logsumexp saved); "
            "flash-attn's own kernels need CUDA."
        )
    if w.kv_cache_precision is not None and w.kv_cache_precision != w.precision and not w.is_training and spec.is_causal_lm:
        notes.append(f"KV cache traced in {w.precision}: DynamicCache keeps K/V in the compute dtype, not {w.kv_cache_precision}.")
    if w.num_gpus > 1:
        notes.append(f"Traced one unsharded replica; {w.parallelism} over {w.num_gpus} GPUs is not traced.")
    hf_config = _hf_config(config, notes)
    model_cls = _model_class(hf_config, spec, notes)
    deadline = started + max_seconds if max_seconds else None
    tracker = _PhaseTracker(deadline, max_seconds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # FakeTensorMode with a ShapeEnv, and ValueShadow on top of it: data-dependent routing
        # (boolean-mask indexing, nonzero) reads the real values of token ids and masks (routing.py).
        with routing.fake_mode(), routing.ValueShadow() as shadow, _transformers_patches() as sdpa_substituted:
            model = _build(model_cls, hf_config, param_dtype, attn, notes)
            try:
                if w.is_training:
                    model, extra = _run_training(model, spec, w, tracker, compute_dtype, master, notes)
                else:
                    extra = _run_inference(model, spec, w, tracker, notes)
            except (DynamicOutputShapeException, DataDependentOutputException, UnsupportedOperatorException) as e:
                raise TraceUnsupportedError(
                    f"{model_id or spec.model_type}: the model runs an operation whose output shape depends on tensor values "
                    f"({e.func if hasattr(e, 'func') else e}), which fake tensors cannot evaluate; use the analytic estimate."
                ) from e
            if sdpa_substituted:
                from ._sdpa import substitution_note

                notes.append(substitution_note(sdpa_substituted))
            if shadow.balanced_topk_calls:
                notes.append(
                    f"Router top-k choices ({shadow.balanced_topk_calls} calls) were given balanced routing: each expert receives "
                    "tokens x top_k / experts tokens, as the estimate assumes."
                )
            num_params = sum(p.numel() for p in model.parameters())
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return TraceResult(
        model_id=model_id,
        workload=w,
        peak_bytes=tracker.peak_total,
        peak_by_category=tracker.peak_split,
        max_by_category=tracker.max_split,
        phase_peaks=dict(tracker.phase_peaks),
        seconds=time.monotonic() - started,
        notes=tuple(notes),
        resident_by_category=extra["resident"],
        peak_phase=tracker.peak_phase,
        num_params=num_params,
        trainable_params=trainable,
        kv_cache_bytes=extra.get("kv_cache_bytes", 0),
    )


def _build(model_cls: Any, hf_config: Any, dtype: torch.dtype, attn: str, notes: list[str]) -> nn.Module:
    def build(implementation: str) -> nn.Module:
        if model_cls.__name__.startswith("Auto"):
            return model_cls.from_config(hf_config, dtype=dtype, attn_implementation=implementation)
        return model_cls._from_config(hf_config, dtype=dtype, attn_implementation=implementation, **_head_kwargs(model_cls, notes))

    try:
        return build(attn)
    except ValueError as e:
        if attn != "sdpa" or "scaled_dot_product_attention" not in str(e):
            raise TraceUnsupportedError(f"transformers could not build {hf_config.model_type}: {e}") from e
    # gpt-oss (attention sinks) and a few others have no SDPA path in transformers.
    notes.append(
        f"{hf_config.model_type} has no SDPA attention in transformers; traced with eager attention, which materializes "
        "[batch, heads, seq, seq] scores (a GPU run with a flash kernel that supports it would not)."
    )
    return build("eager")


def _head_kwargs(model_cls: Any, notes: list[str]) -> dict[str, Any]:
    """Constructor options that build every head the checkpoint holds. transformers'
    HiggsAudioV2ForConditionalGeneration (5.24) builds its text LM head only with
    `use_text_head=True` and otherwise ignores the checkpoint's `text_lm_head.weight`
    (`_keys_to_ignore_on_load_unexpected`); boson-ai's own engine loads it, and the estimate counts it."""
    import inspect

    try:
        params = inspect.signature(model_cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    if "use_text_head" in params:
        notes.append("Built with use_text_head=True: the checkpoint's text LM head is loaded, as boson-ai's serving engine does "
                     "(transformers' default drops it).")
        return {"use_text_head": True}
    return {}


def _storage_bytes(*tensors: torch.Tensor | None) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        if id(st) not in seen:
            seen.add(id(st))
            total += st.nbytes()
    return total


def _cache_bytes(cache: Any) -> int:
    return _storage_bytes(*[t for layer in cache.layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))])


def module_state_tensors(module: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """Tensors `module` and its children hold as plain attributes (neither parameters nor buffers).

    Some models keep their generation state there rather than in transformers' Cache: RecurrentGemma
    (transformers 5.24, models/recurrent_gemma/modeling_recurrent_gemma.py) sets, per recurrent layer,
    `RecurrentGemmaRecurrentBlock.conv1d_state` (batch x lru_width x (conv1d_width - 1), model dtype;
    at prefill `nn.functional.pad(x_branch, (conv1d_width - seq_len - 1, 0))`, the last positions)
    and `RecurrentGemmaRglru.recurrent_states` (batch x lru_width, fp32: "recurrent_states always
    computed in full precision", `_setup_cache`), while its DynamicCache holds only the attention
    layers' K/V. Like a cache they do not grow with the context."""
    out = []
    for m in module.modules():
        for name, value in vars(m).items():
            if isinstance(value, torch.Tensor) and not name.startswith("_"):
                out.append((m, name, value))
    return out


def module_state_bytes(module: nn.Module, baseline: set[int]) -> int:
    """Bytes of the state tensors (`module_state_tensors`) set since `baseline` (ids taken before the run)."""
    return _storage_bytes(*[t for _, _, t in module_state_tensors(module) if id(t) not in baseline])


def clear_module_state(module: nn.Module, baseline: set[int]) -> None:
    """Drop state tensors set since `baseline`, as a fresh generate() starts without them."""
    for m, name, t in module_state_tensors(module):
        if id(t) not in baseline:
            setattr(m, name, None)


def _per_token_tensors(layer: Any, length: int) -> list[str]:
    """Names of the tensors a cache layer holds, besides K/V, with a dimension of `length` (the
    positions it has cached): state that grows by one position per decode step."""
    return [name for name, value in vars(layer).items()
            if name not in ("keys", "values") and isinstance(value, torch.Tensor) and length in value.shape]


def grow_cache(cache: Any, extra_tokens: int) -> bool:
    """Append `extra_tokens` positions to every attention layer of a transformers cache, as that many
    decode steps would (the values do not matter to a trace), and say whether it could.

    K/V ([batch, heads, positions, head_dim]) grow through the layer's own `update` (a sliding
    layer keeps its window, `DynamicSlidingWindowLayer.update`); the indexer keys of DeepSeek
    sparse attention ([batch, positions, index_head_dim], `DynamicIndexedLayer.update_indexer`,
    cache_utils.py, transformers 5.24.0: DeepSeek-V3.2, GLM-MoE-DSA, HY-V4) through theirs. Grown
    K/V alone would leave those behind, and the next step's mask (built for the K/V length) would
    not match the indexer scores ("Attempting to broadcast a dimension of length 1025"). Any other
    per-token state (`_per_token_tensors`, e.g. Qwen4-exp's `indexer_position_ids`) cannot be grown
    without knowing its layout: then nothing is grown and False is returned, and the caller runs the
    skipped decode steps for real. Recurrent states do not grow. A cache that counts its tokens
    (`seen_tokens`) counts the grown ones."""
    if extra_tokens <= 0:
        return True
    plan = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(keys, torch.Tensor) or keys.numel() == 0 or keys.dim() != 4:
            continue
        others = _per_token_tensors(layer, keys.shape[-2])
        indexer = getattr(layer, "indexer_keys", None)
        grows_indexer = ("indexer_keys" in others and callable(getattr(layer, "update_indexer", None))
                         and indexer.dim() == 3 and indexer.shape[1] == keys.shape[-2])
        if set(others) - ({"indexer_keys"} if grows_indexer else set()):
            return False
        plan.append((layer, keys, values, indexer if grows_indexer else None))
    for layer, keys, values, indexer in plan:
        k = keys.new_zeros(keys.shape[0], keys.shape[1], extra_tokens, keys.shape[3])
        v = values.new_zeros(values.shape[0], values.shape[1], extra_tokens, values.shape[3])
        layer.update(k, v)
        del k, v
        if indexer is not None:
            layer.update_indexer(indexer.new_zeros(indexer.shape[0], extra_tokens, indexer.shape[2]))
    if hasattr(cache, "seen_tokens"):
        cache.seen_tokens += extra_tokens
    return True


def _generate_cache(model: nn.Module, w: Workload, notes: list[str]) -> Any:
    """The cache `generate(cache_implementation=...)` would build (transformers 5.24
    `_prepare_cache_for_generation`): a StaticCache for prompt + new - 1 tokens, or the pure-torch
    fp8 QuantizedCache. quanto and HQQ run kernels that fake tensors cannot execute."""
    from transformers import QuantizedCache, StaticCache

    from ..memory import quantized_kv_nbits, static_cache_len

    if w.cache_implementation == "static":
        length = static_cache_len(w.context_length, w.generated_tokens)
        notes.append(f"StaticCache(max_cache_len={length}) as generate builds it (max_length - 1).")
        return StaticCache(config=model.config, max_cache_len=length)
    if quantized_kv_nbits(w.kv_cache_precision) != "fp8":
        raise TraceUnsupportedError(
            "The quanto / HQQ quantized caches run their own kernels, which do not execute on fake tensors; trace the fp8 "
            "backend (--kv-precision fp8) or a static/dynamic cache, and use the analytic estimate for int4/int8."
        )
    notes.append('QuantizedCache(backend="fp8") as generate builds it for cache_implementation="quantized".')
    return QuantizedCache(backend="fp8", config=model.config)


@functools.cache
def tolerant_cache_class() -> type:
    """transformers' DynamicCache, able to say its length when a sized-down copy kept only
    linear-attention layers (Jamba's first four layers are Mamba, Qwen3-Next's and granite hybrids'
    first ones are linear attention): `Cache.get_seq_length` reads it from the first attention layer
    and raises when there is none (cache_utils.py, transformers 5.24). The full model always has
    one; the copy answers with the tokens it has seen (`seen_tokens`, kept by the caller)."""
    from transformers import DynamicCache

    class _TolerantCache(DynamicCache):
        seen_tokens = 0

        def get_seq_length(self, layer_idx: int = 0) -> int:
            try:
                return super().get_seq_length(layer_idx)
            except ValueError:
                return self.seen_tokens

        def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
            try:
                return super().get_mask_sizes(query_length, layer_idx)
            except ValueError:
                return query_length + self.seen_tokens, 0

    return _TolerantCache


def new_generation_cache(model: nn.Module) -> Any:
    """The cache a dynamic-cache generate() starts with: our DynamicCache, or None for a model whose
    class transformers' own `_supports_default_dynamic_cache()` (generation/utils.py, 5.24) says cannot
    take one (MiniMax: `MiniMaxModel.forward` raises on any cache but `MiniMaxCache` and builds that
    itself when given None). generate() then passes None too, and the model's cache comes back as
    `out.cache`, so the bytes are those of the model's own cache class."""
    supports = getattr(type(model), "_supports_default_dynamic_cache", None)
    if callable(supports) and not supports():
        return None
    return tolerant_cache_class()(config=model.config)


def _run_inference(model: nn.Module, spec: ModelSpec, w: Workload, tracker: _PhaseTracker, notes: list[str]) -> dict[str, Any]:
    """Encoders: one forward. Decoders: what `generate()` does, with the longest decode step measured.

    Prefill runs the prompt (context_length - generated_tokens tokens) with a DynamicCache and
    `logits_to_keep=1`, then takes the next-token logits as an fp32 copy (as generate does).
    Decoding: `generate` feeds back all but the last generated token, so the cache ends at
    context_length - 1 positions. We run decode step 1 for real, grow the cache to its final length
    outside the measured phases (appending K/V as the skipped steps would), and run the last decode
    step for real. "decode" is the larger of the two; every decode step has the same activations,
    only the cache differs.
    """

    model.eval()
    model.requires_grad_(False)
    b = w.batch_size
    vocab = spec.vocab_size
    tracker.track_external(model)
    if spec.is_encoder_decoder:
        # generate() of a seq2seq model: the encoder once, then decoder steps with an
        # EncoderDecoderCache (self- and cross-attention K/V; profile_trace._seq2seq_point, the
        # routine the profile fits at other sizes).
        from .profile_trace import _seq2seq_point

        prompt = w.prompt_tokens if w.generated_tokens else w.context_length
        r = _seq2seq_point(model, tracker, vocab, b, prompt, max(w.generated_tokens, 2))
        notes.append(f"Encoder-decoder generate(): {prompt:,} encoder tokens once, then decoder steps with an EncoderDecoderCache "
                     "(self- and cross-attention K/V); the encoder output stays alive.")
        resident, _ = tracker.current()
        return {"resident": resident, "kv_cache_bytes": sum(r.kv_by_layer.get("decode", ()))}
    with torch.no_grad(), tracker:
        if not spec.is_causal_lm:
            tracker.set_phase("forward")
            ids = torch.randint(0, vocab, (b, w.context_length))
            tracker.mark_inputs(ids)
            out = model(input_ids=ids)
            tracker.set_phase(None)
            resident, _ = tracker.current()
            del out
            return {"resident": resident}
        prompt = w.prompt_tokens if w.generated_tokens else w.context_length
        state_baseline = {id(t) for _, _, t in module_state_tensors(model)}
        tracker.reset_mod_stats()
        tracker.set_phase("prefill")
        inputs = token_inputs(model, spec, w, b, prompt, notes=notes)
        tracker.mark_inputs(*inputs.values())
        cache = _generate_cache(model, w, notes) if w.cache_implementation != "dynamic" else new_generation_cache(model)

        def greedy_step(inputs):
            """One generate() step: forward with the cache and logits_to_keep=1, then the fp32
            copy of the last logits generate() makes, freed once the next token is picked."""
            nonlocal cache
            out = model(**inputs, cache=cache, use_cache=True, logits_to_keep=1)
            if getattr(out, "cache", None) is not None:  # the one passed, or the model's own (`new_generation_cache`)
                cache = out.cache
            if hasattr(cache, "seen_tokens"):
                cache.seen_tokens += next(iter(inputs.values())).shape[1]
            next_logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
            del out
            return next_step_inputs(model, next_logits, b)

        next_ids = greedy_step(inputs)
        kv_bytes = _cache_bytes(cache) + module_state_bytes(model, state_baseline)
        decode_steps = w.generated_tokens - 1  # forward calls after prefill
        if decode_steps >= 1:
            for step in (1, decode_steps) if decode_steps >= 2 else (1,):
                if step == decode_steps and step > 1:
                    if w.cache_implementation == "static":
                        break  # preallocated: the last step holds what step 1 holds
                    tracker.set_phase(None)
                    # Per-token state grow_cache cannot grow: the skipped steps run, outside the measured phases.
                    if not grow_cache(cache, decode_steps - 2):
                        for _ in range(decode_steps - 2):
                            next_ids = greedy_step(next_ids)
                tracker.reset_mod_stats()
                tracker.set_phase("decode")
                next_ids = greedy_step(next_ids)
            kv_bytes = _cache_bytes(cache)
            if decode_steps >= 3:
                notes.append(f"Decode: steps 1 and {decode_steps} traced; the cache was grown to {w.context_length - 1} positions in between.")
        tracker.set_phase(None)
        resident, _ = tracker.current()
        del cache
    return {"resident": resident, "kv_cache_bytes": kv_bytes}


def _lora_targets(spec: ModelSpec, w: Workload) -> str | list[str]:
    if w.lora_targets == "all-linear":
        return "all-linear"
    if w.lora_targets == "qv":
        return ["q_proj", "v_proj"]
    roles = ("attention", "mlp") if w.lora_targets == "attention+mlp" else ("attention",)
    if w.lora_targets == "mlp":
        roles = ("mlp",)
    names = sorted({g.name.split(".")[-1] for g in spec.linears if g.role in roles and g.is_nn_linear})
    return names


def tuple_returning_linears(model: nn.Module) -> list[str]:
    """Full names of nn.Linear subclass modules whose forward returns more than a tensor (PhiMoE's and
    Llama-4's routers return (logits, weights, experts), transformers 5.24). peft's LoRA wrapper adds
    the adapter's output to the base layer's and crashed on them ('tuple' object has no attribute
    'dtype'), so a run that works leaves them out (`exclude_modules`); both harnesses do."""
    return sorted(name for name, m in model.named_modules()
                  if isinstance(m, nn.Linear) and type(m).forward is not nn.Linear.forward and _returns_more_than_a_tensor(m))


def _returns_more_than_a_tensor(module: nn.Module) -> bool:
    """Run the module on one fake token: does its forward return something other than a tensor?"""
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, 1, module.in_features, dtype=module.weight.dtype, device=module.weight.device))
    except Exception:  # a forward that cannot run alone: leave it to peft
        return False
    return not isinstance(out, torch.Tensor)


def tuple_note(excluded: list[str]) -> str:
    return (f"LoRA leaves out {len(excluded)} nn.Linear subclass module(s) whose forward returns a tuple (e.g. {excluded[0]}): "
            "peft's LoRA wrapper cannot add an adapter to them.")


def resolve_lora_targets(model: nn.Module, targets: str | list[str]) -> tuple[str | list[str], tuple[str, ...]]:
    """(what to pass peft as `target_modules`, leaf names left out) so LoRA lands where peft 0.21 lets it.

    peft resolves `"all-linear"` to every `nn.Linear`/`Conv1D` module except the output embedding
    (peft/tuners/tuners_utils.py `_maybe_include_all_linear_layers`), then, module by module,
    refuses LoRA on `out_proj` and `conv1d` of the model types it guards as Mamba-based (same file,
    `_check_lora_target_modules_mamba`: falcon_h1, mamba, mamba2, falcon_mamba, nemotron_h), so
    `get_peft_model(..., target_modules="all-linear")` raises on those models, after it has already
    wrapped the modules before the refused one. This asks peft's own check for every resolved leaf
    name first and returns the full module names it accepts (Mamba: in_proj, x_proj, dt_proj; Falcon-H1
    also attention and MLP), the explicit list a user passes; unguarded models get `targets` back."""
    from peft import LoraConfig
    from peft.tuners import tuners_utils

    check = getattr(tuners_utils, "_check_lora_target_modules_mamba", None)
    if check is None:
        return targets, ()
    probe = LoraConfig(r=1, target_modules=targets)

    def refused(leaf: str) -> bool:
        try:
            check(probe, model, leaf)
        except ValueError:
            return True
        return False

    if isinstance(targets, str):
        if targets.lower() != "all-linear":
            return targets, ()
        resolved = tuners_utils._maybe_include_all_linear_layers(LoraConfig(r=1, target_modules="all-linear"), model).target_modules
        names = sorted(resolved)
    else:
        names = list(targets)
    dropped = sorted({n.rsplit(".", 1)[-1] for n in names if refused(n.rsplit(".", 1)[-1])})
    if not dropped:
        return targets, ()
    return [n for n in names if n.rsplit(".", 1)[-1] not in dropped], tuple(dropped)


def _apply_lora(model: nn.Module, spec: ModelSpec, w: Workload, notes: list[str]) -> nn.Module:
    from peft import IA3Config, LoraConfig, OFTConfig, PromptTuningConfig, VeraConfig, get_peft_model

    if w.peft_method == "oft":
        # peft 0.21 OFTConfig defaults (Cayley-Neumann, 5 terms, no COFT, no block sharing, module_dropout=0) with r=0
        # so that the block size decides the number of blocks.
        lora_config = OFTConfig(task_type="CAUSAL_LM", r=0, oft_block_size=w.oft_block_size, target_modules=_lora_targets(spec, w))
    elif w.peft_method == "vera":
        lora_config = VeraConfig(task_type="CAUSAL_LM", r=w.vera_rank, target_modules=_lora_targets(spec, w))
    elif w.peft_method == "ia3":
        lora_config = IA3Config(task_type="CAUSAL_LM")  # peft's default targets per model type (k, v, down_proj for Llama)
    elif w.peft_method == "prompt-tuning":
        lora_config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=w.num_virtual_tokens)
    else:
        targets, refused = resolve_lora_targets(model, _lora_targets(spec, w))
        excluded = tuple_returning_linears(model)
        if excluded:
            notes.append(tuple_note(excluded))
        if refused:
            notes.append(f"peft {_peft_version()} refuses LoRA on {', '.join(refused)} of {spec.model_type} models; the other "
                         f"{w.lora_targets} modules were adapted ({len(targets)} modules).")
        lora_config = LoraConfig(
            r=w.lora_rank, lora_alpha=2 * w.lora_rank, lora_dropout=0.0, target_modules=targets, bias="none",
            task_type="CAUSAL_LM", use_dora=w.peft_method == "dora", exclude_modules=excluded or None,
        )
    autocast = w.adapter_precision == "fp32"
    from unittest import mock

    try:
        # peft calls Module.to() when it places adapters (device and dtype of the base layer); see
        # `_module_to_on_fakes`. The patch is scoped to adapter creation.
        with mock.patch.object(nn.Module, "to", _module_to_on_fakes):
            peft_model = get_peft_model(model, lora_config, autocast_adapter_dtype=autocast)
    except ValueError as e:
        raise TraceUnsupportedError(f"peft could not place {w.peft_method} adapters ({w.lora_targets}) on this architecture: {e}") from e
    wanted = _TORCH_DTYPES[w.adapter_precision]
    for name, module in peft_model.named_modules():
        if name.endswith(("lora_A", "lora_B", "oft_R", "vera_lambda_b", "vera_lambda_d")):
            _recreate_params(module, wanted)
    if w.peft_method in ("ia3", "prompt-tuning"):
        notes.append(f"peft {w.peft_method} with its default configuration ({w.num_virtual_tokens} virtual tokens)."
                     if w.peft_method == "prompt-tuning" else "peft IA3 with its default target modules.")
        return peft_model
    if w.peft_method in ("oft", "vera"):
        size = f"block size {w.oft_block_size}" if w.peft_method == "oft" else f"r={w.vera_rank}"
        notes.append(f"peft {w.peft_method.upper()} ({size}) on {w.lora_targets} with adapters in {w.adapter_precision}, "
                     "its other settings at peft 0.21's defaults.")
        return peft_model
    notes.append(
        f"{'DoRA' if w.peft_method == 'dora' else 'LoRA'} r={w.lora_rank} on {w.lora_targets} with adapters in {w.adapter_precision}"
        f"{' (peft autocast_adapter_dtype=True)' if autocast else ''}; lora_dropout=0 (peft default)."
    )
    return peft_model


def _peft_version() -> str:
    import peft

    return peft.__version__


def _optimizer(w: Workload, params: list[nn.Parameter], notes: list[str]) -> torch.optim.Optimizer:
    if w.optimizer == "adamw" and w.fused_optimizer:
        notes.append("AdamW(fused=True), as optim='adamw_torch_fused' (HF Trainer / TRL default) builds it: no step temporary.")
        return torch.optim.AdamW(params, lr=1e-5, fused=True)
    if w.optimizer == "adamw":
        notes.append("AdamW with foreach=True (one temporary of the parameter size during the step); fused AdamW needs none.")
        return torch.optim.AdamW(params, lr=1e-5, foreach=True)
    if w.optimizer == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=True)
    if w.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        notes.append("Adafactor as HF Trainer's optim='adafactor' builds it (transformers.optimization.Adafactor, no relative step).")
        return Adafactor(params, lr=1e-5, scale_parameter=False, relative_step=False, warmup_init=False)
    raise TraceUnsupportedError(f"optimizer {w.optimizer} cannot be traced.")  # adamw-8bit: rejected in _check_supported


@contextlib.contextmanager
def _fold_in_place_as_on_cuda() -> Iterator[None]:
    """TRL folds each [tokens x vocab] tile into per-token statistics with a Triton kernel on CUDA
    (in registers, the tile overwritten in place by its gradient in backward); off CUDA it runs a
    torch fallback (`_forward_tile` / `_backward_tile`) that makes several fp32 copies of the tile, and
    `_addmm_fp32` upcasts both GEMM operands off CUDA (on CUDA it accumulates with `out_dtype=float32`).
    The trace sizes a GPU run, so while it runs the fold only touches the tile in place: every other
    tensor TRL's function creates (tile buffer, casts, accumulators, saved inputs) is its own."""
    from unittest import mock

    import trl.kernels.chunked_logprob as kernel

    def forward_fold(tile: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        return None

    def backward_fold(tile: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        tile.mul_(0.5)  # the tile becomes the logits gradient in place

    def addmm_fp32(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
        # `_addmm_fp32` on CUDA (torch >= 2.8): one GEMM accumulating in fp32 into `acc`, no fp32 copies of a and b.
        torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc) if a.dtype != torch.float32 else acc.addmm_(a, b)

    with (
        mock.patch.object(kernel, "_forward_tile", forward_fold),
        mock.patch.object(kernel, "_backward_tile", backward_fold),
        mock.patch.object(kernel, "_addmm_fp32", addmm_fp32),
    ):
        yield


def _selective_op_context() -> Any:
    """torchtitan's op-level selective activation checkpointing policy (torchtitan
    `torchtitan/models/llama3/infra/parallelize.py` at 81c1243, `_save_list` and `_custom_policy`;
    `torchtitan/distributed/activation_checkpoint.py` `_apply_op_sac` keeps it at cfb9326): the outputs
    of the ops in the save list are kept (MUST_SAVE), every other op is recomputed, and of the
    `aten.mm` calls of one checkpointed forward the 2nd, 4th, ... are recomputed too. A fresh counter
    per checkpointed call, as torchtitan's `selective_checkpointing_context_fn` builds one.
    On CPU, SDPA runs `_scaled_dot_product_flash_attention_for_cpu`, which is not in torchtitan's
    (CUDA) list; it is added here as the stand-in for `_scaled_dot_product_flash_attention`."""
    from collections import defaultdict

    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    aten = torch.ops.aten
    save = {aten.mm.default, aten._scaled_dot_product_efficient_attention.default, aten._scaled_dot_product_flash_attention.default,
            aten.max.default, aten._scaled_dot_product_flash_attention_for_cpu.default}
    meta: dict[str, int] = defaultdict(int)

    def policy(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        key = "recompute_mm_count" if ctx.is_recompute else "forward_mm_count"
        if func == aten.mm.default:
            meta[key] += 1
        keep = func in save and not (func == aten.mm.default and meta[key] % 2 == 0)
        return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def _run_training(
    model: nn.Module, spec: ModelSpec, w: Workload, tracker: _PhaseTracker, compute_dtype: torch.dtype, master: bool, notes: list[str]
) -> tuple[nn.Module, dict[str, Any]]:
    """One warm-up step (so optimizer states exist), then one measured step, as a Trainer loop runs it.

    Each step: forward with labels (the model computes the causal-LM loss), keep only the loss
    unless `keep_logits`, backward, `optimizer.step()`, `zero_grad(set_to_none=True)`. The steps run
    in two `with tracker:` blocks because entering re-bases MemTracker's peak.
    """
    model.train()
    if w.gradient_checkpointing and w.checkpoint_policy == "selective-op":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False, "context_fn": _selective_op_context})
        notes.append("Gradient checkpointing: non-reentrant, one checkpoint per decoder layer, with torchtitan's op-level selective "
                     "policy (torch.utils.checkpoint.create_selective_checkpoint_contexts): matmul outputs saved except every "
                     "second, attention outputs saved; SDPA's CPU flash kernel stands in for CUDA's flash kernel in its save list.")
    elif w.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        notes.append("Gradient checkpointing: non-reentrant, one checkpoint per decoder layer (transformers default).")
    fused_head = w.loss_impl == "fused-linear"
    if fused_head:
        # TRL 1.16 SFTTrainer.__init__: `add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))`, the
        # real kernel (trl/kernels/chunked_logprob.py; off CUDA every position is scored, as here).
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        notes.append(
            "Loss: TRL's fused LM head (trl.trainer.utils.add_fused_lm_head, 4096 x 32768 tiles), not the full logits; its per-tile "
            "fold runs in place, as the Triton kernel does on CUDA (the CPU fallback's fp32 tile copies exist only off CUDA)."
        )
    if w.mode == "lora":
        model = _apply_lora(model, spec, w, notes)
        if w.gradient_checkpointing:
            model.enable_input_require_grads()  # as SFTTrainer does for PEFT + gradient checkpointing
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(w, params, notes)
    if master:
        notes.append(f"Master weights: parameters and optimizer states in fp32, forward under torch.autocast({w.precision}).")
    b, seq = w.batch_size, w.context_length
    resident: dict[str, int] = {}
    tracker.track_external(model)

    def step(measured: bool) -> None:
        nonlocal resident
        tracker.reset_mod_stats()
        tracker.set_phase("forward" if measured else None)
        inputs = token_inputs(model, spec, w, b, seq, notes=notes if measured else None)
        labels = training_labels(model, inputs)
        tracker.mark_inputs(*inputs.values(), *labels.values())
        autocast = torch.autocast("cpu", dtype=compute_dtype) if master else contextlib.nullcontext()
        with autocast:
            out = model(**inputs, **labels, use_cache=False, **({"fused_lm_head": True} if fused_head else {}))
        loss = out.loss
        if not w.keep_logits:
            del out
        tracker.set_phase("backward" if measured else None)
        loss.backward()
        del loss
        tracker.set_phase("optimizer" if measured else None)
        optimizer.step()
        tracker.set_phase(None)
        if measured:
            resident, _ = tracker.current()
        optimizer.zero_grad(set_to_none=True)

    with _fold_in_place_as_on_cuda() if fused_head else contextlib.nullcontext():
        with tracker:
            step(measured=False)
        with tracker:
            step(measured=True)
    return model, {"resident": resident}

