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

from . import allocator, memory, parallelism, speech, trainers
from .errors import InvalidWorkloadError
from .quantization import WeightFormat, weight_format
from .spec import ModelSpec
from .stacks import STACKS
from .units import BITS_PER_ELEMENT, MiB, format_bytes
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
# M035, +0.1%), and its e2e tutorial 6.21 GiB vs 6.27 GiB (M040, +1.0%); in training the churn of
# activations makes it larger. Assumed +2% for inference, +5% for training at fixed shapes (an
# assumption, not a measurement: the allocator model in calculator/allocator.py replays a
# fixed-shape step at well under 1%, so the 5% stands for what it does not model: cuBLAS/cuDNN
# workspaces, the optimizer's foreach chunks, stream-ordered frees). With a length distribution
# the replayed excess over the fixed-shape replay is added (`_variable_length_reserve`).
RESERVED_FRACTION_INFERENCE = 0.02
RESERVED_FRACTION_TRAINING = 0.05
# Steps of the length distribution replayed before the peak step (the batch with the longest
# sequences). Reserved memory only grows, so a long run reaches its reserve after many mixed
# steps; the peak step is replayed last, after the others, as it meets them in a long run. With 16
# the figure is within 0.1 GiB of 64 steps' for every distribution of
# benchmarks/results/allocator_reserve.txt (8 steps were 5 GiB off on one), at ~2x the time of 8.
VARIABLE_LENGTH_STEPS = 16
# The least card the steps fit is searched to 1/16 of its range (the allocated peak to the peak of
# partly used segments): 6 replays; the benchmark's `capped` column is the same search at 2 MiB.
REPLAY_HALVINGS = 4


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
    speech_codec_bytes: int = 0  # a TTS model's audio codec, loaded next to it for inference (calculator/speech.py)
    allocator_reserve_bytes: int = 0
    cuda_context_bytes: int = 0

    @property
    def torch_allocated_bytes(self) -> int:
        return (
            self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.logits_bytes
            + self.gradients_bytes + self.optimizer_bytes + self.master_weights_bytes + self.adapters_bytes
            + self.speech_codec_bytes
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
    "speech_codec": "Audio codec (TTS)",
    "allocator_reserve": "Allocator cache",
    "cuda_context": "CUDA context",
}


VLLM_COMPONENT_LABELS: dict[str, str] = {
    **COMPONENT_LABELS,
    "allocator_reserve": "Left free (1 - gpu_memory_utilization)",
    "cuda_context": "Non-torch, CUDA graphs, context",
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
    host_bytes: int = 0  # host RAM the run needs beyond the process itself: offloaded activations / states / parameters
    trainer_problem: str = ""  # why the chosen trainer cannot run this model ('' when it can)

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


def _fp32_weights(w: Workload, fmt: WeightFormat) -> bool:
    """fp32 weights trained under a 16-bit autocast (master weights of an unquantized model)."""
    return w.master_weights and w.precision != "fp32" and not fmt.is_quantized


def _residual_bytes(w: Workload, fmt: WeightFormat) -> int:
    """Bytes per element of a training step's residual stream (and head weight): fp32 weights under
    autocast keep it fp32, else the compute dtype."""
    return 4 if _fp32_weights(w, fmt) else fmt.compute_bytes


def _kv_bits(workload: Workload, fmt: WeightFormat) -> int:
    return BITS_PER_ELEMENT[workload.kv_cache_precision or fmt.compute_precision]


def _with_overhead(b: Breakdown, *, training: bool, context_bytes: int = CUDA_CONTEXT_BYTES, variable_reserve: int = 0) -> Breakdown:
    fraction = RESERVED_FRACTION_TRAINING if training else RESERVED_FRACTION_INFERENCE
    return replace(b, allocator_reserve_bytes=int(b.torch_allocated_bytes * fraction) + variable_reserve, cuda_context_bytes=context_bytes)


def _inference_phases(spec: ModelSpec, w: Workload, fmt: WeightFormat, weights: int) -> dict[str, Breakdown]:
    check_cache_implementation(spec, w)
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
    if w.cache_implementation != "dynamic":
        return _generate_cache_phases(spec, w, c, kv_bits, weights, dequant)
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
    # The last step runs on prompt + new - 1 cached positions.
    decode_act += memory.mla_decode_expansion_bytes(spec, batch_size=b, keys=max(w.context_length - 1, 1), compute_bytes=c)
    decode = Breakdown(
        weights_bytes=weights,
        kv_cache_bytes=memory.kv_cache_bytes(spec, batch_size=b, seq_len=w.context_length, kv_bits=kv_bits),
        activations_bytes=decode_act + (dequant if w.batch_size > 1 else 0),
        logits_bytes=logits,
    )
    return {"prefill": prefill, "decode": decode}


def _generate_cache_phases(spec: ModelSpec, w: Workload, c: int, kv_bits: int, weights: int, dequant: int) -> dict[str, Breakdown]:
    """Prefill and decode of `generate` with a static or quantized cache (decoder-only models).

    Static (`memory.static_*`): every layer allocates its whole buffer at its first update, so the
    prefill already holds the cache for prompt + new - 1 tokens. Quantized (`memory.quantized_*`):
    the cache is quantized as it fills; the layer being computed holds its K/V in the compute dtype
    (prefill) or its dequantized copies (decode)."""
    b, prompt = w.batch_size, w.prompt_tokens
    logits = memory.generation_logits_bytes(spec, batch_size=b, compute_bytes=c)
    prefill_act = memory.prefill_transient_bytes(spec, batch_size=b, seq_len=prompt, compute_bytes=c, attention=w.attention,
                                                 audio_token_share=w.audio_token_share) + dequant
    decode_act = memory.prefill_transient_bytes(spec, batch_size=b, seq_len=1, compute_bytes=c, attention="sdpa") + (dequant if b > 1 else 0)
    if w.cache_implementation == "static":
        length = memory.static_cache_len(w.context_length, w.generated_tokens)
        prefill_kv = decode_kv = memory.kv_cache_bytes(spec, batch_size=b, seq_len=length, kv_bits=kv_bits)
        prefill_act += memory.static_prefill_extra_bytes(spec, batch_size=b, prompt_len=prompt, cache_len=length, compute_bytes=c,
                                                         attention=w.attention)
        decode_act += memory.static_decode_mask_bytes(batch_size=b, cache_len=length)
        decode_keys = length
    else:
        kv = {"kv_cache_precision": w.kv_cache_precision, "compute_bytes": c}
        prefill_kv = memory.quantized_cache_bytes(spec, batch_size=b, seq_len=prompt, generated_tokens=0, **kv)
        prefill_act += memory.quantized_cache_prefill_transient_bytes(spec, batch_size=b, prompt_len=prompt, **kv)
        decode_kv = memory.quantized_cache_bytes(spec, batch_size=b, seq_len=w.context_length, generated_tokens=w.generated_tokens, **kv)
        decode_act += memory.quantized_cache_decode_transient_bytes(spec, batch_size=b, seq_len=w.context_length, **kv)
        decode_keys = w.context_length
    if w.attention == "eager":
        decode_act += b * spec.num_attention_heads * decode_keys * memory.eager_score_bytes(spec, c)
    decode_act += memory.mla_decode_expansion_bytes(spec, batch_size=b, keys=decode_keys, compute_bytes=c)
    phases = {"prefill": Breakdown(weights_bytes=weights, kv_cache_bytes=prefill_kv, activations_bytes=prefill_act, logits_bytes=logits)}
    if w.generated_tokens:
        phases["decode"] = Breakdown(weights_bytes=weights, kv_cache_bytes=decode_kv, activations_bytes=decode_act, logits_bytes=logits)
    return phases


def check_cache_implementation(spec: ModelSpec, w: Workload) -> None:
    """Refuse a cache transformers would refuse for this model (`QuantizedCache.__init__`,
    `_prepare_cache_for_generation`, transformers 5.24)."""
    if w.cache_implementation != "quantized":
        return
    if spec.is_encoder_decoder or not spec.layer_types:
        raise InvalidWorkloadError(f"{spec.model_id or spec.model_type}: transformers' quantized cache is for decoder-only generate; use dynamic.")
    other = sorted(set(spec.layer_types) - memory.QUANTIZED_CACHE_LAYER_KINDS)
    if other:
        raise InvalidWorkloadError(
            f"{spec.model_id or spec.model_type} has {', '.join(other)} attention layers; transformers' QuantizedCache supports "
            "only models whose layers are all full attention. Use dynamic or static."
        )


def _cache_notes(spec: ModelSpec, w: Workload, c: int, kv_bits: int) -> list[str]:
    if w.is_training or not spec.layer_types or spec.is_encoder_decoder or w.cache_implementation == "dynamic":
        return []
    if w.cache_implementation == "static":
        length = memory.static_cache_len(w.context_length, w.generated_tokens)
        mask = memory.gpt_fast_causal_mask_bytes(length)
        return [
            f"Static cache: generate preallocates {length:,} tokens (prompt + new - 1) in every layer at the first forward, so the "
            "prefill already holds the whole cache. transformers builds no cache x cache mask; a gpt-fast/torchao-style script "
            f"(torch.tril(torch.ones(L, L, dtype=bool))) adds {format_bytes(mask, 'GiB', 2)} at this length."
        ]
    nbits = memory.quantized_kv_nbits(w.kv_cache_precision)
    what = "fp8 backend (one byte per value)" if nbits == "fp8" else (
        f"{nbits}-bit group-wise ({'HQQ' if nbits == 8 else 'quanto or HQQ'}, groups of {memory.QUANTIZED_CACHE_GROUP_SIZE}, "
        f"residual window of {memory.QUANTIZED_CACHE_RESIDUAL_LENGTH} tokens in {w.precision})")
    bf16 = memory.kv_cache_bytes(spec, batch_size=w.batch_size, seq_len=w.context_length, kv_bits=8 * c)
    return [
        f"Quantized cache, {what}: each decoding step dequantizes the layer being computed. If this process held a "
        f"{w.precision} cache before (an earlier generate, or a cache quantized after it was filled), PyTorch's caching "
        f"allocator keeps those blocks reserved ({format_bytes(bf16, 'GiB', 2)} here) until torch.cuda.empty_cache()."
    ]


def _training_shape(w: Workload) -> tuple[int, int]:
    """(batch, sequence length) of the largest step. Without a length distribution every sequence
    is `context_length` long. With one (`sample_lengths`, each truncated to the context):
    padded batches pad to the longest sequence of the batch (the peak step holds the longest one:
    DataCollatorWithPadding / TRL's collator pad to the batch maximum, not the mean); packing fills
    every row to the context; padding-free concatenates the batch's sequences into one row, so the
    peak step is the one with the `batch` longest sequences."""
    b, s = w.batch_size, w.context_length
    lengths = sorted((min(n, s) for n in w.sample_lengths), reverse=True)
    if not lengths or w.packing == "packed":
        return b, s
    if w.packing == "padded":
        return b, lengths[0]
    longest = lengths[:b]
    return b, max(1, -(-sum(longest) // b))


def _step_shapes(w: Workload) -> tuple[tuple[int, int], ...]:
    """(batch, sequence length) of the training steps replayed through the allocator: batches of
    `batch_size` sequences drawn from `sample_lengths` (a fixed seed, so the answer is repeatable),
    padded to their longest (padded) or concatenated into one row (padding-free), then the peak
    step (`_training_shape`). Packed rows, or no distribution, are one shape."""
    import random

    peak = _training_shape(w)
    if not w.sample_lengths or w.packing == "packed":
        return (peak,)
    lengths = sorted(min(n, w.context_length) for n in w.sample_lengths)  # the order given does not matter
    rng = random.Random(13)
    shapes = []
    for _ in range(VARIABLE_LENGTH_STEPS):
        batch = [rng.choice(lengths) for _ in range(w.batch_size)]
        shapes.append((w.batch_size, max(batch)) if w.packing == "padded" else (1, sum(batch)))
    return (*shapes, peak)


def _replayed_step(spec: ModelSpec, w: Workload, *, b: int, s: int, c: int, layers: int, loss: int,
                   plan: memory.AdapterPlan | None, input_bytes: int) -> allocator.StepTensors:
    """One training step's tensors at (b, s) for the allocator replay: a layer's saved set split
    into tensors of the MLP's and the hidden width (`allocator.split_per_token`), its backward
    gradient buffers likewise, the loss buffers, and (full fine-tuning) each layer's weight
    gradients. Sizes are the estimate's own terms; which tensor is which does not matter to the
    allocator, only their sizes and order."""
    tokens = b * s
    h = spec.hidden_size
    inter = spec.moe_intermediate_size * max(spec.num_experts_per_tok, 1) if spec.is_moe else spec.intermediate_size
    # The MLP-wide tensors (up to three: gate, up, act) and one tensor with the rest: the wide ones
    # decide which cached blocks fit, and one tensor per width keeps the replay fast.
    widths = [(inter * c, 3)]
    per_token = memory.layer_saved_bytes_per_token(spec, compute_bytes=c, seq_len=s, attention=w.attention, adapters=plan)
    layer_set = tuple(tokens * x for x in allocator.split_per_token(per_token, widths))
    back = memory.layer_backward_transient_bytes(spec, tokens=1, compute_bytes=c, residual_bytes=input_bytes)
    back_set = tuple(tokens * x for x in allocator.split_per_token(back, widths))
    grads: tuple[int, ...] = ()
    if plan is None:
        all_layers = max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
        grads = tuple(g.in_features * g.out_features * c for g in spec.linears if g.role != "head"
                      for _ in range(max(g.count // all_layers, 1)))
    chunks = w.loss_chunks if w.loss_impl == "chunked-output" else 1
    head = (loss // chunks,) * chunks if loss else ()
    if w.gradient_checkpointing:
        return allocator.StepTensors(layers=layers, saved=(tokens * h * input_bytes,), head=head, recompute=layer_set,
                                     backward_temp=back_set, grads=grads)
    return allocator.StepTensors(layers=layers, saved=layer_set, head=head, backward_temp=back_set, grads=grads)


def _variable_length_reserve(spec: ModelSpec, w: Workload, *, c: int, plan: memory.AdapterPlan | None, input_bytes: int,
                             head_weight_bytes: int) -> tuple[int, int]:
    """(needed, cached): bytes the caching allocator holds beyond the fixed-shape reserve when
    batches change shape, from the replay of `_step_shapes` against a replay at the peak shape
    (the fixed-shape state repeats from the second step on, so two steps stand for it).

    `needed` is the growth of the least device memory the steps run in (`smallest_capacity`: on
    a failed cudaMalloc the allocator frees every wholly free cached segment and retries,
    `release_cached_blocks`), rounded up to 1/2^REPLAY_HALVINGS of the range it is searched in.
    `cached` is the growth of `max_memory_reserved` on a card with room to spare, where nothing
    is ever released. Both 0 without a length distribution."""
    shapes = _step_shapes(w)
    if len(set(shapes)) == 1:
        return 0, 0
    layers = max(spec.num_hidden_layers + spec.num_encoder_layers, 1)

    def step(b: int, s: int) -> allocator.StepTensors:
        loss = _loss_bytes(spec, w, tokens=b * s, c=c, hidden_bytes=input_bytes, head_weight_bytes=head_weight_bytes)
        return _replayed_step(spec, w, b=b, s=s, c=c, layers=layers, loss=loss, plan=plan, input_bytes=input_bytes)

    varied_steps = tuple(step(b, s) for b, s in shapes)
    varied = allocator.replay_steps(varied_steps)
    fixed = allocator.replay_steps((varied_steps[-1],) * 2)  # the peak shape's step (shapes end with it)
    capacity = allocator.capacity_for_steps(varied_steps, max_halvings=REPLAY_HALVINGS)
    needed = (capacity - varied.peak_allocated_bytes) - (fixed.peak_in_use_bytes - fixed.peak_allocated_bytes)
    cached = varied.reserve_bytes - fixed.reserve_bytes
    return max(needed, 0), max(cached, 0)


def _training_reserve(spec: ModelSpec, w: Workload, fmt: WeightFormat) -> tuple[int, int]:
    """`_variable_length_reserve` with the step's dtypes and adapters as `_training_phases` sizes them."""
    if not w.sample_lengths or w.packing == "packed":
        return 0, 0
    c = _compute_bytes(fmt)
    input_bytes = _residual_bytes(w, fmt)
    fp32_weights = _fp32_weights(w, fmt)
    plan = None
    if w.mode in ("lora", "qlora"):
        names = memory.lora_target_names(spec, w.lora_targets) if w.peft_method in ("lora", "dora") else frozenset()
        plan = memory.AdapterPlan(names=names, rank=w.lora_rank, adapter_bytes=4 if w.adapter_precision == "fp32" else 2,
                                  input_copy_bytes=c if fp32_weights else 0)
    return _variable_length_reserve(spec, w, c=c, plan=plan, input_bytes=input_bytes, head_weight_bytes=input_bytes)


def _allocator_note(w: Workload, peak: Breakdown, variable: int, cached: int) -> str:
    lengths = sorted(min(n, w.context_length) for n in w.sample_lengths)
    share = peak.allocator_reserve_bytes / max(peak.torch_allocated_bytes, 1)
    batches = "padded to their longest sequence" if w.packing == "padded" else "concatenated padding-free"
    return (f"Allocator cache: batches of {lengths[0]:,}-{lengths[-1]:,} tokens ({batches}) change shape every step, and PyTorch's "
            f"caching allocator carves each shape out of the segments earlier shapes left. Replaying {VARIABLE_LENGTH_STEPS} such steps "
            f"and then the longest one through a model of the allocator (calculator/allocator.py), on a card just large enough "
            f"(cached free segments released when a cudaMalloc fails), needs {format_bytes(variable, 'GiB', 2)} more than one "
            "fixed shape does, so the allocator cache is "
            f"{format_bytes(peak.allocator_reserve_bytes, 'GiB', 2)} ({share:.1%} of allocated; 5% at fixed shapes). On a card with room "
            f"to spare nothing is given back without torch.cuda.empty_cache(), and max_memory_reserved climbs "
            f"{format_bytes(cached, 'GiB', 2)} above the fixed-shape figure instead; a fuller card frees those cached segments when a "
            "cudaMalloc fails. Packed rows keep one shape; PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True is PyTorch's remedy for "
            "the slivers (not modelled here).")


def _loss_bytes(spec: ModelSpec, w: Workload, *, tokens: int, c: int, hidden_bytes: int, head_weight_bytes: int) -> int:
    """The loss term the trainer's loss implementation leaves alive (see `memory`)."""
    head_trainable = w.mode == "full"
    trained = memory.trained_tokens(tokens, w.trained_token_fraction)
    if w.loss_impl == "chunked-output":
        return memory.chunked_output_loss_bytes(spec, tokens=tokens, compute_bytes=c, chunks=w.loss_chunks, compiled=w.compile_loss)
    if w.loss_impl == "fused-linear":
        return memory.fused_lm_head_loss_bytes(spec, tokens=tokens, trained=trained, compute_bytes=c, hidden_bytes=hidden_bytes,
                                               head_weight_bytes=head_weight_bytes, head_trainable=head_trainable)
    if w.loss_impl == "fused-linear-liger":
        return memory.liger_fused_linear_ce_bytes(spec, trained=trained, compute_bytes=c, head_weight_bytes=head_weight_bytes, head_trainable=head_trainable)
    return memory.loss_buffer_bytes(spec, batch_size=1, seq_len=tokens, compute_bytes=c, keep_logits=w.keep_logits)


def _first_layer_input_grad(w: Workload) -> bool:
    """Whether the first decoder layer's input requires grad. With a frozen embedding (PEFT) only
    `enable_input_require_grads` makes it so, and TRL 1.16 (`sft_trainer.py`), transformers'
    Trainer and peft's k-bit preparation call it only with gradient checkpointing; prompt tuning
    feeds trainable virtual-token embeddings."""
    return w.mode == "full" or w.gradient_checkpointing or w.peft_method == "prompt-tuning"


def _compiled_layer_saved(spec: ModelSpec, w: Workload, plan: memory.AdapterPlan | None, *, c: int, input_bytes: int) -> int | None:
    """Per-token bytes a compiled layer saves, where the traced case applies (full fine-tuning in one
    dtype, SDPA/flash, no PEFT extras or Liger kernels); None otherwise (the eager set is used)."""
    if not w.compile_layers or plan is not None or input_bytes != c or w.attention == "eager":
        return None
    if w.norm_kernel != "torch" or w.mlp_kernel != "torch":
        return None
    return memory.compiled_layer_saved_bytes_per_token(spec, compute_bytes=c)


def _activations(spec: ModelSpec, w: Workload, plan: memory.AdapterPlan | None, *, b: int, s: int, c: int, input_bytes: int,
                 extra_total: int) -> tuple[int, int, int]:
    """(saved activations at the start of backward on the GPU, the recomputed layer, host bytes
    of offloaded activations). `extra_total` is what a PEFT method saves per token over all layers."""
    layers = max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
    frozen = plan is not None
    extra = extra_total // layers
    extra -= memory.liger_kernel_savings_per_layer(spec, compute_bytes=c, norm_kernel=w.norm_kernel, mlp_kernel=w.mlp_kernel, frozen=frozen)
    eager = memory.layer_saved_bytes_per_token(spec, compute_bytes=c, seq_len=s, attention=w.attention, adapters=plan, residual_bytes=input_bytes)
    compiled = _compiled_layer_saved(spec, w, plan, c=c, input_bytes=input_bytes)
    if compiled is not None:
        # torch.compile'd layers save the min-cut partition's set instead of eager's (`compiled_layer_saved_bytes_per_token`).
        extra += compiled - eager
    selective = 0
    if w.gradient_checkpointing and w.checkpoint_policy == "selective-op":
        # LoRA's adapter matmuls return the adapter dtype, or the compute dtype under autocast (fp32 base: input_bytes 4).
        lora = plan if plan is not None and plan.names else None
        out_bytes = c if (input_bytes != c or plan is None) else plan.adapter_bytes
        selective = memory.selective_op_saved_bytes_per_token(spec, compute_bytes=c, attention=w.attention, adapters=lora,
                                                              adapter_out_bytes=out_bytes)
    act = memory.training_activation_bytes(
        spec, batch_size=b, seq_len=s, compute_bytes=c, attention=w.attention, adapters=plan, gradient_checkpointing=w.gradient_checkpointing,
        checkpoint_every=w.checkpoint_every, layer_input_bytes=input_bytes, extra_per_layer=extra,
        head_saves_input=w.loss_impl in ("full", "chunked-output"), first_layer_input_grad=_first_layer_input_grad(w),
        checkpointed_extra_per_layer=selective,
    )
    per_layer = b * s * (eager + extra)
    grads = memory.layer_backward_transient_bytes(spec, tokens=b * s, compute_bytes=c, residual_bytes=input_bytes) if spec.is_causal_lm else 0
    # The recomputed layer takes over the outputs its selective policy kept (torch's SAC cache hands them over, not copies).
    recompute = per_layer + grads - b * s * selective if w.gradient_checkpointing else 0
    host = 0
    if w.activation_offload:
        h = spec.hidden_size
        head = b * s * memory.head_saved_bytes_per_token(spec, compute_bytes=c, residual_bytes=input_bytes, frozen=plan is not None,
                                                         head_saves_input=w.loss_impl in ("full", "chunked-output"))
        if w.gradient_checkpointing:
            kept = memory.checkpointed_layers(layers, w.checkpoint_every)
            layer_bytes = b * s * (input_bytes * h + selective) if kept == layers else per_layer
        else:
            layer_bytes = per_layer
        act, host = memory.offloaded_activation_split(saved_bytes=act, per_layer_bytes=layer_bytes, layers=layers, head_bytes=head)
    return act, recompute, host


def _training_phases(spec: ModelSpec, w: Workload, fmt: WeightFormat, weights: int) -> tuple[dict[str, Breakdown], int, int]:
    c = _compute_bytes(fmt)
    b, s = _training_shape(w)
    if w.mode in ("lora", "qlora") and w.peft_method == "prompt-tuning":
        s += w.num_virtual_tokens  # the virtual tokens extend every sequence (peft PromptEmbedding)
    tokens = b * s
    fp32_weights = _fp32_weights(w, fmt)
    input_bytes = _residual_bytes(w, fmt)  # residual stream dtype: fp32 weights under autocast keep it fp32
    head_weight_bytes = input_bytes
    loss = _loss_bytes(spec, w, tokens=tokens, c=c, hidden_bytes=input_bytes, head_weight_bytes=head_weight_bytes)
    host_act = 0
    if w.mode == "full":
        params = spec.num_params
        # The workload is text tokens: vision / audio towers and their projector run on no input, get no
        # gradient and (torch AdamW skips a None grad) no optimizer state. Traced, 2-layer llava / qwen2_vl /
        # moss_transcribe_diarize full fine-tune: gradients and AdamW states cover the language model only.
        trained = spec.text_trained_params
        state_bytes = 4 if w.master_weights else c
        if w.optimizer == "adafactor":
            factored = memory.adafactor_factored_elements(spec)
            optimizer = memory.optimizer_state_bytes(optimizer="adafactor", trainable_params=trained, state_bytes=state_bytes, factored_elements=factored)
        else:
            optimizer = memory.optimizer_state_bytes(optimizer=w.optimizer, trainable_params=trained, state_bytes=state_bytes)
        largest = memory.largest_linear_params(spec)
        temp = 0 if (w.fused_optimizer and w.optimizer == "adamw") else memory.optimizer_step_temp_bytes(
            optimizer=w.optimizer, trainable_params=trained, param_bytes=state_bytes, largest_param=largest
        )
        master = 4 * params if w.master_weights else 0
        grads = trained * c
        act, recompute, host_act = _activations(spec, w, None, b=b, s=s, c=c, input_bytes=input_bytes, extra_total=0)
        in_bwd = 0
        if w.optimizer_in_backward:
            biggest = max(largest, spec.vocab_size * spec.hidden_size)
            step = 0 if (w.fused_optimizer and w.optimizer == "adamw") else memory.optimizer_step_temp_bytes(
                optimizer=w.optimizer, trainable_params=biggest, param_bytes=state_bytes, largest_param=biggest)
            in_bwd = memory.optimizer_in_backward_bytes(largest_param=biggest, grad_bytes=c, temp_bytes_per_elem=0) + step
        live_weights = weights
        if w.master_weights and w.precision != "fp32":
            # fp32 parameters under autocast: the c-byte copies are autocast's cache of the casts it made, and it never
            # casts the embedding (a lookup), nor the LM head when TRL's fused loss casts it chunk by chunk.
            fused = w.loss_impl != "full"
            head = sum(g.weight_params for g in spec.linears if g.role == "head")
            uncast = (spec.embedding_params if (fused or not spec.tie_word_embeddings) else 0) + (head if fused else 0)
            uncast += spec.untouched_tower_params  # towers that run on no input are never cast
            live_weights = max(weights - uncast * c, 0)
        cached = live_weights
        forward_phase = None
        if w.master_weights and w.precision != "fp32" and w.gradient_checkpointing:
            # Autocast's cache lives as long as the autocast context: the whole forward (the loss included, as
            # transformers computes it in forward). Backward runs outside it, so there only the casts that ops saved
            # for backward are alive: the LM head's (full logits) and those of layers not checkpointed; a recomputed
            # layer casts its weights again (torch.utils.checkpoint re-enters autocast). Traced, 2-layer Llama-3.2-3B,
            # full logits: at the backward peak only the tied head's bf16 cast (751.5 MiB) is alive, not the layers'.
            layers = max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
            body = c * sum(g.weight_params for g in spec.linears if g.role != "head")
            head_cast = c * (sum(g.weight_params for g in spec.linears if g.role == "head") or spec.vocab_size * spec.hidden_size) \
                if (w.loss_impl == "full" and spec.is_causal_lm) else 0
            not_ckpt = layers - memory.checkpointed_layers(layers, w.checkpoint_every)
            live_weights = min(head_cast + body * not_ckpt // layers, cached)
            fwd_loss = memory.loss_forward_bytes(spec, tokens=tokens, compute_bytes=c) if w.loss_impl == "full" else loss
            forward_phase = Breakdown(weights_bytes=cached, optimizer_bytes=optimizer, master_weights_bytes=master, activations_bytes=act,
                                      logits_bytes=fwd_loss)
            recompute_weights = min(live_weights + body // layers, cached)
        else:
            recompute_weights = live_weights
        phases = {
            "backward": Breakdown(weights_bytes=live_weights, optimizer_bytes=optimizer, master_weights_bytes=master, activations_bytes=act,
                                  logits_bytes=loss, gradients_bytes=in_bwd),
        }
        if forward_phase is not None:
            phases["forward (autocast cache)"] = forward_phase
        if not w.optimizer_in_backward:
            phases["optimizer step"] = Breakdown(weights_bytes=weights, optimizer_bytes=optimizer + temp, master_weights_bytes=master, gradients_bytes=grads)
            if spec.tie_word_embeddings and spec.is_causal_lm:
                # Tied embedding: at the end of backward the embedding's dense gradient is added to the LM head's
                # (AccumulateGrad: old grad + incoming -> new), three vocab x hidden tensors at once (traced).
                grad_bytes = 4 if w.master_weights else c
                phases["backward end (tied embedding)"] = Breakdown(
                    weights_bytes=weights, optimizer_bytes=optimizer, master_weights_bytes=master,
                    gradients_bytes=grads + 2 * spec.vocab_size * spec.hidden_size * grad_bytes)
        if w.gradient_checkpointing:
            # Recomputing the last layer: the LM head's (and tied embedding's) gradient already exists.
            head_grad = spec.vocab_size * spec.hidden_size * c
            phases["layer recompute"] = Breakdown(weights_bytes=recompute_weights, optimizer_bytes=optimizer, master_weights_bytes=master,
                                                  activations_bytes=act + recompute, gradients_bytes=in_bwd or head_grad)
        return phases, trained, host_act
    # LoRA / QLoRA (and DoRA, IA3, prompt tuning, OFT, VeRA): frozen base, trainable adapters.
    if fmt.name in ("bnb-int8", "bnb-nf4", "bnb-fp4") and trainers.kbit_upcast(w.trainer):
        weights += memory.kbit_upcast_bytes(spec, fmt)  # peft's k-bit preparation of a bitsandbytes base
    adapter_elem_bytes = 4 if w.adapter_precision == "fp32" else 2
    cast = 0
    if fp32_weights:
        # A model loaded in fp32 (TRL's default for a model id) keeps its frozen base in fp32; under
        # bf16 autocast each matmul casts its weight (frozen weights are not in autocast's cache).
        weights = memory.weight_bytes(spec, weight_format(spec, replace(w, precision="fp32")))
        # (the LM head is cast chunk by chunk in TRL's fused loss, and counted with the saved casts for full logits)
        # Without checkpointing every cast was made in the forward and saved (`casts` below): backward makes none.
        cast = max((g.in_features * g.out_features for g in spec.linears if g.role != "head"), default=0) * c if w.gradient_checkpointing else 0
    method = w.peft_method
    names = memory.lora_target_names(spec, w.lora_targets) if method in ("lora", "dora") else frozenset()
    plan = memory.AdapterPlan(names=names, rank=w.lora_rank, adapter_bytes=adapter_elem_bytes)
    # Under autocast (fp32 base) every adapter's lora_A casts its (fp32) input to the compute dtype
    # itself: one c-byte copy per adapter, saved for its weight gradient.
    act_plan = replace(plan, input_copy_bytes=c) if fp32_weights else plan
    extra_total = 0
    transient = 0
    fixed_saved = 0  # saved for backward whatever the token count (OFT's rotations, VeRA's autocast casts), whole model
    adapter_buffers = 0
    saved_bytes = c if fp32_weights else adapter_elem_bytes  # dtype of what OFT / VeRA save: autocast's, else the adapters'
    if method in ("oft", "vera"):
        targets = memory.peft_linear_targets(spec, w.lora_targets)
    if method == "oft":
        adapter_params = memory.oft_params(spec, targets, block_size=w.oft_block_size)
        adapter_buffers = memory.oft_buffer_bytes(spec, targets, block_size=w.oft_block_size)
        extra_total = memory.oft_saved_bytes_per_token(spec, targets, saved_bytes=saved_bytes,
                                                       copies_input=fp32_weights or adapter_elem_bytes != c, attention=w.attention)
        fixed_saved = memory.oft_rotation_saved_bytes(spec, targets, block_size=w.oft_block_size, adapter_bytes=adapter_elem_bytes,
                                                      autocast_bytes=c if fp32_weights else 0)
    elif method == "vera":
        adapter_params = memory.vera_params(spec, targets, rank=w.vera_rank)
        adapter_buffers = memory.vera_projection_bytes(spec, targets, rank=w.vera_rank, adapter_bytes=adapter_elem_bytes)
        extra_total = memory.vera_saved_bytes_per_token(spec, targets, rank=w.vera_rank, saved_bytes=saved_bytes)
        fixed_saved = memory.vera_autocast_cast_bytes(spec, targets, rank=w.vera_rank, compute_bytes=c) if fp32_weights else 0
    elif method == "lora":
        adapter_params = memory.lora_params(spec, plan)
    elif method == "dora":
        adapter_params = memory.lora_params(spec, plan) + memory.dora_extra_params(spec, plan)
        extra_total = memory.dora_saved_bytes_per_token(spec, plan, compute_bytes=c)
        transient = memory.dora_weight_norm_transient_bytes(spec, plan)
    elif method == "ia3":
        adapter_params = memory.ia3_params(spec)
        extra_total = memory.ia3_saved_bytes_per_token(spec, compute_bytes=c)
    else:  # prompt tuning: num_virtual_tokens x hidden embedding
        adapter_params = w.num_virtual_tokens * spec.hidden_size
    states = memory.optimizer_state_bytes(optimizer=w.optimizer, trainable_params=adapter_params, state_bytes=adapter_elem_bytes)
    adapters = adapter_params * adapter_elem_bytes * 2 + states + adapter_buffers  # weights + grads + optimizer states (+ buffers)
    temp = 0 if (w.fused_optimizer and w.optimizer == "adamw") else memory.optimizer_step_temp_bytes(
        optimizer=w.optimizer, trainable_params=adapter_params, param_bytes=adapter_elem_bytes, largest_param=0)
    act, recompute, host_act = _activations(spec, w, act_plan, b=b, s=s, c=c, input_bytes=input_bytes, extra_total=extra_total)
    # LoRA on fused experts (peft's all-linear on Mixtral / Qwen3-MoE / DeepSeek): each MoE layer
    # saves a merged copy of its adapted expert stack for backward (memory.lora_merged_expert_bytes).
    # Its gradient temporary appears once backward reaches the last MoE layer, after the loss buffers
    # are freed: the phase peaks at the larger of the two (traced: 1-layer Qwen3-30B-A3B peaks at the
    # loss, Mixtral at the down-stack gradient).
    merged_all, merged_layer, merged_grad = memory.lora_merged_expert_bytes(spec, plan, param_bytes=4 if fp32_weights else c) \
        if method == "lora" else (0, 0, 0)
    act += merged_layer if w.gradient_checkpointing else merged_all
    recompute += merged_layer if w.gradient_checkpointing else 0
    layers = max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
    kept = layers - (memory.checkpointed_layers(layers, w.checkpoint_every) if w.gradient_checkpointing else 0)
    if fixed_saved:
        # Per layer, like its other saved tensors: kept by the layers not checkpointed, rebuilt in the one recomputed.
        act += fixed_saved * kept // layers
        recompute += fixed_saved // layers if w.gradient_checkpointing else 0
    if fp32_weights:
        # OFT's skew vectors and VeRA's scaling vectors enter no matmul, so autocast casts none of them (their casts are above).
        cast_adapters = 0 if method in ("oft", "vera") else adapter_params
        casts = memory.autocast_weight_cast_bytes(spec, compute_bytes=c, layers_kept=kept, full_logits=w.loss_impl == "full",
                                                  adapter_params=cast_adapters, first_layer_input_grad=_first_layer_input_grad(w))
        act += casts
        if w.gradient_checkpointing:
            recompute += memory.autocast_weight_cast_bytes(spec, compute_bytes=c, layers_kept=1, full_logits=False, adapter_params=0)
    # The input gradient through a frozen quantized linear dequantizes its weight to the compute dtype:
    # bitsandbytes MatMul4Bit.backward, and MatMul8bitLt.backward (`CB * SCB / 127`, bitsandbytes/autograd/_functions.py).
    dequant = memory.largest_linear_params(spec) * c if fmt.name in ("bnb-nf4", "bnb-fp4", "bnb-int8") else cast
    phases = {
        # The loss's backward runs first, while every saved activation is alive and before any adapter has a gradient
        # (TRL grid traces: gradients 0 at the peak); the gradients all exist only at the end, when the activations are gone.
        "backward": Breakdown(weights_bytes=weights, adapters_bytes=adapters - adapter_params * adapter_elem_bytes,
                              activations_bytes=act + dequant + max(0, merged_grad - loss), logits_bytes=loss),
    }
    if not w.optimizer_in_backward:
        phases["optimizer step"] = Breakdown(weights_bytes=weights, adapters_bytes=adapters + temp)
    if transient:
        phases["forward (DoRA weight norm)"] = Breakdown(weights_bytes=weights, adapters_bytes=adapters, activations_bytes=act + transient)
    if w.gradient_checkpointing:
        phases["layer recompute"] = Breakdown(weights_bytes=weights, adapters_bytes=adapters, activations_bytes=act + recompute + dequant + transient)
    return phases, adapter_params, host_act


def _speech_notes(spec: ModelSpec, w: Workload, fmt: WeightFormat, codec: speech.SpeechCodec | None) -> tuple[str, ...]:
    if codec is None:
        if not w.is_training and speech.generates_audio_codes(spec.raw_config) and w.runtime == "vllm":
            return ("Text-to-speech: the audio codec that turns the generated codes into a waveform is not counted for vLLM; "
                    "leave room for it outside gpu_memory_utilization.",)
        return ()
    static = speech.engine_static_cache_bytes(spec, compute_bytes=fmt.compute_bytes)
    return (
        speech.codec_note(spec, codec),
        f"boson-ai's own HiggsAudioServeEngine instead pre-allocates static KV caches of 1,024 + 4,096 + 8,192 positions for "
        f"{2 * spec.num_hidden_layers if spec.dual_ffn else spec.num_hidden_layers} layer slots ({static / 2**30:.2f} GiB at batch 1) "
        "and captures CUDA graphs for each; this estimate sizes transformers' generate() with a cache that grows with the context.",
    )


def _notes(spec: ModelSpec, w: Workload, fmt: WeightFormat, strategy: str) -> tuple[str, ...]:
    notes = list(spec.notes) + list(w.notes)
    if w.mode == "full" and spec.untouched_tower_params:
        notes.append(
            f"Full fine-tuning on text tokens: the {spec.untouched_tower_params / 1e6:,.1f}M parameters of the vision/audio towers and "
            "projector run on no input, so they get no gradient and AdamW keeps no state for them (their weights are counted). "
            "Batches with images or audio would add their gradients, optimizer states and activations; freeze the towers "
            "(requires_grad=False) to keep it this way.")
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
    if fmt.name == "mxfp4" and w.runtime == "transformers":
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
    if w.is_training:
        notes.extend(_trainer_notes(spec, w, fmt))
    if w.mode in ("lora", "qlora") and w.master_weights and w.precision != "fp32" and not fmt.is_quantized:
        # The headline says the precision picked; the frozen base is 4 bytes per parameter here (see _training_phases).
        # Said in the sized trainer's own terms (HF Trainer when TRL cannot start: trainers.runnable_workload).
        why, how = (("TRL SFTTrainer's default for a model id", "TRL model_init_kwargs={'dtype': ...}") if w.trainer in ("trl-sft", "unsloth")
                    else ("from_pretrained(dtype=torch.float32)", "from_pretrained(dtype=...)"))
        notes.append(f"The frozen base weights are held in fp32 (4 bytes per parameter), not {w.precision}: the model is loaded in fp32 "
                     f"({why}) and trained under {w.precision} autocast. Turn fp32 weights off "
                     f"(--no-master-weights; {how}) to load it in {w.precision}.")
    if w.is_training and not w.gradient_checkpointing:
        notes.append("Gradient checkpointing is off: activations dominate at long context; turning it on trades ~30% speed for most of them.")
    if w.mode in ("lora", "qlora") and fmt.name in ("bnb-int8", "bnb-nf4", "bnb-fp4"):
        base = "LoRA on an 8-bit base: LLM.int8 weights" if fmt.name == "bnb-int8" else f"QLoRA on a 4-bit {fmt.name[4:].upper()} base"
        if trainers.kbit_upcast(w.trainer):
            notes.append(f"{base}, with peft's prepare_model_for_kbit_training casting the other 16-bit parameters "
                         "(embeddings, norms, LM head) to fp32; activations are counted in the compute dtype.")
        else:
            notes.append(f"{base}; {trainers.get_preset(w.trainer).label} does not call peft's prepare_model_for_kbit_training, "
                         "so the unquantized parameters (embeddings, norms, LM head) stay in the compute dtype.")
    if w.mode in ("lora", "qlora") and w.adapter_precision == "fp32":
        notes.append("Adapters in fp32 (peft's default autocast_adapter_dtype=True) save an fp32 copy of each adapted layer's input.")
    if strategy not in ("none", "tp"):
        notes.append(f"Batch size is per GPU (micro-batch) under {strategy}; the global batch is {w.batch_size * w.num_gpus}.")
    notes += _cache_notes(spec, w, fmt.compute_bytes, _kv_bits(w, fmt))
    return tuple(notes)


def _trainer_notes(spec: ModelSpec, w: Workload, fmt: WeightFormat) -> list[str]:
    from .trainers import PRESETS

    notes = []
    preset = PRESETS.get(w.trainer)
    if preset is not None and w.trainer != "custom":
        notes.append(f"Trainer: {preset.label} ({preset.source}); each of its settings is shown and can be changed.")
        if preset.max_length and w.context_length > preset.max_length:
            notes.append(f"{preset.label} truncates to max_length={preset.max_length:,} by default; this sizes {w.context_length:,} tokens "
                         "(set max_length to match).")
    if w.loss_impl in ("fused-linear-liger",):
        notes.append("The fused linear cross-entropy (Liger / Unsloth) is a Triton kernel (GPU only): its term is analytic, not traced.")
    if w.norm_kernel == "liger" or w.mlp_kernel == "liger":
        notes.append("Liger RMSNorm / SwiGLU kernels are Triton (GPU only): their savings are analytic, not traced. "
                     "Liger's RoPE kernel works in place and changes no saved tensor here.")
    if w.gradient_checkpointing and w.checkpoint_policy == "selective-op":
        notes.append("Selective op checkpointing (torchtitan selective_ac_option='op'): each checkpointed layer also keeps the output of "
                     "every other matmul and of flash/efficient attention; traced for full fine-tuning and LoRA (ops of other PEFT "
                     "methods are not counted). torchtitan and torchtune's per-layer option k wrap layers k, 2k, ... (counting from 1), "
                     "transformers' every_n_layers wraps layers 0, k, 2k, ...; this sizes the latter.")
    if w.paged_optimizer:
        notes.append("Paged optimizer (bitsandbytes): states live in CUDA unified memory, counted on the GPU here; under memory pressure "
                     "they page to host RAM, and torch.cuda.max_memory_allocated does not count them.")
    if w.activation_offload:
        notes.append("Activation offloading: saved activations wait in pinned host RAM (shown as host memory); the GPU keeps about two layers' worth.")
    if w.optimizer_in_backward:
        notes.append("Optimizer step in backward: each parameter is updated as its gradient is ready, so no full set of gradients exists "
                     "(incompatible with gradient accumulation).")
    if w.compile_loss:
        notes.append("torch.compile of the loss (torchtune compile=True): the compiled chunked cross-entropy saves only the bf16 chunks "
                     "(traced with the min-cut partitioner).")
    if w.compile_layers:
        # The estimate's own test (`_compiled_layer_saved`; full fine-tuning has no adapter plan), so the note says what was sized.
        traced = w.mode == "full" and _compiled_layer_saved(spec, w, None, c=_compute_bytes(fmt), input_bytes=_residual_bytes(w, fmt)) is not None
        if traced:
            notes.append("torch.compile of the layers (torchtune compile=True): each layer saves the min-cut partition's set (its input, "
                         "the normalized linear inputs, attention's q/k/v/output, the MLP's gate, up and product; norms, SiLU and the "
                         "residual sum are recomputed), traced for full fine-tuning in one dtype with SDPA; inductor's kernel "
                         "workspaces and the autotuner are not counted.")
        else:
            notes.append("torch.compile of the layers is sized as eager here: its saved set is traced only for full fine-tuning in one "
                         "dtype with SDPA of a dense RMSNorm / gated-MLP decoder; what it saves otherwise only a compiled trace shows.")
    if not (w.compile_loss or w.compile_layers):
        notes.append("torch.compile is not modelled: it changes which tensors are saved in ways only a compiled trace shows.")
    return notes


def estimate(spec: ModelSpec, workload: Workload) -> Estimate:
    """Peak memory per GPU for `workload` on `spec`. Pure and fast (microseconds): the UI calls it
    on every rerun and for every point of its charts."""
    from .serving import vllm_breakdown  # local: serving imports Breakdown from here

    # transformers' attention fallback; vLLM runs its own attention backends (its notes must not say transformers').
    if workload.attention == "sdpa" and not spec.supports_sdpa and workload.runtime == "transformers":
        workload = replace(workload, attention="eager", notes=(*workload.notes, EAGER_FALLBACK_NOTE))
    fmt = weight_format(spec, workload)
    weights = memory.weight_bytes(spec, fmt)
    strategy = parallelism.resolve_parallelism(workload.is_training, workload.parallelism, workload.num_gpus)
    kv_per_token = memory.kv_cache_bytes_per_token(spec, _kv_bits(workload, fmt))
    trainable = 0
    host_act = 0
    trainer_problem = ""
    if workload.is_training:
        from .trainers import runnable_workload

        # The trainer cannot start on this model: size the run that does (HF Trainer, same settings,
        # full logits), and say so (`trainer_problem`; `workload.trainer` names what was sized).
        workload, trainer_problem = runnable_workload(spec, workload)
    if workload.runtime == "vllm":
        phases = {"serving": vllm_breakdown(spec, workload, fmt, weights)}
    elif workload.is_training:
        phases, trainable, host_act = _training_phases(spec, workload, fmt, weights)
    else:
        phases = _inference_phases(spec, workload, fmt, weights)
    profile_notes: tuple[str, ...] = ()
    if spec.profile is not None and workload.runtime != "vllm":
        # Trace profile (calculator/profile.py): measured activations / KV / state replace the formulas.
        from .profile import overlay_phases

        phases, profile_notes = overlay_phases(spec.profile, spec, workload, phases)
    elif spec.counted_by == "inventory":
        from .profile import NO_PROFILE_NOTE

        profile_notes = (NO_PROFILE_NOTE,)

    def per_gpu(b: Breakdown) -> Breakdown:
        if strategy == "tp":
            return parallelism.shard_inference(b, spec, num_gpus=workload.num_gpus, replicated_weight_bytes=spec.other_params * fmt.compute_bytes)
        if strategy != "none":
            layer_bytes = weights // max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
            return parallelism.shard_training(b, strategy=strategy, num_gpus=workload.num_gpus, layer_param_bytes=layer_bytes)
        return b

    # vLLM's breakdown is already per TP rank (`serving.vllm_breakdown`): its profile is not split.
    sharded = {name: b if workload.runtime == "vllm" else per_gpu(b) for name, b in phases.items()}
    codec = (speech.speech_codec(spec)
             if not workload.is_training and workload.runtime == "transformers" and workload.speech_codec else None)
    stack = STACKS[workload.stack]
    tuple_kv_counted = stack.tuple_kv_cache and "decode" in sharded and workload.runtime == "transformers" and not spec.is_encoder_decoder
    if tuple_kv_counted:
        # transformers <= 4.35: the step's old tuple cache (context - 1 positions) is alive next to the new one.
        old = memory.kv_cache_bytes(spec, batch_size=workload.batch_size, seq_len=max(workload.context_length - 1, 0),
                                    kv_bits=_kv_bits(workload, fmt))
        shard = per_gpu(Breakdown(kv_cache_bytes=old)).kv_cache_bytes
        sharded = {**sharded, "decode": replace(sharded["decode"], kv_cache_bytes=sharded["decode"].kv_cache_bytes + shard)}
    if codec is not None:  # a TTS model's serving stack loads its audio codec on the (first) GPU
        sharded = {name: replace(b, speech_codec_bytes=codec.weight_bytes) for name, b in sharded.items()}
        ref_frames = memory.audio_positions(workload.audio_token_share, workload.prompt_tokens)
        if ref_frames and "prefill" in sharded:
            # Before the prefill, the codec encodes the prompt's reference audio (one clip at a time).
            sharded["audio encode"] = Breakdown(weights_bytes=sharded["prefill"].weights_bytes, speech_codec_bytes=codec.weight_bytes,
                                                activations_bytes=codec.encode_bytes_per_frame * ref_frames)
        if workload.generated_tokens and "decode" in sharded:
            # After generate() returns (cache freed), the codec decodes one sequence's frames to a waveform.
            sharded["audio decode"] = Breakdown(weights_bytes=sharded["decode"].weights_bytes, speech_codec_bytes=codec.weight_bytes,
                                                activations_bytes=codec.decode_bytes_per_frame * workload.generated_tokens)
    host_bytes = host_act
    if workload.is_training and workload.cpu_offload != "none":
        layer_bytes = weights // max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
        offloaded = {}
        for name, b in sharded.items():
            split = memory.cpu_offload_split(weights=b.weights_bytes, optimizer=b.optimizer_bytes, master=b.master_weights_bytes,
                                             gradients=b.gradients_bytes, offload=workload.cpu_offload, layer_param_bytes=layer_bytes)
            offloaded[name] = replace(b, weights_bytes=split["weights"], optimizer_bytes=split["optimizer"],
                                      master_weights_bytes=split["master"], gradients_bytes=split["gradients"])
            host_bytes = max(host_bytes, host_act + split["host"])
        sharded = offloaded
    peak_phase = max(sharded, key=lambda name: sharded[name].torch_allocated_bytes)
    peak = sharded[peak_phase]
    allocator_notes: tuple[str, ...] = ()
    if workload.runtime == "vllm":
        from .serving import vllm_overhead

        peak = vllm_overhead(peak, workload, spec, fmt)
    else:
        variable, cached = _training_reserve(spec, workload, fmt) if workload.is_training else (0, 0)
        peak = _with_overhead(peak, training=workload.is_training, context_bytes=STACKS[workload.stack].context_bytes(CUDA_CONTEXT_BYTES),
                              variable_reserve=variable)
        if workload.is_training and workload.sample_lengths and workload.packing != "packed":
            allocator_notes = (_allocator_note(workload, peak, variable, cached),)
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
        notes=_notes(spec, workload, fmt, strategy) + profile_notes + _speech_notes(spec, workload, fmt, codec) + allocator_notes
        + ((stack.note(tuple_kv_counted=tuple_kv_counted),) if workload.runtime == "transformers" else ()),
        host_bytes=host_bytes,
        trainer_problem=trainer_problem,
    )
