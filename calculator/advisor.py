"""The reverse question: "I have this GPU (1, 2, 4 or 8 of them): what fits?"

Pure functions over the engine. Fit means the same thing as in the ranking
(`pricing.rank_configurations`): the engine's device peak per GPU, times (1 + headroom), is at
most the GPU's usable memory (`GPU.usable_bytes`, the `nvidia-smi` total), and for inference on
several GPUs tensor parallelism can split the heads.

- `max_context_length` / `max_batch_size`: binary search on the engine, which grows
  monotonically with tokens and batch (the engine's property tests check that); exact to one
  token / one sequence.
- `fit_limits`: those two limits for every precision x mode cell of the report's table.
- `suggest_changes`: for a workload that does not fit, every single change that makes it fit,
  the least disruptive first (`CHANGE_ORDER`), or the changes combined when no single one does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .errors import InvalidWorkloadError
from .estimate import estimate
from .pricing import required_per_gpu_bytes, tensor_parallel_problem
from .report import FIT_PRECISIONS, TABLE_MODES, table_workload
from .spec import ModelSpec
from .trainers import lm_head_problem
from .units import BITS_PER_ELEMENT
from .workload import MAX_BATCH_SIZE, MAX_CONTEXT_TOKENS, Workload

GPU_COUNTS: tuple[int, ...] = (1, 2, 4, 8)


def on_gpus(w: Workload, num_gpus: int) -> Workload:
    """`w` spread over `num_gpus` GPUs, as the ranking does it (`report.per_gpu_requirements`):
    the chosen sharding on several GPUs (auto: tensor parallel for inference, FSDP for training),
    none on one."""
    return replace(w, num_gpus=num_gpus, parallelism=w.parallelism if num_gpus > 1 else "auto")


def required_bytes(spec: ModelSpec, w: Workload, *, headroom_fraction: float = 0.0) -> int:
    """Device memory per GPU the workload needs, headroom included (what is compared with usable memory)."""
    return required_per_gpu_bytes(estimate(spec, w).total_bytes, headroom_fraction=headroom_fraction)


def tp_problem(spec: ModelSpec, w: Workload) -> str:
    """Why tensor parallelism cannot split this model over `w.num_gpus` ('' when it can or is not used)."""
    if w.is_training or w.num_gpus <= 1:
        return ""
    return tensor_parallel_problem(w.num_gpus, spec.num_attention_heads, spec.num_key_value_heads)


def fits(spec: ModelSpec, w: Workload, *, usable_bytes: int, headroom_fraction: float = 0.0) -> bool:
    """True when `w` fits on GPUs of `usable_bytes` each (equal fits, as in the ranking)."""
    if tp_problem(spec, w):
        return False
    return required_bytes(spec, w, headroom_fraction=headroom_fraction) <= usable_bytes


def _largest(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """Largest n in [low, high] with ok(n), assuming ok is true up to some point and false after;
    low - 1 when ok(low) is false."""
    if not ok(low):
        return low - 1
    if ok(high):
        return high
    good, bad = low, high  # invariant: ok(good), not ok(bad)
    while bad - good > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def with_context(w: Workload, context_length: int) -> Workload:
    """`w` at another context length, keeping the generated tokens inside it."""
    return replace(w, context_length=context_length, generated_tokens=min(w.generated_tokens, context_length - 1))


def max_context_length(
    spec: ModelSpec, w: Workload, *, usable_bytes: int, headroom_fraction: float = 0.0, upper: int | None = None
) -> int:
    """Longest context (tokens per sequence, at `w`'s batch size) that fits; 0 when not even one
    token does. Searched up to `upper` (default: the model's `max_position_embeddings`, since a
    longer context than the model was trained for is not an answer to "what fits")."""
    top = min(upper or spec.max_position_embeddings, MAX_CONTEXT_TOKENS)
    if tp_problem(spec, w):
        return 0
    return max(_largest(1, max(top, 1), lambda n: fits(spec, with_context(w, n), usable_bytes=usable_bytes, headroom_fraction=headroom_fraction)), 0)


def max_batch_size(spec: ModelSpec, w: Workload, *, usable_bytes: int, headroom_fraction: float = 0.0, upper: int = 4096) -> int:
    """Largest batch (sequences of `w.context_length` tokens, per GPU when sharded) that fits; 0 when
    batch 1 does not. Searched up to `upper` (4,096 by default: past that the answer is "plenty")."""
    top = min(upper, MAX_BATCH_SIZE)
    if tp_problem(spec, w):
        return 0
    return max(_largest(1, top, lambda n: fits(spec, replace(w, batch_size=n), usable_bytes=usable_bytes, headroom_fraction=headroom_fraction)), 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class FitLimits:
    """One precision x mode cell on the user's GPUs."""

    precision: str
    mode: str  # the mode actually sized (LoRA on a quantized base is QLoRA)
    workload: Workload
    required_bytes: int  # per GPU, headroom included, at the chosen context and batch
    fits: bool
    max_context_length: int  # at the chosen batch size; 0 = nothing fits
    max_batch_size: int  # at the chosen context length; 0 = batch 1 does not fit
    context_capped: bool  # max_context_length is the model's maximum (more would fit)


def fit_limits(
    spec: ModelSpec,
    w: Workload,
    *,
    usable_bytes: int,
    num_gpus: int = 1,
    headroom_fraction: float = 0.0,
    precisions: Sequence[str] = FIT_PRECISIONS,
    modes: Sequence[str] = TABLE_MODES,
) -> list[FitLimits]:
    """For each precision x mode that exists (`report.table_workload`), whether the chosen workload
    fits on `num_gpus` GPUs of `usable_bytes`, the longest context and the largest batch that do."""
    out = []
    seen = set()
    for precision in precisions:
        for mode in modes:
            cell = table_workload(w, precision, mode)
            if cell is None:
                continue
            cell = on_gpus(cell, num_gpus)
            if (cell.precision, cell.mode) in seen:
                continue
            seen.add((cell.precision, cell.mode))
            ctx = max_context_length(spec, cell, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction)
            out.append(
                FitLimits(
                    precision=cell.precision,
                    mode=cell.mode,
                    workload=cell,
                    required_bytes=required_bytes(spec, cell, headroom_fraction=headroom_fraction),
                    fits=fits(spec, cell, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction),
                    max_context_length=ctx,
                    max_batch_size=max_batch_size(spec, cell, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction),
                    context_capped=ctx >= spec.max_position_embeddings,
                )
            )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One way to make a workload fit."""

    kind: str  # a key of CHANGE_ORDER, or "combined"
    description: str
    workload: Workload
    required_bytes: int  # per GPU, headroom included
    fits: bool


# Least disruptive first: free memory savings that keep the result identical (checkpointing costs
# ~30% speed, an 8-bit optimizer is near-lossless: Dettmers et al. 2021), then more hardware,
# then a smaller job, then changes to the numerics (precision), then a different method.
# A judgement call, stated so the UI can say why one suggestion comes first.
# The trainer savers (calculator/trainers.py) slot in by cost: a chunked / fused loss changes no
# number and costs almost no speed; loading a LoRA base in bf16 instead of fp32 is what most runs do
# (model_init_kwargs={"dtype": "bfloat16"}); offloading activations costs little on top of
# checkpointing (torchtune's README table: -0.11% tokens/s); the optimizer step in backward rules
# out gradient accumulation; ZeRO-Offload moves the step to the CPU (slow), after more GPUs.
# Paged optimizer states are not a lever: the engine counts them on the GPU, where they stay until
# memory runs out and then page to host RAM at a large speed cost.
CHANGE_ORDER: tuple[str, ...] = (
    "chunked_loss",
    "bf16_base",
    "gradient_checkpointing",
    "activation_offload",
    "optimizer_in_backward",
    "optimizer_8bit",
    "more_gpus",
    "cpu_offload",
    "kv_cache_fp8",
    "shorter_context",
    "smaller_batch",
    "lower_precision",
    "qlora",
    "lora",
)

# Precisions from most to least bytes per weight; "lower" means a later entry.
_LOWER: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")


def _candidates(spec: ModelSpec, w: Workload, *, usable_bytes: int, headroom_fraction: float) -> list[tuple[str, str, Workload]]:
    """Every single change worth trying, in CHANGE_ORDER. Each is a valid workload."""
    out: list[tuple[str, str, Workload]] = []

    def add(kind: str, description: str, make: Callable[[], Workload]) -> None:
        with contextlib.suppress(InvalidWorkloadError):  # a change the engine refuses is not a suggestion
            out.append((kind, description, make()))

    ok = lambda cand: fits(spec, cand, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction)  # noqa: E731
    if w.is_training and w.loss_impl == "full" and spec.is_causal_lm and not lm_head_problem(spec, "trl-sft"):
        add("chunked_loss", "Compute the loss in chunks without the full logits (TRL's fused LM head, loss_type='nll')",
            lambda: replace(w, loss_impl="fused-linear"))
    if w.mode == "lora" and w.master_weights and w.precision != "fp32":
        # Named in the dtype picked and the sized trainer's own option (HF Trainer when TRL cannot start on
        # the model): "Load the model in fp16 ... {'dtype': 'bfloat16'}" contradicted itself.
        dtype = {"fp16": "float16", "bf16": "bfloat16"}.get(w.precision, w.precision)
        trl = w.trainer in ("trl-sft", "unsloth") and not lm_head_problem(spec, w.trainer)
        how = f"model_init_kwargs={{'dtype': '{dtype}'}}" if trl else f"from_pretrained(dtype=torch.{dtype})"
        add("bf16_base", f"Load the model in {w.precision} instead of fp32 ({how})", lambda: replace(w, master_weights=False))
    if w.is_training and not w.gradient_checkpointing:
        add("gradient_checkpointing", "Turn on gradient checkpointing", lambda: replace(w, gradient_checkpointing=True))
    if w.is_training and not w.activation_offload:
        add("activation_offload", "Offload saved activations to CPU RAM (activation_offloading=True)",
            lambda: replace(w, activation_offload=True))
    if w.mode == "full" and not w.optimizer_in_backward:
        add("optimizer_in_backward", "Step the optimizer inside backward (torchtune optimizer_in_bwd; no gradient accumulation)",
            lambda: replace(w, optimizer_in_backward=True))
    if w.mode == "full" and w.optimizer in ("adamw", "adafactor"):
        add("optimizer_8bit", "Use the 8-bit AdamW optimizer (bitsandbytes)", lambda: replace(w, optimizer="adamw-8bit"))
    more = [n for n in GPU_COUNTS if n > w.num_gpus]
    if more:  # the fewest GPUs that fit, else the most (for the combined change)
        n = next((n for n in more if ok(on_gpus(w, n))), more[-1])
        add("more_gpus", f"Use {n} GPUs instead of {w.num_gpus}", lambda: on_gpus(w, n))
    if w.mode == "full" and w.cpu_offload == "none":
        add("cpu_offload", "Offload optimizer states to CPU RAM (DeepSpeed ZeRO-Offload / FSDP CPUOffload)",
            lambda: replace(w, cpu_offload="optimizer"))
    kv_bits = BITS_PER_ELEMENT[w.kv_cache_precision] if w.kv_cache_precision else BITS_PER_ELEMENT.get(w.precision, 16)
    if not w.is_training and kv_bits > 8 and spec.layer_types:
        add("kv_cache_fp8", "Store the KV cache in fp8", lambda: replace(w, kv_cache_precision="fp8"))
    if w.context_length > 1:
        ctx = max_context_length(spec, w, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction, upper=w.context_length - 1)
        if ctx >= 1:
            add("shorter_context", f"Shorten the context to {ctx:,} tokens", lambda: with_context(w, ctx))
    if w.batch_size > 1:
        batch = max_batch_size(spec, w, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction, upper=w.batch_size - 1)
        if batch >= 1:
            add("smaller_batch", f"Reduce the batch size to {batch:,}", lambda: replace(w, batch_size=batch))
    if w.mode in ("inference", "qlora") and w.precision in _LOWER:
        lower = [p for p in _LOWER[_LOWER.index(w.precision) + 1 :] if w.mode == "inference" or p in ("int8", "int4")]
        for p in lower:
            cand = replace(w, precision=p, quant_method="auto")
            if ok(cand):
                add("lower_precision", f"Lower the precision to {p}", lambda cand=cand: cand)
                break
    if w.mode in ("lora", "full"):
        add("qlora", "Fine-tune with QLoRA (4-bit base) instead", lambda: replace(w, mode="qlora", precision="int4", quant_method="auto"))
    if w.mode == "full":
        add("lora", "Fine-tune with LoRA adapters instead of every weight", lambda: replace(w, mode="lora"))
    return out


def suggest_changes(spec: ModelSpec, w: Workload, *, usable_bytes: int, headroom_fraction: float = 0.0) -> list[Change]:
    """Single changes that make `w` fit on GPUs of `usable_bytes` (per GPU, `w.num_gpus` of them),
    least disruptive first; the first is "the smallest change". Empty when `w` already fits.
    When no single change suffices, one "combined" change applies them all in order until it
    fits (or reports the closest it gets, with `fits=False`)."""
    if fits(spec, w, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction):
        return []
    found = []
    for kind, description, cand in _candidates(spec, w, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction):
        req = required_bytes(spec, cand, headroom_fraction=headroom_fraction)
        if fits(spec, cand, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction):
            found.append(Change(kind=kind, description=description, workload=cand, required_bytes=req, fits=True))
    if found:
        return found
    # Nothing alone: stack the method changes that keep the job (not a shorter context or batch).
    combined, steps = w, []
    for kind, description, _ in _candidates(spec, w, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction):
        if kind in ("shorter_context", "smaller_batch"):
            continue
        for k2, d2, cand in _candidates(spec, combined, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction):
            if k2 == kind:
                combined, description = cand, d2
                break
        else:
            continue
        steps.append(description)
        if fits(spec, combined, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction):
            break
    if not steps:
        return []
    ok = fits(spec, combined, usable_bytes=usable_bytes, headroom_fraction=headroom_fraction)
    text = "; ".join(steps) + ("" if ok else " (still does not fit)")
    req = required_bytes(spec, combined, headroom_fraction=headroom_fraction)
    return [Change(kind="combined", description=text, workload=combined, required_bytes=req, fits=ok)]
