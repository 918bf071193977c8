"""What the user wants to run: mode, precision, lengths, training settings, runtime, GPUs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import InvalidWorkloadError
from .units import PRECISIONS, Precision

Mode = Literal["inference", "lora", "qlora", "full"]
MODES: tuple[Mode, ...] = ("inference", "lora", "qlora", "full")
Optimizer = Literal["adamw", "adamw-8bit", "adafactor", "sgd"]
OPTIMIZERS: tuple[Optimizer, ...] = ("adamw", "adamw-8bit", "adafactor", "sgd")
AttentionImpl = Literal["sdpa", "flash", "eager"]
ATTENTION_IMPLS: tuple[AttentionImpl, ...] = ("sdpa", "flash", "eager")
Runtime = Literal["transformers", "vllm"]
Parallelism = Literal["auto", "tp", "ddp", "zero1", "zero2", "zero3", "fsdp"]
PARALLELISMS: tuple[Parallelism, ...] = ("auto", "tp", "ddp", "zero1", "zero2", "zero3", "fsdp")
# How weights of a given precision are quantized. "auto" picks the usual one per precision
# (int8 -> bitsandbytes LLM.int8, int4 -> bitsandbytes NF4, fp8 -> per-channel fp8) or reads the
# checkpoint's own `quantization_config`.
QuantMethod = Literal["auto", "none", "bnb-nf4", "bnb-fp4", "bnb-int8", "gptq", "awq", "fp8", "mxfp4", "hqq"]
QUANT_METHODS: tuple[QuantMethod, ...] = ("auto", "none", "bnb-nf4", "bnb-fp4", "bnb-int8", "gptq", "awq", "fp8", "mxfp4", "hqq")
# The cache transformers' `generate` builds (`cache_implementation=`): DynamicCache grows with the
# sequence; "static" preallocates prompt + new tokens (StaticCache); "quantized" is QuantizedCache
# (quanto/HQQ group-wise at the KV precision, int4 by default, or its fp8 backend).
CacheImplementation = Literal["dynamic", "static", "quantized"]
CACHE_IMPLEMENTATIONS: tuple[CacheImplementation, ...] = ("dynamic", "static", "quantized")
LoraTargets = Literal["all-linear", "attention", "attention+mlp", "mlp", "qv"]
LORA_TARGETS: tuple[LoraTargets, ...] = ("all-linear", "attention", "attention+mlp", "mlp", "qv")
# Trainer presets and memory savers (calculator/trainers.py names the code each default is read from).
TRAINER_NAMES: tuple[str, ...] = ("custom", "trl-sft", "hf-trainer", "torchtune", "unsloth", "axolotl-liger")
LossImpl = Literal["full", "chunked-output", "fused-linear", "fused-linear-liger"]
LOSS_IMPLS: tuple[LossImpl, ...] = ("full", "chunked-output", "fused-linear", "fused-linear-liger")
PeftMethod = Literal["lora", "dora", "ia3", "prompt-tuning", "oft", "vera"]
PEFT_METHODS: tuple[PeftMethod, ...] = ("lora", "dora", "ia3", "prompt-tuning", "oft", "vera")
# What a checkpointed layer keeps: "full" = only its input (transformers gradient_checkpointing, torchtune
# enable_activation_checkpointing, torchtitan mode="full"); "selective-op" = torchtitan's op-level selective AC
# (mode="selective", selective_ac_option="op"): also the outputs of matmuls (every other one) and attention.
CheckpointPolicy = Literal["full", "selective-op"]
CHECKPOINT_POLICIES: tuple[CheckpointPolicy, ...] = ("full", "selective-op")
Packing = Literal["padded", "packed", "padding-free"]
PACKINGS: tuple[Packing, ...] = ("padded", "packed", "padding-free")
CpuOffload = Literal["none", "optimizer", "optimizer+params"]
CPU_OFFLOADS: tuple[CpuOffload, ...] = ("none", "optimizer", "optimizer+params")
KERNELS: tuple[str, ...] = ("torch", "liger")
MAX_SAMPLE_LENGTHS = 4096

# Bounds that keep every number finite and meaningful. A request past them is almost always a typo
# (or a tampered URL), and the message says so.
MAX_CONTEXT_TOKENS = 10_000_000
MAX_BATCH_SIZE = 100_000
MAX_GPUS = 1024
MAX_LORA_RANK = 65_536


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """One run to size. Defaults are the app's default view: fp16 inference, 4,096 tokens, batch 1."""

    mode: Mode = "inference"
    precision: Precision = "fp16"
    quant_method: QuantMethod = "auto"
    double_quant: bool | None = None  # bnb 4-bit double quantization; None: on for QLoRA (paper), off otherwise (transformers default)
    quant_group_size: int = 128  # GPTQ / AWQ group size
    context_length: int = 4096  # tokens per sequence (prompt + generated, or training length)
    generated_tokens: int = 0  # of which generated (inference); 0 = size the prefill for the whole context
    batch_size: int = 1
    kv_cache_precision: Precision | None = None  # None: same as the compute dtype
    cache_implementation: CacheImplementation = "dynamic"  # transformers generate's cache (see CACHE_IMPLEMENTATIONS)
    attention: AttentionImpl = "sdpa"
    gradient_checkpointing: bool = False
    optimizer: Optimizer = "adamw"
    master_weights: bool = False  # fp32 master copy (HF Trainer AMP on an fp32 model, DeepSpeed)
    lora_rank: int = 16
    lora_targets: LoraTargets = "all-linear"
    adapter_precision: Precision = "fp32"  # peft autocast_adapter_dtype=True keeps adapters in fp32
    keep_logits: bool = False  # training loop keeps `outputs` (bf16 logits) alive through backward
    runtime: Runtime = "transformers"
    gpu_memory_utilization: float = 0.9  # vLLM's share of each GPU
    # vLLM engine flags (`calculator.vllm`): version ("" = the current release), and the scheduler
    # limits `vllm serve` takes (None = the version's default for the GPU); max_model_len is
    # `context_length`, --kv-cache-dtype fp8 is `kv_cache_precision="fp8"`, TP is `num_gpus`.
    vllm_version: str = ""
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enforce_eager: bool = False
    num_gpus: int = 1
    parallelism: Parallelism = "auto"
    # DualFFN models (higgs-audio): share of the prompt / training positions that are audio tokens
    # and take the audio FFN (the rest take the text FFN). Generated positions are audio frames.
    audio_token_share: float = 0.0
    # Runtime stack whose version changes memory (calculator/stacks.py): "current" (default),
    # "transformers-4.35" (tuple past_key_values), "torch-1.12" (also eager CUDA kernel loading).
    stack: str = "current"
    speech_codec: bool = True  # TTS models: the audio codec and its waveform decode run on this GPU (calculator/speech.py)
    # Trainer preset and memory savers (each a term of its own in `memory`; defaults = the plain loop).
    trainer: str = "custom"  # a name of calculator.trainers.PRESETS; "custom" = the settings as given
    loss_impl: LossImpl = "full"  # full fp32 logits; torchtune chunked output CE; TRL fused head; Liger/Unsloth fused linear CE
    loss_chunks: int = 8  # chunks of torchtune's CEWithChunkedOutputLoss
    compile_loss: bool = False  # torch.compile of the chunked loss (torchtune compile=True): saves only the bf16 chunks
    compile_layers: bool = False  # torch.compile of each decoder layer (torchtune compile=True): min-cut saved set (full FT, SDPA)
    trained_token_fraction: float = 1.0  # share of tokens whose label is not -100 (completion/assistant-only loss)
    checkpoint_every: int = 1  # with gradient checkpointing: every k-th decoder layer (transformers `every_n_layers`)
    checkpoint_policy: CheckpointPolicy = "full"  # with gradient checkpointing: what each checkpointed layer keeps (CHECKPOINT_POLICIES)
    activation_offload: bool = False  # saved activations held in pinned host memory (torchtune / TRL / Unsloth)
    optimizer_in_backward: bool = False  # each parameter stepped as its gradient is ready (torchtune optimizer_in_bwd)
    fused_optimizer: bool = False  # AdamW(fused=True): no parameter-sized temporary in the step
    paged_optimizer: bool = False  # bitsandbytes paged states (unified memory; can spill to host)
    cpu_offload: CpuOffload = "none"  # DeepSpeed ZeRO-Offload / FSDP CPU offload of optimizer states (and parameters)
    peft_method: PeftMethod = "lora"  # for mode lora/qlora
    num_virtual_tokens: int = 20  # prompt tuning
    oft_block_size: int = 32  # OFT: size of each orthogonal block (peft 0.21 OFTConfig default oft_block_size=32, r=0)
    vera_rank: int = 256  # VeRA: rank of the shared random projections (peft 0.21 VeraConfig default r=256)
    norm_kernel: str = "torch"  # "liger": Liger RMSNorm saves its input and 1/rms only
    mlp_kernel: str = "torch"  # "liger": Liger SwiGLU saves gate and up, recomputes the activation
    packing: Packing = "padded"
    sample_lengths: tuple[int, ...] = ()  # dataset sequence lengths (tokens); () = every sequence is context_length long
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        validate_workload(self)

    @property
    def is_training(self) -> bool:
        return self.mode != "inference"

    @property
    def prompt_tokens(self) -> int:
        return self.context_length - self.generated_tokens


def validate_workload(w: Workload) -> None:
    """Reject settings that are out of range or contradict each other, saying how to fix them."""

    def bounded(name: str, value: object, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidWorkloadError(f"{name} must be a whole number from {low:,} to {high:,}; got {value!r}.")

    bounded("context length", w.context_length, 1, MAX_CONTEXT_TOKENS)
    bounded("batch size", w.batch_size, 1, MAX_BATCH_SIZE)
    bounded("number of GPUs", w.num_gpus, 1, MAX_GPUS)
    bounded("LoRA rank", w.lora_rank, 1, MAX_LORA_RANK)
    bounded("generated tokens", w.generated_tokens, 0, w.context_length - 1 if w.context_length > 1 else 0)
    bounded("quantization group size", w.quant_group_size, 1, 1 << 20)
    bounded("loss chunks", w.loss_chunks, 1, 1 << 16)
    bounded("checkpoint every", w.checkpoint_every, 1, 1 << 16)
    bounded("virtual tokens", w.num_virtual_tokens, 1, 1 << 16)
    bounded("OFT block size", w.oft_block_size, 1, MAX_LORA_RANK)
    bounded("VeRA rank", w.vera_rank, 1, MAX_LORA_RANK)
    if not isinstance(w.trained_token_fraction, (int, float)) or not 0.0 < w.trained_token_fraction <= 1.0:
        raise InvalidWorkloadError(f"trained token fraction must be above 0 and at most 1; got {w.trained_token_fraction!r}.")
    if not isinstance(w.sample_lengths, tuple) or len(w.sample_lengths) > MAX_SAMPLE_LENGTHS:
        raise InvalidWorkloadError(f"sample lengths must be a list of at most {MAX_SAMPLE_LENGTHS:,} whole numbers.")
    for n in w.sample_lengths:
        bounded("a sample length", n, 1, MAX_CONTEXT_TOKENS)
    choices = {
        "mode": (w.mode, MODES),
        "precision": (w.precision, PRECISIONS),
        "optimizer": (w.optimizer, OPTIMIZERS),
        "attention": (w.attention, ATTENTION_IMPLS),
        "parallelism": (w.parallelism, PARALLELISMS),
        "quantization method": (w.quant_method, QUANT_METHODS),
        "LoRA targets": (w.lora_targets, LORA_TARGETS),
        "adapter precision": (w.adapter_precision, ("fp32", "bf16", "fp16")),
        "runtime": (w.runtime, ("transformers", "vllm")),
        "cache implementation": (w.cache_implementation, CACHE_IMPLEMENTATIONS),
        "trainer": (w.trainer, TRAINER_NAMES),
        "loss": (w.loss_impl, LOSS_IMPLS),
        "PEFT method": (w.peft_method, PEFT_METHODS),
        "packing": (w.packing, PACKINGS),
        "checkpoint policy": (w.checkpoint_policy, CHECKPOINT_POLICIES),
        "CPU offload": (w.cpu_offload, CPU_OFFLOADS),
        "norm kernel": (w.norm_kernel, KERNELS),
        "MLP kernel": (w.mlp_kernel, KERNELS),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise InvalidWorkloadError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
    if w.kv_cache_precision is not None and w.kv_cache_precision not in ("fp32", "bf16", "fp16", "fp8", "int8", "int4"):
        raise InvalidWorkloadError(f"KV-cache precision must be one of {', '.join(PRECISIONS)}; got {w.kv_cache_precision!r}.")
    from .stacks import STACK_NAMES

    if w.stack not in STACK_NAMES:
        raise InvalidWorkloadError(f"stack must be one of {', '.join(STACK_NAMES)}; got {w.stack!r}.")
    share = w.audio_token_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise InvalidWorkloadError(f"audio token share must be a fraction from 0 to 1; got {share!r}.")
    if w.max_num_seqs is not None:
        bounded("max_num_seqs", w.max_num_seqs, 1, MAX_BATCH_SIZE)
    if w.max_num_batched_tokens is not None:
        bounded("max_num_batched_tokens", w.max_num_batched_tokens, 1, MAX_CONTEXT_TOKENS)
    if w.vllm_version:
        from .vllm import vllm_version

        vllm_version(w.vllm_version)  # raises InvalidWorkloadError naming the modelled versions
    if not 0.05 <= w.gpu_memory_utilization <= 1.0:
        raise InvalidWorkloadError(f"gpu_memory_utilization must be between 0.05 and 1.0; got {w.gpu_memory_utilization!r}.")
    if w.mode == "qlora" and w.precision not in ("int4", "int8"):
        raise InvalidWorkloadError(
            f"QLoRA trains adapters on a 4-bit (or 8-bit) quantized base; precision {w.precision} is not "
            "quantized. Pick int4 (the QLoRA paper's NF4) or use LoRA for a 16-bit base."
        )
    if w.mode == "full" and w.precision in ("int8", "int4", "fp8"):
        raise InvalidWorkloadError(
            f"Full fine-tuning updates every weight, which {w.precision} storage cannot hold. "
            "Use bf16 (or fp32) for full fine-tuning, or QLoRA to train on a quantized base."
        )
    if w.cache_implementation != "dynamic" and (w.is_training or w.runtime != "transformers"):
        raise InvalidWorkloadError(
            f"cache_implementation={w.cache_implementation!r} is the cache of transformers' generate (inference); "
            "training keeps no cache and vLLM pages its own. Use dynamic."
        )
    if w.cache_implementation == "quantized" and w.kv_cache_precision not in (None, "int4", "int8", "fp8"):
        raise InvalidWorkloadError(
            f"transformers' QuantizedCache stores int4 (quanto or HQQ, the default), int8 (HQQ) or fp8; "
            f"KV precision {w.kv_cache_precision} is not one of them."
        )
    if w.runtime == "vllm" and w.is_training:
        raise InvalidWorkloadError("vLLM is an inference server; choose the transformers runtime for training modes.")
    if w.is_training and w.parallelism == "tp":
        raise InvalidWorkloadError("Tensor parallelism is modelled for inference; for training pick ddp, zero1/2/3 or fsdp.")
    if not w.is_training and w.parallelism in ("ddp", "zero1", "zero2", "zero3", "fsdp"):
        raise InvalidWorkloadError(f"{w.parallelism} shards training state; for inference on several GPUs use tp.")
