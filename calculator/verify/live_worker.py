"""`python -m calculator.verify.live_worker`: one live run on the GPU, in its own process.

Reads a JSON request on stdin (`model_id`, `config`, `workload`, `estimate_bytes`, optional
`options`; see `live.run_live`), prints one line `@@live-result@@ {json}` on stdout with `status` "ok", "oom",
"refused", "no-gpu", "unsupported" or "error". Everything else goes to stderr. Run in a subprocess
so that a timeout or a wedged kernel is ended by killing the process, and so the CUDA context and
the caching allocator of one run never leak into the next.

The workload runs as in the trace (`_harness`): inference is `generate()` (prefill with
`logits_to_keep=1`, then greedy decoding to `context_length`), or one forward with a cache when
no tokens are generated; training is a warm-up step (so optimizer states exist) and a measured
step, each forward with labels -> backward -> `optimizer.step()` -> `zero_grad(set_to_none=True)`.
`options` holds what a `Workload` does not distinguish: `adamw_impl` ("foreach", the default, as
the trace runs it, or "fused": torch's fused AdamW kernel, no step temporary).

Besides the peaks the worker records what the engine's two constants stand for: the CUDA context
alone (the device's used memory right after the context is made, before any tensor, minus just
before it, by NVML or else `nvidia-smi`), and at the measuring point the device memory this
process holds (same instrument) next to `torch.cuda.memory_reserved()`, whose difference is
everything outside the caching allocator (context, kernels loaded lazily, library handles). It
also reports the versions of torch, CUDA, the driver, transformers and peft.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from typing import Any

from ..errors import CalculatorError
from .compare import workload_from_dict
from .live import RESULT_MARKER, check_free_memory


def _nvml_sample() -> tuple[int | None, int | None]:
    """(this process's device memory, device used) from NVML; (None, None) without pynvml."""
    try:
        import pynvml
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
            mine = None
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if p.pid == os.getpid() and p.usedGpuMemory is not None:
                    mine = int(p.usedGpuMemory)
            return mine, used
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML unavailable in a container, or no per-process accounting
        return None, None


def _nvidia_smi(field: str) -> str | None:
    """One `nvidia-smi --query-gpu` field of device 0 (it does not create a CUDA context); None if it fails."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=20, check=True)
        return out.stdout.strip().splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def device_used_bytes() -> tuple[int | None, str]:
    """(memory used on device 0, instrument) without creating a CUDA context: NVML when pynvml
    (nvidia-ml-py) imports, else `nvidia-smi` (MiB, so +-1 MiB); (None, "") when neither answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used), "nvml"
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # pynvml missing, or NVML failing in a container: try the command line
        pass
    text = _nvidia_smi("memory.used")
    try:
        return (int(float(text)) << 20, "nvidia-smi") if text is not None else (None, "")
    except ValueError:
        return None, ""


def stack_versions(torch: Any) -> dict[str, str]:
    """torch, CUDA (torch's build), driver, transformers, peft, accelerate, bitsandbytes (those installed)."""
    versions = {"torch": str(torch.__version__), "cuda": str(torch.version.cuda or "")}
    for name in ("transformers", "peft", "accelerate", "bitsandbytes"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    driver = None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML: ask nvidia-smi
        driver = _nvidia_smi("driver_version")
    if driver:
        versions["driver"] = driver
    return versions


def _cuda_device(torch: Any) -> Any:
    """The device the run uses (a seam: the CPU smoke test of tests/test_gpu_campaign.py replaces it)."""
    return torch.device("cuda", torch.cuda.current_device())


def run(request: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ..spec import model_spec_from_config
    from . import _harness

    if not torch.cuda.is_available():
        return {"status": "no-gpu", "message": "no CUDA GPU here; use the trace level instead (--trace)."}
    w = workload_from_dict(request["workload"])
    config = request["config"]
    spec = model_spec_from_config(request.get("model_id") or str(config.get("model_type", "")), config)
    options = dict(request.get("options") or {})
    notes: list[str] = []
    started = time.monotonic()
    used_before, instrument = device_used_bytes()  # before this process has a CUDA context
    device = _cuda_device(torch)
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info(device)  # needs the context: from here on it exists
    used_after, _ = device_used_bytes() if instrument else (None, "")
    name = torch.cuda.get_device_name(device)
    base = {"device_name": name, "device_total_bytes": int(total), "free_before_bytes": int(free), "versions": stack_versions(torch),
            "memory_instrument": instrument,
            "context_bytes": used_after - used_before if used_before is not None and used_after is not None else None}
    try:
        check_free_memory(int(request.get("estimate_bytes", 0)), int(free), int(total), device=name)
    except CalculatorError as e:
        return {"status": "refused", "message": str(e), **base}
    try:
        _harness._check_supported(spec, w)
    except CalculatorError as e:
        return {"status": "unsupported", "message": str(e), **base}

    compute_dtype = _harness._TORCH_DTYPES[w.precision]
    master = w.mode == "full" and w.master_weights and w.precision != "fp32"
    param_dtype = torch.float32 if master else compute_dtype
    attn = {"sdpa": "sdpa", "eager": "eager", "flash": "flash_attention_2"}[w.attention]
    if attn == "flash_attention_2":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is None:
            attn = "sdpa"
            notes.append("flash-attn is not installed; ran SDPA (its flash kernel on CUDA).")
    hf_config = _harness._hf_config(config, notes)
    model_cls = _harness._model_class(hf_config, spec, notes)
    stats: dict[str, Any] = {}

    def measure() -> None:
        torch.cuda.synchronize(device)
        stats["max_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
        stats["max_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
        mine, used = _nvml_sample()
        stats["nvml_process_bytes"], stats["nvml_device_used_bytes"] = mine, used
        stats["reserved_at_measure_bytes"] = int(torch.cuda.memory_reserved(device))
        now, _ = device_used_bytes() if used_before is not None else (None, "")
        stats["process_used_bytes"] = now - used_before if now is not None else None
        free_now, total_now = torch.cuda.mem_get_info(device)  # the whole device: the fallback without NVML / nvidia-smi
        stats["device_used_at_measure_bytes"] = int(total_now - free_now)

    try:
        with torch.device(device):
            try:
                if model_cls.__name__.startswith("Auto"):
                    model = model_cls.from_config(hf_config, dtype=param_dtype, attn_implementation=attn)
                else:
                    model = model_cls._from_config(hf_config, dtype=param_dtype, attn_implementation=attn)
            except ValueError as e:
                if attn != "sdpa":
                    raise
                notes.append(f"{hf_config.model_type} has no SDPA attention in transformers; ran eager attention ({e}).")
                model = model_cls.from_config(hf_config, dtype=param_dtype, attn_implementation="eager") if model_cls.__name__.startswith("Auto") \
                    else model_cls._from_config(hf_config, dtype=param_dtype, attn_implementation="eager")
            if w.mode == "lora":
                model = _lora(model, spec, w, notes)
        torch.cuda.synchronize(device)
        stats["after_load_bytes"] = int(torch.cuda.memory_allocated(device))
        if w.is_training:
            _train(model, spec, w, compute_dtype, master, device, measure, adamw_impl=str(options.get("adamw_impl", "foreach")))
        else:
            _infer(model, spec, w, device, measure)
    except torch.cuda.OutOfMemoryError as e:
        measure()
        return {"status": "oom", "message": f"CUDA out of memory: {str(e).splitlines()[0][:300]}", **base, **stats,
                "seconds": time.monotonic() - started, "notes": notes}
    return {"status": "ok", **base, **stats, "seconds": time.monotonic() - started, "notes": notes}


def _lora(model: Any, spec: Any, w: Any, notes: list[str]) -> Any:
    from peft import LoraConfig, get_peft_model

    from . import _harness

    cfg = LoraConfig(r=w.lora_rank, lora_alpha=2 * w.lora_rank, lora_dropout=0.0, target_modules=_harness._lora_targets(spec, w),
                     bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg, autocast_adapter_dtype=w.adapter_precision == "fp32")
    if w.adapter_precision != "fp32":
        wanted = _harness._TORCH_DTYPES[w.adapter_precision]
        for name, module in model.named_modules():
            if name.endswith(("lora_A", "lora_B")):
                module.to(wanted)
    notes.append(f"LoRA r={w.lora_rank} on {w.lora_targets}, adapters in {w.adapter_precision}.")
    return model


def _infer(model: Any, spec: Any, w: Any, device: Any, measure: Any) -> None:
    import torch

    from . import _harness

    model.eval()
    model.requires_grad_(False)
    b = w.batch_size
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        if not spec.is_causal_lm:
            ids = torch.randint(0, spec.vocab_size, (b, w.context_length), device=device)
            model(input_ids=ids)
        elif w.generated_tokens:
            ids = torch.randint(0, spec.vocab_size, (b, w.prompt_tokens), device=device)
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=w.generated_tokens, min_new_tokens=w.generated_tokens,
                           do_sample=False, pad_token_id=0, **_cache_kwargs(w))
        else:
            ids = torch.randint(0, spec.vocab_size, (b, w.context_length), device=device)
            extra = {"cache": _harness._generate_cache(model, w, [])} if w.cache_implementation != "dynamic" else {}
            model(input_ids=ids, use_cache=True, logits_to_keep=1, **extra)
        measure()


def _cache_kwargs(w: Any) -> dict[str, Any]:
    """generate()'s arguments for the workload's cache (transformers 5.24 `_prepare_cache_for_generation`):
    static, or quantized with the backend the KV precision means (quanto 4-bit, HQQ 8-bit, fp8)."""
    from ..memory import quantized_kv_nbits

    if w.cache_implementation == "static":
        return {"cache_implementation": "static"}
    if w.cache_implementation == "quantized":
        nbits = quantized_kv_nbits(w.kv_cache_precision)
        config = {"backend": "fp8"} if nbits == "fp8" else {"backend": "quanto" if nbits == 4 else "hqq", "nbits": nbits}
        return {"cache_implementation": "quantized", "cache_config": config}
    return {}


def _train(model: Any, spec: Any, w: Any, compute_dtype: Any, master: bool, device: Any, measure: Any, *, adamw_impl: str = "foreach") -> None:
    import torch

    from . import _harness

    model.train()
    if w.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    if w.optimizer == "adamw-8bit":
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(params, lr=1e-5)
    elif w.optimizer == "adamw" and adamw_impl == "fused":
        optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    else:
        optimizer = _harness._optimizer(w, params, [])

    def step() -> None:
        ids = torch.randint(0, spec.vocab_size, (w.batch_size, w.context_length), device=device)
        autocast = torch.autocast(device.type, dtype=compute_dtype) if master else contextlib.nullcontext()
        with autocast:
            out = model(input_ids=ids, labels=ids, use_cache=False)
        loss = out.loss
        if not w.keep_logits:
            del out
        loss.backward()
        del loss
        optimizer.step()

    step()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    measure()  # before zero_grad: the step's gradients are still held, as at the engine's optimizer-step phase
    optimizer.zero_grad(set_to_none=True)


def main() -> int:
    request = json.loads(sys.stdin.read())
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # library prints never mix with the result line
    try:
        result = run(request)
    except CalculatorError as e:
        result = {"status": "unsupported", "message": str(e)}
    except Exception as e:  # reported to the parent as a failed run, with its type
        result = {"status": "error", "message": f"{type(e).__name__}: {e}"[:1000]}
    finally:
        sys.stdout = real_stdout
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
