"""Peak GPU memory of a workload: the components of `memory`, combined phase by phase.

The peak is not the sum of every component: activations are freed as gradients appear, and the
KV cache is largest after the prefill transients are gone. Each phase below sums what is alive at
once; the estimate is the largest phase, reported with its own breakdown (so the parts add up to
the total on screen).

- Inference (transformers `generate`): prefill = weights + K/V of the prompt + one layer's
  transients over the prompt + last-position logits; decode = weights + K/V of the whole context +
  one token's transients.
- Training: backward start = weights + optimizer states (+ fp32 master) + all saved activations +
  loss buffers; optimizer step = weights + states + gradients + the step's temporaries. Steady
  state (step 2 on), gradients freed by `zero_grad(set_to_none=True)` before the forward, as HF
  Trainer and torchtune do.
- vLLM: weights + profiled activations + CUDA graphs + the K/V blocks the requested sequences
  need, all within `gpu_memory_utilization` of the card (see `serving`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from . import memory, parallelism
from .quantization import WeightFormat, weight_format
from .spec import ModelSpec
from .units import BITS_PER_ELEMENT, MiB
from .workload import Workload

# CUDA context, cuBLAS/cuDNN handles and kernels loaded by a PyTorch process, outside the caching
# allocator (nvidia-smi minus torch.cuda.memory_reserved). With lazy module loading (CUDA >= 11.7,
# PyTorch's default since 1.13) a bare context measured 287 MB (pytorch/pytorch PR #86509; 667 MB
# with eager loading) and "around 400MB" per a PyTorch maintainer (pytorch/pytorch#109888); a real
# model also loads cuBLAS/attention kernels and workspaces as it runs. 500 MiB is an assumption
# inside that range (the validation README reports 0.3-1.5 GiB across older and newer stacks).
CUDA_CONTEXT_BYTES = 500 * MiB
# The caching allocator reserves more than it hands out (block rounding, fragmentation). The
# torchtune QLoRA tutorial logs 13.96 GB allocated vs 13.98 GB reserved after loading (validation
# M035, +0.1%); in training the churn of activations makes it larger. Assumed +2% for inference,
# +5% for training; the validation benchmark reports the residual on reserved-memory rows.
RESERVED_FRACTION_INFERENCE = 0.02
RESERVED_FRACTION_TRAINING = 0.05


EAGER_FALLBACK_NOTE = (
    "transformers has no SDPA attention for this architecture, so 'sdpa' runs eager attention and builds the seq x seq "
    "score matrix per layer; choose 'flash' to size a flash-attention kernel (e.g. attn_implementation='kernels-community/vllm-flash-attn3')."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Breakdown:
    """Peak GPU memory of one GPU, per component, in bytes. The first eight are PyTorch tensors
    (what `torch.cuda.max_memory_allocated` reports); then the allocator's cache (to
    `max_memory_reserved`) and the CUDA context (to what `nvidia-smi` shows)."""

    weights_bytes: int = 0
    kv_cache_bytes: int = 0
    activations_bytes: int = 0
    logits_bytes: int = 0
    gradients_bytes: int = 0
    optimizer_bytes: int = 0
    master_weights_bytes: int = 0
    adapters_bytes: int = 0
    allocator_reserve_bytes: int = 0
    cuda_context_bytes: int = 0

    @property
    def torch_allocated_bytes(self) -> int:
        return (
            self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.logits_bytes
            + self.gradients_bytes + self.optimizer_bytes + self.master_weights_bytes + self.adapters_bytes
        )

    @property
    def torch_reserved_bytes(self) -> int:
        return self.torch_allocated_bytes + self.allocator_reserve_bytes

    @property
    def total_bytes(self) -> int:
        """What the device shows in nvidia-smi for this process."""
        return self.torch_reserved_bytes + self.cuda_context_bytes

    def as_dict(self) -> dict[str, int]:
        """Component name (without `_bytes`) -> bytes, in display order."""
        return {f.name.removesuffix("_bytes"): getattr(self, f.name) for f in fields(self)}


COMPONENT_LABELS: dict[str, str] = {
    "weights": "Weights",
    "kv_cache": "KV cache",
    "activations": "Activations",
    "logits": "Logits & loss",
    "gradients": "Gradients",
    "optimizer": "Optimizer states",
    "master_weights": "FP32 master weights",
    "adapters": "LoRA adapters (+grads, states)",
    "allocator_reserve": "Allocator cache",
    "cuda_context": "CUDA context",
}


VLLM_COMPONENT_LABELS: dict[str, str] = {
    **COMPONENT_LABELS,
    "allocator_reserve": "Left free (1 - gpu_memory_utilization)",
    "cuda_context": "CUDA graphs + context",
}


def component_labels(runtime: str) -> dict[str, str]:
    """Display names of the breakdown's components; vLLM's last two mean something else."""
    return VLLM_COMPONENT_LABELS if runtime == "vllm" else COMPONENT_LABELS


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """The answer for one model and workload: per-GPU breakdown at the peak, and how it was got."""

    spec: ModelSpec
    workload: Workload
    weight_format: WeightFormat
    breakdown: Breakdown
    peak_phase: str
    phases: dict[str, int]
    num_gpus: int
    parallelism: str
    trainable_params: int
    kv_bytes_per_token: int
    notes: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        """Device memory per GPU (nvidia-smi), runtime overhead included."""
        return self.breakdown.total_bytes

    @property
    def torch_allocated_bytes(self) -> int:
        return self.breakdown.torch_allocated_bytes

    @property
    def all_gpus_total_bytes(self) -> int:
        return self.breakdown.total_bytes * self.num_gpus


def _compute_bytes(fmt: WeightFormat) -> int:
    return fmt.compute_bytes


def _kv_bits(workload: Workload, fmt: WeightFormat) -> int:
    return BITS_PER_ELEMENT[workload.kv_cache_precision or fmt.compute_precision]


def _with_overhead(b: Breakdown, *, training: bool) -> Breakdown:
    fraction = RESERVED_FRACTION_TRAINING if training else RESERVED_FRACTION_INFERENCE
    return replace(b, allocator_reserve_bytes=int(b.torch_allocated_bytes * fraction), cuda_context_bytes=CUDA_CONTEXT_BYTES)


def _inference_phases(spec: ModelSpec, w: Workload, fmt: WeightFormat, weights: int) -> dict[str, Breakdown]:
    c = _compute_bytes(fmt)
    kv_bits = _kv_bits(w, fmt)
    b = w.batch_size
    dequant = memory.largest_linear_params(spec) * c if fmt.name in ("bnb-nf4", "bnb-fp4") else 0
    if not spec.layer_types:  # encoder-only: one forward over the whole input
        act = memory.prefill_transient_bytes(spec, batch_size=b, seq_len=w.context_length, compute_bytes=c, attention=w.attention)
        return {"forward": Breakdown(weights_bytes=weights, activations_bytes=act + dequant)}
    if spec.is_encoder_decoder:
        enc_len = w.prompt_tokens
        dec_len = max(w.generated_tokens, 1)
        encode = memory.prefill_transient_bytes(spec, batch_size=b, seq_len=enc_len, compute_bytes=c, attention=w.attention)
        kv = memory.kv_cache_bytes(spec, batch_size=b, seq_len=dec_len, kv_bits=kv_bits, encoder_len=enc_len)
        logits = memory.generation_logits_bytes(spec, batch_size=b, compute_bytes=c)
        return {
            "encode": Breakdown(weights_bytes=weights, activations_bytes=encode + dequant),
            "decode": Breakdown(weights_bytes=weights, kv_cache_bytes=kv, activations_bytes=b * c * 4 * spec.hidden_size, logits_bytes=logits),
        }
    prompt = w.prompt_tokens
    logits = memory.generation_logits_bytes(spec, batch_size=b, compute_bytes=c)
    prefill = Breakdown(
        weights_bytes=weights,
        kv_cache_bytes=memory.kv_cache_bytes(spec, batch_size=b, seq_len=prompt, kv_bits=kv_bits),
        activations_bytes=memory.prefill_transient_bytes(
            spec, batch_size=b, seq_len=prompt, compute_bytes=c, attention=w.attention, audio_token_share=w.audio_token_share
        ) + dequant,
        logits_bytes=logits,
    )
    decode_act = memory.prefill_transient_bytes(spec, batch_size=b, seq_len=1, compute_bytes=c, attention="sdpa")
    if w.attention == "eager":
        decode_act += b * spec.num_attention_heads * w.context_length * memory.eager_score_bytes(spec, c)
    decode = Breakdown(
        weights_bytes=weights,
        kv_cache_bytes=memory.kv_cache_bytes(spec, batch_size=b, seq_len=w.context_length, kv_bits=kv_bits),
        activations_bytes=decode_act + (dequant if w.batch_size > 1 else 0),
        logits_bytes=logits,
    )
    return {"prefill": prefill, "decode": decode}


def _training_phases(spec: ModelSpec, w: Workload, fmt: WeightFormat, weights: int) -> tuple[dict[str, Breakdown], int]:
    c = _compute_bytes(fmt)
    b, s = w.batch_size, w.context_length
    loss = memory.loss_buffer_bytes(spec, batch_size=b, seq_len=s, compute_bytes=c, keep_logits=w.keep_logits)
    if w.mode == "full":
        params = spec.num_params
        state_bytes = 4 if w.master_weights else c
        if w.optimizer == "adafactor":
            factored = memory.adafactor_factored_elements(spec)
            optimizer = memory.optimizer_state_bytes(optimizer="adafactor", trainable_params=params, state_bytes=state_bytes, factored_elements=factored)
        else:
            optimizer = memory.optimizer_state_bytes(optimizer=w.optimizer, trainable_params=params, state_bytes=state_bytes)
        temp = memory.optimizer_step_temp_bytes(
            optimizer=w.optimizer, trainable_params=params, param_bytes=state_bytes, largest_param=memory.largest_linear_params(spec)
        )
        master = 4 * params if w.master_weights else 0
        grads = params * c
        act = memory.training_activation_bytes(
            spec, batch_size=b, seq_len=s, compute_bytes=c, attention=w.attention, adapters=None, gradient_checkpointing=w.gradient_checkpointing
        )
        phases = {
            "backward": Breakdown(weights_bytes=weights, optimizer_bytes=optimizer, master_weights_bytes=master, activations_bytes=act, logits_bytes=loss),
            "optimizer step": Breakdown(weights_bytes=weights, optimizer_bytes=optimizer + temp, master_weights_bytes=master, gradients_bytes=grads),
        }
        if w.gradient_checkpointing:
            # Recomputing the last layer: the LM head's (and tied embedding's) gradient already exists.
            recompute = memory.recompute_activation_bytes(spec, batch_size=b, seq_len=s, compute_bytes=c, attention=w.attention, adapters=None)
            head_grad = spec.vocab_size * spec.hidden_size * c
            phases["layer recompute"] = Breakdown(weights_bytes=weights, optimizer_bytes=optimizer, master_weights_bytes=master,
                                                  activations_bytes=act + recompute, gradients_bytes=head_grad)
        return phases, params
    # LoRA / QLoRA: frozen base, trainable adapters.
    adapter_elem_bytes = 4 if w.adapter_precision == "fp32" else 2
    plan = memory.AdapterPlan(names=memory.lora_target_names(spec, w.lora_targets), rank=w.lora_rank, adapter_bytes=adapter_elem_bytes)
    adapter_params = memory.lora_params(spec, plan)
    states = memory.optimizer_state_bytes(optimizer=w.optimizer, trainable_params=adapter_params, state_bytes=adapter_elem_bytes)
    adapters = adapter_params * adapter_elem_bytes * 2 + states  # weights + grads + optimizer states
    temp = memory.optimizer_step_temp_bytes(optimizer=w.optimizer, trainable_params=adapter_params, param_bytes=adapter_elem_bytes, largest_param=0)
    act = memory.training_activation_bytes(
        spec, batch_size=b, seq_len=s, compute_bytes=c, attention=w.attention, adapters=plan, gradient_checkpointing=w.gradient_checkpointing
    )
    dequant = memory.largest_linear_params(spec) * c if fmt.name in ("bnb-nf4", "bnb-fp4") else 0
    phases = {
        "backward": Breakdown(weights_bytes=weights, adapters_bytes=adapters, activations_bytes=act + dequant, logits_bytes=loss),
        "optimizer step": Breakdown(weights_bytes=weights, adapters_bytes=adapters + temp),
    }
    if w.gradient_checkpointing:
        recompute = memory.recompute_activation_bytes(spec, batch_size=b, seq_len=s, compute_bytes=c, attention=w.attention, adapters=plan)
        phases["layer recompute"] = Breakdown(weights_bytes=weights, adapters_bytes=adapters, activations_bytes=act + recompute + dequant)
    return phases, adapter_params


def _notes(spec: ModelSpec, w: Workload, fmt: WeightFormat, strategy: str) -> tuple[str, ...]:
    notes = list(spec.notes) + list(w.notes)
    if fmt.from_checkpoint:
        notes.append(f"The checkpoint is pre-quantized ({fmt.name}, {fmt.bits}-bit); its stored format is used whatever precision is picked.")
    fused = [g for g in spec.linears if not g.is_nn_linear]
    if fmt.is_quantized and fused and not fmt.quantizes_fused_experts:
        expert_params = sum(g.weight_params for g in fused)
        notes.append(
            f"transformers' bitsandbytes integration converts nn.Linear layers only; this model's experts are fused 3-D "
            f"parameters ({expert_params / 1e9:.1f}B), so they stay in {fmt.compute_precision} and most of the weights are not "
            "quantized. Pre-quantized GPTQ/AWQ/fp8 MoE checkpoints store experts quantized; for vLLM the engine assumes "
            "its FusedMoE bitsandbytes path, which only some MoE models support (vllm-project/vllm#17199)."
        )
    if fmt.name == "mxfp4":
        notes.append(
            "transformers keeps MXFP4 weights packed only with the `kernels` Triton MXFP4 kernels (Hopper or newer); "
            "elsewhere it dequantizes them to bf16 on load, about 3.8x the expert bytes shown here."
        )
    if spec.is_moe:
        notes.append(
            f"Mixture of experts: all {spec.num_experts} experts per MoE layer stay in memory; "
            f"each token uses {spec.num_experts_per_tok} (active ≈ {spec.active_params / 1e9:.1f}B parameters)."
        )
    if any(k == "sliding" for k in spec.layer_types) and spec.sliding_window:
        n = sum(1 for k in spec.layer_types if k == "sliding")
        notes.append(f"{n} of {len(spec.layer_types)} layers use a {spec.sliding_window:,}-token sliding window, so their cache stops growing there.")
    if w.context_length > spec.max_position_embeddings:
        notes.append(
            f"Context {w.context_length:,} exceeds the model's max_position_embeddings ({spec.max_position_embeddings:,}); "
            "quality degrades past it unless the model supports rope scaling."
        )
    if w.is_training and not w.gradient_checkpointing:
        notes.append("Gradient checkpointing is off: activations dominate at long context; turning it on trades ~30% speed for most of them.")
    if w.mode in ("lora", "qlora") and w.adapter_precision == "fp32":
        notes.append("Adapters in fp32 (peft's default autocast_adapter_dtype=True) save an fp32 copy of each adapted layer's input.")
    if strategy not in ("none", "tp"):
        notes.append(f"Batch size is per GPU (micro-batch) under {strategy}; the global batch is {w.batch_size * w.num_gpus}.")
    return tuple(notes)


def estimate(spec: ModelSpec, workload: Workload) -> Estimate:
    """Peak memory per GPU for `workload` on `spec`. Pure and fast (microseconds): the UI calls it
    on every rerun and for every point of its charts."""
    from .serving import vllm_breakdown  # local: serving imports Breakdown from here

    if workload.attention == "sdpa" and not spec.supports_sdpa:
        workload = replace(workload, attention="eager", notes=(*workload.notes, EAGER_FALLBACK_NOTE))
    fmt = weight_format(spec, workload)
    weights = memory.weight_bytes(spec, fmt)
    strategy = parallelism.resolve_parallelism(workload.is_training, workload.parallelism, workload.num_gpus)
    kv_per_token = memory.kv_cache_bytes_per_token(spec, _kv_bits(workload, fmt))
    trainable = 0
    if workload.runtime == "vllm":
        phases = {"serving": vllm_breakdown(spec, workload, fmt, weights)}
    elif workload.is_training:
        phases, trainable = _training_phases(spec, workload, fmt, weights)
    else:
        phases = _inference_phases(spec, workload, fmt, weights)

    def per_gpu(b: Breakdown) -> Breakdown:
        if strategy == "tp":
            return parallelism.shard_inference(b, spec, num_gpus=workload.num_gpus, replicated_weight_bytes=spec.other_params * fmt.compute_bytes)
        if strategy != "none":
            layer_bytes = weights // max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
            return parallelism.shard_training(b, strategy=strategy, num_gpus=workload.num_gpus, layer_param_bytes=layer_bytes)
        return b

    sharded = {name: per_gpu(b) for name, b in phases.items()}
    peak_phase = max(sharded, key=lambda name: sharded[name].torch_allocated_bytes)
    peak = sharded[peak_phase]
    if workload.runtime == "vllm":
        from .serving import vllm_overhead

        peak = vllm_overhead(peak, workload)
    else:
        peak = _with_overhead(peak, training=workload.is_training)
    return Estimate(
        spec=spec,
        workload=workload,
        weight_format=fmt,
        breakdown=peak,
        peak_phase=peak_phase,
        phases={name: b.torch_allocated_bytes for name, b in sharded.items()},
        num_gpus=workload.num_gpus,
        parallelism=strategy,
        trainable_params=trainable,
        kv_bytes_per_token=kv_per_token,
        notes=_notes(spec, workload, fmt, strategy),
    )
