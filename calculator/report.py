"""Everything one view needs, built from the engine: the estimate, the GPU ranking, the
precision x mode table, the context sweep, and the JSON contract of the CLI.

Pure functions over the engine's dataclasses; the UI and the CLI only format what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import InvalidWorkloadError
from .estimate import Estimate, component_labels, estimate
from .gpus import compute_capability
from .pricing import GPUConfiguration, PriceBook, cheapest_fit, load_prices, price_book, rank_configurations
from .profile import counted_from
from .serving import ServingCapacity, vllm_capacity
from .spec import ModelSpec
from .throughput import ThroughputEstimate, estimate_configuration
from .workload import Workload

GPU_COUNTS: tuple[int, ...] = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    estimate: Estimate
    per_gpu_bytes: dict[int, int]  # device peak per GPU when split over n GPUs
    ranking: list[GPUConfiguration]
    cheapest: GPUConfiguration | None
    headroom_fraction: float


def provider_price_book(providers: tuple[str, ...]) -> PriceBook:
    """Bundled prices of the named providers only (case-insensitive prefix: "spheron" keeps every
    Spheron host). An unknown name is an error listing the known ones."""
    rows = load_prices()
    wanted = tuple(p.strip().lower() for p in providers if p.strip())
    kept = [r for r in rows if r.provider.lower().startswith(wanted)]
    if not kept:
        known = ", ".join(sorted({r.provider.split(" (")[0] for r in rows}))
        raise InvalidWorkloadError(f"no bundled prices from {', '.join(providers)}; known providers: {known}.")
    return price_book(kept)


def per_gpu_requirements(spec: ModelSpec, workload: Workload, counts: tuple[int, ...] = GPU_COUNTS) -> dict[int, int]:
    """Device peak per GPU for each GPU count (tensor parallel for inference, the chosen sharding
    (FSDP by default) for training)."""
    parallel = workload.parallelism
    out = {}
    for n in counts:
        w = replace(workload, num_gpus=n, parallelism=parallel if n > 1 else "auto")
        out[n] = estimate(spec, w).total_bytes
    return out


def build_plan(
    spec: ModelSpec,
    workload: Workload,
    *,
    headroom_fraction: float = 0.0,
    prices: PriceBook | None = None,
    gpus: tuple[Any, ...] | None = None,
    counts: tuple[int, ...] = GPU_COUNTS,
) -> Plan:
    """The estimate at the chosen GPU count, and every (GPU, count) configuration ranked by price."""
    est = estimate(spec, workload)
    per_gpu = per_gpu_requirements(spec, workload, counts)
    per_gpu[workload.num_gpus] = est.total_bytes
    ranking = rank_configurations(
        per_gpu,
        gpus=gpus,
        prices=prices,
        precision=workload.precision,
        num_attention_heads=spec.num_attention_heads if not workload.is_training else None,
        num_key_value_heads=spec.num_key_value_heads if not workload.is_training else None,
        headroom_fraction=headroom_fraction,
        gpu_counts=tuple(sorted(per_gpu)),
        tensor_parallel=not workload.is_training,
    )
    if workload.runtime == "vllm":
        ranking = _vllm_fits(spec, workload, ranking, headroom_fraction=headroom_fraction)
    return Plan(estimate=est, per_gpu_bytes=per_gpu, ranking=ranking, cheapest=cheapest_fit(ranking), headroom_fraction=headroom_fraction)


def _vllm_fits(
    spec: ModelSpec, workload: Workload, ranking: list[GPUConfiguration], *, headroom_fraction: float = 0.0,
) -> list[GPUConfiguration]:
    """Under vLLM a configuration fits when `vllm serve` starts on it and its KV cache holds
    `batch_size` requests of the context, per that GPU's own budget (`serving.vllm_capacity`:
    vLLM's defaults for the card, NCCL over its link); the card-size estimate above is GPU-agnostic.
    With headroom the estimate's fit must hold too. Re-ranked with the same key (`pricing._rank_key`)."""
    import re

    from .pricing import _rank_key
    from .quantization import weight_format
    from .vllm import capability_problem, vllm_budget

    fmt_name = weight_format(spec, workload).name
    out = []
    for c in ranking:
        if not c.tensor_parallel_ok:
            out.append(c)
            continue
        capability = compute_capability(c.gpu)
        b = vllm_budget(spec, replace(workload, num_gpus=c.count, parallelism="auto"), gpu_usable_bytes=c.gpu.usable_bytes,
                        gpu_name=c.gpu.name, nvlink=c.gpu.nvlink == "yes", datacenter=c.gpu.segment.startswith("datacenter"),
                        compute_capability=capability)
        fits = b.starts and b.max_concurrency >= workload.batch_size and (c.fits or not headroom_fraction)
        if fits:
            # What `vllm serve` takes on this card (nvidia-smi while serving): its gpu_memory_utilization share,
            # plus CUDA graphs and (0.19+) NCCL buffers where they sit outside it. The GPU-agnostic estimate's share would read "104% used"
            # on a card vLLM starts on (Llama-3.1-8B bf16, 8k tokens, 2x RTX 3060 12GB).
            taken = b.requested_bytes + (0 if b.cudagraphs_in_budget else b.cudagraph_bytes) + b.nccl_outside_bytes
            c = replace(c, per_gpu_required_bytes=taken, utilisation=taken / c.gpu.usable_bytes)
        if fits == c.fits:
            # A card too old for the weights' kernels says that first, whatever the memory says.
            too_old = not b.starts and capability_problem(fmt_name, capability, c.gpu.name)
            out.append(replace(c, reason="; ".join(x for x in (too_old, c.reason) if x)) if too_old else c)
            continue
        if fits:  # drop the estimate's "needs X GiB per GPU ... over)." and keep the notes after it
            out.append(replace(c, fits=True, reason=re.sub(r"^needs [^)]*\)\.\s*", "", c.reason)))
            continue
        why = b.reason if not b.starts else f"vLLM's KV cache holds {b.max_concurrency:.2f} requests of the context, fewer than the batch"
        out.append(replace(c, fits=False, reason="; ".join(x for x in (why, c.reason) if x)))
    out.sort(key=_rank_key)
    return out


# The table users know from GPU guide pages: rows are precisions, columns are modes. FP16 and BF16
# store 2 bytes per value and every term of the engine counts them alike, so they share one row,
# computed at the page's 16-bit choice (`table_precisions`); FP32 is plain fp32 weights (no autocast),
# FP8 per-channel fp8 weights (fbgemm-fp8 / torchao float8 weight-only, calculator/quantization.py).
TABLE_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "fp8", "int8", "int4")
# The rows of "What fits on my GPU?" (`advisor.fit_limits`): each cell is a search over context and
# batch, so it keeps the three rows GPU guide pages show.
FIT_PRECISIONS: tuple[str, ...] = ("fp16", "int8", "int4")
TABLE_MODES: tuple[str, ...] = ("inference", "lora", "qlora", "full")
SIXTEEN_BIT: tuple[str, ...] = ("fp16", "bf16")


def table_precisions(selected: str) -> tuple[str, ...]:
    """The table's rows for a view at `selected` precision: the 16-bit row is BF16 when that is the
    selection (same bytes as FP16; the row then is exactly the selection), else FP16."""
    return tuple("bf16" if p == "fp16" and selected == "bf16" else p for p in TABLE_PRECISIONS)


def table_cell_absent(precision: str, mode: str) -> str | None:
    """Why a precision x mode cell has no number of its own, or None when it is computed.

    A cell computes exactly its precision and mode, or says why not: it never shows the number of
    another cell (the 8-bit QLoRA cell once showed the 4-bit NF4 figure)."""
    if mode == "full" and precision not in ("fp32", *SIXTEEN_BIT):
        return "full fine-tuning updates every weight, which needs 16- or 32-bit storage"
    if mode == "qlora" and precision in ("fp32", *SIXTEEN_BIT):
        return "QLoRA trains on a quantized base; on 16- or 32-bit weights it is LoRA"
    if mode == "qlora" and precision in ("int8", "fp8"):
        return "QLoRA's base is 4-bit NF4 (Dettmers et al. 2023); LoRA on an 8-bit base is that row's LoRA cell"
    if mode == "lora" and precision == "int4":
        return "LoRA on a 4-bit base is QLoRA (the INT4 · QLoRA cell)"
    return None


def table_workload(workload: Workload, precision: str, mode: str) -> Workload | None:
    """The workload of one table cell, or None where the combination has no number of its own
    (`table_cell_absent` says why). INT8 · LoRA is LoRA on an LLM.int8 base with peft's k-bit
    preparation (`calculator.estimate`)."""
    if table_cell_absent(precision, mode):
        return None
    try:
        return replace(workload, **_trainer_settings_for_mode(workload, mode), precision=precision, mode=mode, runtime="transformers", parallelism="auto",
                       quant_method="auto" if precision != workload.precision else workload.quant_method,
                       cache_implementation=workload.cache_implementation if mode == "inference" else "dynamic")
    except InvalidWorkloadError:
        return None


def _trainer_settings_for_mode(workload: Workload, mode: str) -> dict[str, Any]:
    """The trainer's settings that differ between the workload's mode and `mode`, for every setting
    still at the trainer's value (a setting the user changed stays). A cell is then the number its own
    view shows: TRL's QLoRA preset keeps no fp32 weights, its LoRA/full presets do, so the FP16 · LoRA
    cell of a QLoRA view read 19.0 GiB where the LoRA view itself said 32.1 GiB (higgs-audio, 4k tokens)."""
    from .trainers import PRESETS, preset_settings

    if workload.trainer not in PRESETS or mode == workload.mode:
        return {}
    here, there = preset_settings(workload.trainer, workload.mode), preset_settings(workload.trainer, mode)
    return {k: v for k, v in there.items() if k != "trainer" and k in here and here[k] != v and getattr(workload, k) == here[k]}


def precision_mode_table(spec: ModelSpec, workload: Workload) -> list[dict[str, Any]]:
    """Device peak per GPU for each precision x mode, with everything else as in `workload`."""
    rows = []
    for precision in table_precisions(workload.precision):
        row: dict[str, Any] = {"precision": precision}
        for mode in TABLE_MODES:
            cell = table_workload(workload, precision, mode)
            row[mode] = estimate(spec, cell).total_bytes if cell is not None else None
        rows.append(row)
    return rows


def context_sweep(spec: ModelSpec, workload: Workload, *, points: int = 24, max_tokens: int | None = None) -> list[tuple[int, int]]:
    """(context length, device peak per GPU) on a log scale from 256 tokens to the model's maximum."""
    top = max(max_tokens or spec.max_position_embeddings, 512)
    low = 256
    ratio = (top / low) ** (1 / max(points - 1, 1))
    lengths = sorted({min(top, round(low * ratio**i)) for i in range(points)} | {workload.context_length})
    out = []
    for n in lengths:
        generated = min(workload.generated_tokens, n - 1)
        try:
            w = replace(workload, context_length=n, generated_tokens=generated)
        except InvalidWorkloadError:
            continue
        out.append((n, estimate(spec, w).total_bytes))
    return out


def throughput_for(plan: Plan, config: GPUConfiguration) -> ThroughputEstimate | None:
    """Decode/prefill speed and $ per 1M output tokens of one configuration (inference only).

    Bytes read per decode step: the weights a token touches (all of them for dense models, the
    active share for MoE) plus the K/V cache at the current context (see `calculator.throughput`).
    """
    est = plan.estimate
    if est.workload.is_training or not est.spec.is_causal_lm:
        return None
    spec = est.spec
    weights = est.breakdown.weights_bytes * est.num_gpus if est.parallelism == "tp" else est.breakdown.weights_bytes
    active_weight_bytes = weights * spec.active_params // max(spec.num_params, 1) if spec.is_moe else weights
    return estimate_configuration(
        config,
        active_weight_bytes=active_weight_bytes,
        kv_bytes_per_token=est.kv_bytes_per_token,
        active_params=spec.active_params,
        context_tokens=est.workload.context_length,
        batch_size=est.workload.batch_size,
        precision=est.workload.precision,
        runtime="vllm" if est.workload.runtime == "vllm" else "transformers",
    )


def serving_for(plan: Plan, config: GPUConfiguration) -> ServingCapacity | None:
    """Under vLLM, what `config` holds: the K/V pool left under gpu_memory_utilization and the
    concurrent sequences (at the chosen context) or context (at the chosen batch) it buys."""
    w = plan.estimate.workload
    if w.runtime != "vllm":
        return None
    return vllm_capacity(
        plan.estimate.spec, replace(w, num_gpus=config.count, parallelism="auto"), gpu_bytes=config.gpu.usable_bytes,
        gpu_name=config.gpu.name, nvlink=config.gpu.nvlink == "yes", datacenter=config.gpu.segment.startswith("datacenter"),
        compute_capability=compute_capability(config.gpu),
    )


def estimate_to_dict(plan: Plan, *, ranking_limit: int = 20) -> dict[str, Any]:
    """The CLI's `--json` contract: model, params, total_bytes, torch_allocated_bytes, breakdown,
    and the GPU ranking (fitting configurations first, cheapest first)."""
    est = plan.estimate
    spec = est.spec
    b = est.breakdown
    w = est.workload
    return {
        "model": spec.model_id,
        "model_type": spec.model_type,
        "params": spec.num_params,
        "params_source": spec.param_source,
        "counted_from": counted_from(spec),
        "active_params": spec.active_params if spec.is_moe else spec.num_params,
        "trainable_params": est.trainable_params,
        "workload": {
            "mode": w.mode, "precision": w.precision, "weight_format": est.weight_format.name, "context_length": w.context_length,
            "generated_tokens": w.generated_tokens, "batch_size": w.batch_size, "num_gpus": w.num_gpus, "parallelism": est.parallelism,
            "runtime": w.runtime, "attention": w.attention, "optimizer": w.optimizer if w.is_training else None,
            "cache_implementation": w.cache_implementation,
            "gradient_checkpointing": w.gradient_checkpointing, "lora_rank": w.lora_rank if w.mode in ("lora", "qlora") else None,
            "audio_token_share": w.audio_token_share if spec.dual_ffn else None,
        },
        # Every input of the estimate, field by field (`Workload(**inputs)` is this workload again): the
        # summary above leaves out what does not apply (vLLM flags, trainer savers, stack), a rerun must not.
        "inputs": workload_inputs(w),
        "total_bytes": b.total_bytes,
        "torch_allocated_bytes": b.torch_allocated_bytes,
        "torch_reserved_bytes": b.torch_reserved_bytes,
        "per_gpu": w.num_gpus > 1,
        "peak_phase": est.peak_phase,
        "breakdown": b.as_dict(),
        "breakdown_labels": component_labels(w.runtime),
        "kv_cache_bytes_per_token": est.kv_bytes_per_token,
        "notes": list(est.notes),
        "host_bytes": est.host_bytes,
        "trainer": _trainer_dict(est) if w.is_training else None,
        "headroom_fraction": plan.headroom_fraction,
        "per_gpu_bytes_by_count": {str(k): v for k, v in sorted(plan.per_gpu_bytes.items())},
        "cheapest_fit": _config_dict(plan, plan.cheapest) if plan.cheapest else None,
        "gpu_ranking": [_config_dict(plan, c) for c in plan.ranking[:ranking_limit]],
        # vLLM: the closest configurations where `vllm serve` does not start, each with its smallest fix.
        "vllm_not_starting": [_config_dict(plan, c) for c in plan.ranking if not c.fits and c.tensor_parallel_ok][:3]
        if w.runtime == "vllm" else [],
    }


def workload_inputs(w: Workload) -> dict[str, Any]:
    """Every field of `w` but its notes, JSON-ready (tuples as lists)."""
    return {f.name: list(v) if isinstance(v := getattr(w, f.name), tuple) else v for f in fields(w) if f.name != "notes"}


def _trainer_dict(est: Any) -> dict[str, Any]:
    """The trainer preset and every memory-saver setting the estimate used (calculator/trainers.py)."""
    w = est.workload
    return {
        "name": w.trainer, "problem": est.trainer_problem or None, "loss": w.loss_impl, "loss_chunks": w.loss_chunks,
        "trained_token_fraction": w.trained_token_fraction, "gradient_checkpointing": w.gradient_checkpointing,
        "checkpoint_every": w.checkpoint_every, "checkpoint_policy": w.checkpoint_policy, "activation_offload": w.activation_offload, "optimizer": w.optimizer,
        "fused_optimizer": w.fused_optimizer, "paged_optimizer": w.paged_optimizer, "optimizer_in_backward": w.optimizer_in_backward,
        "fp32_weights": w.master_weights, "cpu_offload": w.cpu_offload, "peft_method": w.peft_method if w.mode in ("lora", "qlora") else None,
        "adapter_precision": w.adapter_precision if w.mode in ("lora", "qlora") else None, "lora_targets": w.lora_targets,
        "oft_block_size": w.oft_block_size if w.mode in ("lora", "qlora") and w.peft_method == "oft" else None,
        "vera_rank": w.vera_rank if w.mode in ("lora", "qlora") and w.peft_method == "vera" else None,
        "packing": w.packing, "norm_kernel": w.norm_kernel, "mlp_kernel": w.mlp_kernel,
    }


def _config_dict(plan: Plan, c: GPUConfiguration) -> dict[str, Any]:
    speed = throughput_for(plan, c) if c.fits else None
    serving = serving_for(plan, c)
    return {
        "vllm_kv_pool_bytes": serving.kv_pool_bytes if serving else None,
        "vllm_max_concurrent_sequences": serving.max_concurrent_sequences if serving else None,
        "vllm_max_context_at_batch": serving.max_context_at_batch if serving else None,
        **_vllm_start_dict(serving),
        "sglang": _sglang_dict(plan, c) if serving is not None else None,
        "decode_tokens_per_s_per_sequence": round(speed.decode.per_sequence_tokens_per_s, 1) if speed else None,
        "decode_tokens_per_s_total": round(speed.decode.aggregate_tokens_per_s, 1) if speed else None,
        "prefill_tokens_per_s": round(speed.prefill_tokens_per_s) if speed and speed.prefill_tokens_per_s else None,
        "usd_per_million_output_tokens": round(speed.usd_per_million_output_tokens, 3) if speed and speed.usd_per_million_output_tokens else None,
        "throughput_assumptions": speed.assumptions if speed else None,
        "gpu": c.gpu.name, "gpu_id": c.gpu.id, "count": c.count, "fits": c.fits, "reason": c.reason,
        "per_gpu_required_bytes": c.per_gpu_required_bytes, "usable_bytes_per_gpu": c.gpu.usable_bytes,
        "utilisation": round(c.utilisation, 4), "precision_ok": c.precision_ok, "precision_note": c.precision_note,
        "provider": c.cheapest_provider, "usd_per_gpu_hour": c.usd_per_gpu_hour, "total_usd_per_hour": c.total_usd_per_hour,
        "price_range": list(c.price_range) if c.price_range else None, "providers": c.providers_count, "price_as_of": c.price_as_of,
    }


def _vllm_start_dict(serving: ServingCapacity | None) -> dict[str, Any]:
    """"Will it start" for one configuration: the answer, the KV tokens and concurrency it gets,
    the command line, and (when it does not start) the smallest flag change, as a command."""
    if serving is None:
        return {"vllm_starts": None}
    b = serving.budget
    fix = serving.fix
    return {
        "vllm_starts": serving.starts,
        "vllm_reason": serving.reason or None,
        "vllm_kv_tokens": serving.kv_tokens,
        "vllm_max_concurrency": round(serving.max_concurrency, 2),
        "vllm_command": serving.command,
        "vllm_terms_bytes": {
            "requested": b.requested_bytes, "weights": b.weights_bytes, "activation_peak": b.activation_peak_bytes,
            "non_torch": b.non_torch_bytes, "nccl_outside_budget": b.nccl_outside_bytes,
            "cudagraphs": b.cudagraph_bytes, "cudagraphs_in_budget": b.cudagraphs_in_budget,
            "available_kv": b.available_kv_bytes,
        } if b else None,
        "vllm_fix": {
            "kind": fix.kind, "description": fix.description, "command": fix.command,
            "kv_tokens": fix.kv_tokens, "max_concurrency": round(fix.max_concurrency, 2),
        } if fix else None,
    }


def _sglang_dict(plan: Plan, c: GPUConfiguration) -> dict[str, Any]:
    """SGLang's answer for the same configuration (`calculator.sglang`, SGLang 0.5.23 defaults)."""
    from .sglang import SGLANG_VERSION, sglang_budget

    w = replace(plan.estimate.workload, num_gpus=c.count, parallelism="auto")
    b = sglang_budget(plan.estimate.spec, w, gpu_usable_bytes=c.gpu.usable_bytes, nvlink=c.gpu.nvlink == "yes",
                      datacenter=c.gpu.segment.startswith("datacenter"))
    return {
        "version": SGLANG_VERSION, "starts": b.starts, "reason": b.reason or None,
        "mem_fraction_static": b.mem_fraction_static, "chunked_prefill_size": b.chunked_prefill_size,
        "cuda_graph_max_bs_decode": b.decode_max_bs, "kv_pool_bytes": b.kv_pool_bytes,
        "max_total_num_tokens": b.max_total_num_tokens, "max_concurrency": round(b.max_concurrency, 2),
        "activation_headroom_ok": b.headroom_ok, "command": b.command,
    }
