"""Runtime stacks whose versions change the memory answer, and what each one changes.

The estimate describes the current stack by default. Two older behaviours still run in the wild:

- transformers <= 4.35 kept the KV cache as a tuple of per-layer (key, value) tuples. Each
  attention layer built a new, longer tensor with `torch.cat([past_key_value[0], key_states],
  dim=2)` and returned `past_key_value = (key_states, value_states)` (transformers v4.35.2,
  models/llama/modeling_llama.py, `LlamaAttention.forward`; every model had the same pattern),
  while `generate()` still held the previous step's tuple until the forward returned. During a
  decode step the old cache (context - 1 positions) and the new one (context positions) are alive
  together: up to twice the KV cache. The `Cache` classes (`DynamicCache`, huggingface/transformers
  PR #26681, released in v4.36.0) replace each layer's tensors in place, so one layer's old copy at
  most is alive at once.
- PyTorch <= 1.12 (or any CUDA runtime older than 11.7) loads every CUDA kernel of the library into
  the context when it starts. PyTorch 1.13 sets CUDA_MODULE_LOADING=LAZY (pytorch/pytorch PR
  #86509), measured there as 287,047,680 bytes for a bare context vs 666,632,192 bytes with eager
  loading: 379,584,512 bytes more, which the older stack adds to the context constant. That is a
  lower bound across GPUs: the transformers docs measured 1343 MiB for the kernels alone on a Tesla
  V100-SXM2 16GB (docs/source/en/model_memory_anatomy.md, nvidia-smi of Jan 2022), and a PyTorch
  maintainer wrote that eager loading "took >1000MB" (pytorch/pytorch#107667). Context sizes
  differ by GPU generation and driver; no per-GPU table is modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

EAGER_LOADING_EXTRA_BYTES = 666_632_192 - 287_047_680  # pytorch/pytorch PR #86509: eager minus lazy module loading


@dataclass(frozen=True, slots=True, kw_only=True)
class Stack:
    name: str
    label: str
    tuple_kv_cache: bool  # transformers <= 4.35: old and new K/V alive together in a decode step
    eager_cuda_modules: bool  # PyTorch <= 1.12 / CUDA < 11.7: all kernels loaded into the context

    def context_bytes(self, current_context_bytes: int) -> int:
        return current_context_bytes + (EAGER_LOADING_EXTRA_BYTES if self.eager_cuda_modules else 0)

    def note(self, *, tuple_kv_counted: bool = True) -> str:
        """What the stack changes here; `tuple_kv_counted=False` (training, no decode step) leaves out the
        tuple-cache sentence, which would describe a KV cache the view does not have."""
        if self.name == "current":
            return ("Stack assumed: transformers >= 4.36 (Cache classes) on PyTorch >= 1.13 with CUDA >= 11.7 (lazy kernel loading); "
                    "pick an older stack if yours is older.")
        parts = [f"Stack: {self.label}."]
        if self.tuple_kv_cache and tuple_kv_counted:
            parts.append("Tuple past_key_values: a decode step holds the previous cache and the new one at once (KV cache counted for "
                         "context and context - 1 positions).")
        if self.eager_cuda_modules:
            parts.append(f"All CUDA kernels are loaded eagerly: +{EAGER_LOADING_EXTRA_BYTES / 2**20:,.0f} MiB of CUDA context "
                         "(PyTorch PR #86509; a V100 measured 1343 MiB for the kernels alone, so older GPUs/CUDA can need more).")
        if len(parts) == 1:
            parts.append("It changes nothing in this estimate (no generate decode step here).")
        return " ".join(parts)


STACKS: dict[str, Stack] = {
    s.name: s
    for s in (
        Stack(name="current", label="transformers >= 4.36, PyTorch >= 1.13 (CUDA >= 11.7)", tuple_kv_cache=False, eager_cuda_modules=False),
        Stack(name="transformers-4.35", label="transformers <= 4.35 (tuple past_key_values), PyTorch >= 1.13", tuple_kv_cache=True,
              eager_cuda_modules=False),
        Stack(name="torch-1.12", label="transformers <= 4.35 on PyTorch <= 1.12 / CUDA < 11.7 (eager kernel loading)", tuple_kv_cache=True,
              eager_cuda_modules=True),
    )
}
STACK_NAMES: tuple[str, ...] = tuple(STACKS)
