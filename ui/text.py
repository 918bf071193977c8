"""Plain-language explanations shown next to the numbers: one per component, and the FAQ."""

from __future__ import annotations

COMPONENT_HELP: dict[str, str] = {
    "weights": "The model's parameters, stored at the chosen precision (2 bytes each at fp16/bf16, 1 at int8/fp8, about half a byte at int4 "
    "plus the quantization scales). Always in memory.",
    "kv_cache": "Keys and values of every token seen so far, kept per attention layer so generation does not recompute them. Grows with "
    "context length × batch size; models with grouped-query attention (fewer KV heads) or sliding windows keep less.",
    "activations": "Intermediate results of the forward pass. For inference only one layer's worth lives at a time; for training every "
    "layer's are saved for the backward pass (gradient checkpointing keeps only layer inputs and recomputes the rest).",
    "logits": "Scores over the whole vocabulary for each position (and, when training, the loss computation's buffers). Large for models "
    "with big vocabularies at long context.",
    "gradients": "One gradient per trainable parameter, produced by the backward pass (full fine-tuning: as many as there are weights).",
    "optimizer": "AdamW keeps two running statistics per trainable parameter (8-bit AdamW stores them in one byte each; SGD keeps none).",
    "master_weights": "An fp32 copy of the weights that mixed-precision training updates, then casts back to 16-bit.",
    "adapters": "LoRA's small trainable matrices with their gradients and optimizer states: tiny next to the frozen base model.",
    "speech_codec": "A text-to-speech model emits audio codes; the serving stack also loads the audio codec (audio tokenizer) on the GPU "
    "to decode them into a waveform and to encode reference audio for voice cloning.",
    "allocator_reserve": "PyTorch's caching allocator keeps freed blocks for reuse and rounds sizes up, so it reserves a little more than "
    "the tensors need (`torch.cuda.memory_reserved` minus `memory_allocated`).",
    "cuda_context": "The CUDA runtime, cuBLAS/cuDNN workspaces and loaded kernels: memory the process holds outside PyTorch's allocator. "
    "nvidia-smi counts it; PyTorch's counters do not.",
}

MEMORY_KINDS = (
    "**Three numbers, three tools.** *Allocated* is what `torch.cuda.max_memory_allocated()` reports: the tensors themselves. "
    "*Reserved* (`torch.cuda.max_memory_reserved()`) adds the allocator's cache. *nvidia-smi* adds the CUDA context on top, and "
    "that is the number that decides whether a job fits, so it is the headline here. A GPU's *usable* memory is what nvidia-smi "
    "reports as total (an “80 GB” H100 shows 79.6 GiB), not the marketing size."
)

UNITS = (
    "**GiB or GB?** 1 GiB = 2³⁰ = 1,073,741,824 bytes; 1 GB = 10⁹ bytes, about 7% less. GPU vendors say “24 GB” for 24 GiB cards; "
    "nvidia-smi prints MiB. Every number here says which unit it uses."
)

FAQ: tuple[tuple[str, str], ...] = (
    (
        "How much VRAM does a model need to run?",
        "Roughly 2 bytes per parameter at fp16/bf16 for the weights, plus the KV cache (which grows with context length and batch), "
        "one layer's activations, and about 0.5–1 GiB of runtime overhead. The breakdown above shows each part for your settings.",
    ),
    (
        "Why is fine-tuning so much bigger than inference?",
        "Full fine-tuning holds gradients (one per weight) and optimizer states (two per weight for AdamW) on top of the weights, and "
        "saves every layer's activations for the backward pass. LoRA freezes the base and trains small adapters, so only the "
        "activations grow; QLoRA also stores the frozen base in 4 bits.",
    ),
    (
        "What does quantization (int8 / int4) change?",
        "It shrinks the weights (1 byte or ~0.5 byte per parameter plus scales). The KV cache and activations stay 16-bit unless you "
        "also pick a lower KV-cache precision. Quality loss is small at int8 and usually modest at 4-bit (NF4, GPTQ, AWQ).",
    ),
    (
        "Why do allocated, reserved and nvidia-smi memory differ?",
        MEMORY_KINDS.replace("**Three numbers, three tools.** ", ""),
    ),
    (
        "How is the parameter count obtained?",
        "Exact counts come from the checkpoint's safetensors headers (or the bundled catalog, which records them). Without them the "
        "count is computed from config.json (layers × hidden size × …), which is usually within 1% of the real checkpoint. For an "
        "architecture without a formula here, transformers' own model class is built on the meta device (no weights) and every "
        "parameter counted (“transformers inventory”; needs torch + transformers, except for the configs whose inventory ships"
        " with the calculator). The “Counted from” metric says which was used.",
    ),
    (
        "How accurate is this, and why add headroom?",
        "The estimate models what PyTorch allocates phase by phase; real runs vary with library versions, fragmentation and "
        "framework extras. For production traffic (variable prompt lengths, concurrent requests) keep 10–20% headroom: set it in "
        "Advanced and the ranking only counts GPUs that fit with it.",
    ),
    (
        "What does vLLM's gpu_memory_utilization do?",
        "vLLM claims that share of the card at start-up and fills whatever is left after the weights and activation profile with "
        "KV-cache blocks, so its usage is fixed, not load-dependent. The estimate reports the card size this workload needs at that share.",
    ),
)

SOURCE_TEXT: dict[str, str] = {
    "safetensors": "safetensors (exact)",
    "catalog": "catalog (exact)",
    "config": "config arithmetic",
    "inventory": "transformers inventory",
}

MODE_LABELS: dict[str, str] = {"inference": "Inference", "lora": "LoRA fine-tune", "qlora": "QLoRA fine-tune", "full": "Full fine-tune"}
PRECISION_LABELS: dict[str, str] = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "fp8": "FP8", "int8": "INT8", "int4": "INT4"}
# The precision x mode table's row names: FP16 and BF16 share a row (2 bytes per value either way;
# calculator/report.py TABLE_PRECISIONS).
TABLE_ROW_LABELS: dict[str, str] = PRECISION_LABELS | {"fp16": "FP16 / BF16", "bf16": "FP16 / BF16"}
