"""`python -m calculator estimate MODEL ...` (and `verify`, `catalog`): a stable contract.

Bad input exits with status 2 and one line on stderr; nothing the user typed produces a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .bounds import MAX_HEADROOM_FRACTION
from .errors import CalculatorError, InvalidWorkloadError
from .stacks import STACK_NAMES
from .units import PRECISIONS, format_bytes, format_count
from .workload import (
    ATTENTION_IMPLS,
    CACHE_IMPLEMENTATIONS,
    CHECKPOINT_POLICIES,
    CPU_OFFLOADS,
    KERNELS,
    LORA_TARGETS,
    LOSS_IMPLS,
    MODES,
    OPTIMIZERS,
    PACKINGS,
    PARALLELISMS,
    PEFT_METHODS,
    QUANT_METHODS,
    TRAINER_NAMES,
    Workload,
)


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _bounded(low: float, high: float) -> Any:
    """An argparse type: a finite number within [low, high] (1e300 would overflow the arithmetic)."""

    def parse(text: str) -> float:
        value = _fraction(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, got {text!r}")
        return value

    return parse


def _lengths(text: str) -> tuple[int, ...]:
    items = [s for s in text.replace(" ", "").split(",") if s]
    if not items or len(items) > 4096:
        raise argparse.ArgumentTypeError(f"expected 1 to 4,096 comma-separated token counts, got {text[:40]!r}")
    return tuple(_positive_int(s) for s in items)


def _add_workload_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="Hugging Face repo id (org/name[@revision]), a catalog id, or a local folder with config.json")
    p.add_argument("--mode", choices=MODES, default="inference", help="inference, LoRA, QLoRA or full fine-tune (default: inference)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="weight precision (default: fp16)")
    p.add_argument("--quant-method", choices=QUANT_METHODS, default="auto",
                   help="how int8/int4/fp8 weights are stored (default auto: int8 -> bnb LLM.int8, int4 -> bnb NF4, fp8 -> per-channel fp8)")
    p.add_argument("--group-size", type=_positive_int, default=128, help="GPTQ/AWQ group size (default 128)")
    p.add_argument("--double-quant", action=argparse.BooleanOptionalAction, default=None,
                   help="bnb 4-bit double quantization (default: on for QLoRA, off otherwise)")
    p.add_argument("--context", type=_positive_int, default=None, help="tokens per sequence: prompt + generated, or training length (default 4096)")
    p.add_argument("--generated", type=_positive_int, default=0,
                   help="of the context, tokens generated (inference). 0 sizes the prefill for the whole context (default 0)")
    p.add_argument("--batch", type=_positive_int, default=1, help="sequences per step (per GPU when training data-parallel) (default 1)")
    p.add_argument("--kv-precision", choices=PRECISIONS, default=None, help="KV-cache dtype (default: the compute dtype)")
    p.add_argument("--cache", choices=CACHE_IMPLEMENTATIONS, default="dynamic",
                   help="generate's cache_implementation: dynamic (grows), static (preallocated), quantized (QuantizedCache at "
                        "--kv-precision int4 [default] / int8 / fp8) (default dynamic)")
    p.add_argument("--attention", choices=ATTENTION_IMPLS, default="sdpa", help="attention kernel: sdpa/flash (no seq x seq matrix) or eager")
    p.add_argument("--trainer", choices=TRAINER_NAMES, default=None,
                   help="training loop whose defaults fill every setting not given (calculator/trainers.py cites each); "
                        "default trl-sft for the fine-tuning modes; custom = exactly the settings given")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="training optimizer (default: the trainer's; adamw)")
    p.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="gradient (activation) checkpointing per decoder layer (default: the trainer's; TRL on)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None, help="checkpoint every k-th decoder layer only (transformers every_n_layers)")
    p.add_argument("--checkpoint-policy", choices=CHECKPOINT_POLICIES, default=None,
                   help="what a checkpointed layer keeps: full (its input only) or selective-op (torchtitan's op-level selective AC: "
                        "every other matmul output and the attention output too)")
    p.add_argument("--master-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="fp32 weights under bf16/fp16 autocast (HF Trainer/TRL on a model loaded in fp32: TRL's default for a model id; "
                        "--no-master-weights = model_init_kwargs={'dtype': 'bfloat16'})")
    p.add_argument("--loss", choices=LOSS_IMPLS, default=None,
                   help="loss implementation: full fp32 logits, torchtune chunked-output CE, TRL fused-linear head, Liger/Unsloth fused linear CE")
    p.add_argument("--loss-chunks", type=_positive_int, default=None, help="chunks of torchtune's chunked-output CE (default 8)")
    p.add_argument("--compile-loss", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile of the chunked loss (torchtune compile=True): it saves only the bf16 chunks")
    p.add_argument("--compile-layers", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile of each decoder layer (torchtune compile=True): min-cut saved set, traced for full fine-tuning")
    p.add_argument("--trained-fraction", type=_fraction, default=None, help="share of tokens with a label (completion/assistant-only loss), e.g. 0.3")
    p.add_argument("--activation-offload", action=argparse.BooleanOptionalAction, default=None, help="saved activations offloaded to CPU RAM")
    p.add_argument("--optimizer-in-backward", action=argparse.BooleanOptionalAction, default=None, help="step each parameter inside backward (torchtune)")
    p.add_argument("--fused-optimizer", action=argparse.BooleanOptionalAction, default=None, help="AdamW(fused=True): no step temporary")
    p.add_argument("--paged-optimizer", action=argparse.BooleanOptionalAction, default=None, help="bitsandbytes paged optimizer states")
    p.add_argument("--cpu-offload", choices=CPU_OFFLOADS, default=None, help="ZeRO/FSDP CPU offload: optimizer states (and parameters) in host RAM")
    p.add_argument("--peft-method", choices=PEFT_METHODS, default=None, help="adapter method for lora/qlora modes (default lora)")
    p.add_argument("--virtual-tokens", type=_positive_int, default=None, help="prompt tuning: virtual tokens (default 20)")
    p.add_argument("--oft-block-size", type=_positive_int, default=None, help="OFT: orthogonal block size (peft default 32)")
    p.add_argument("--vera-rank", type=_positive_int, default=None, help="VeRA: rank of the shared random projections (peft default 256)")
    p.add_argument("--packing", choices=PACKINGS, default=None, help="padded batches (to the longest in the batch), packed rows, or padding-free")
    p.add_argument("--sample-lengths", type=_lengths, default=None, metavar="N,N,...",
                   help="dataset sequence lengths in tokens (comma-separated) for padded / padding-free batches")
    p.add_argument("--sample-lengths-file", default=None, metavar="PATH",
                   help="a file of dataset sequence lengths (one per line, comma-separated or a JSON list; up to 1 MB), "
                   "summarised as 32 quantiles (calculator/lengths.py)")
    p.add_argument("--norm-kernel", choices=KERNELS, default=None, help="RMSNorm kernel: torch or liger")
    p.add_argument("--mlp-kernel", choices=KERNELS, default=None, help="SwiGLU kernel: torch or liger")
    p.add_argument("--lora-rank", type=_positive_int, default=None, help="LoRA rank r (default: the trainer's; 16)")
    p.add_argument("--lora-targets", choices=LORA_TARGETS, default=None, help="modules LoRA adapts (default all-linear)")
    p.add_argument("--adapter-precision", choices=("fp32", "bf16", "fp16"), default=None,
                   help="LoRA adapter dtype (default fp32, peft's autocast_adapter_dtype=True; torchtune/QLoRA bf16)")
    p.add_argument("--keep-logits", action="store_true", help="training loop keeps model outputs (logits) alive through backward")
    p.add_argument("--runtime", choices=("transformers", "vllm"), default="transformers", help="inference runtime (default transformers generate)")
    p.add_argument("--gpu-memory-utilization", type=_fraction, default=None, help="vLLM's share of each GPU (default 0.9)")
    p.add_argument("--vllm-version", default="", metavar="X.Y",
                   help="vLLM release whose start-up budget is modelled (0.33, 0.32, 0.19, 0.10, 0.7; default: the current, 0.33)")
    p.add_argument("--max-model-len", type=_positive_int, default=None, help="vLLM --max-model-len (same as --context)")
    p.add_argument("--max-num-seqs", type=_positive_int, default=None, help="vLLM --max-num-seqs (default: vLLM's for the GPU)")
    p.add_argument("--max-num-batched-tokens", type=_positive_int, default=None,
                   help="vLLM --max-num-batched-tokens, the profiled batch (default: vLLM's for the GPU)")
    p.add_argument("--enforce-eager", action="store_true", help="vLLM --enforce-eager: no CUDA graphs")
    p.add_argument("--kv-cache-dtype", choices=("auto", "fp8"), default=None, help="vLLM --kv-cache-dtype (fp8 = --kv-precision fp8)")
    p.add_argument("--tensor-parallel-size", type=_positive_int, default=None, help="vLLM --tensor-parallel-size (same as --gpus)")
    p.add_argument("--gpus", type=_positive_int, default=None, help="number of GPUs (default 1)")
    p.add_argument("--parallelism", choices=PARALLELISMS, default="auto",
                   help="multi-GPU strategy: tp (inference), ddp/zero1/zero2/zero3/fsdp (training); auto = tp or fsdp")
    p.add_argument("--stack", choices=STACK_NAMES, default="current",
                   help="runtime versions: current (default), transformers-4.35 (tuple KV cache), torch-1.12 (also eager CUDA kernels)")
    p.add_argument("--speech-codec", action=argparse.BooleanOptionalAction, default=True,
                   help="TTS models: count the audio codec and its waveform decode on this GPU (default: on)")
    p.add_argument("--audio-share", type=_fraction, default=0.0,
                   help="DualFFN models (higgs-audio): share of the prompt / training tokens that are audio tokens, 0 to 1 (default 0)")
    p.add_argument("--headroom", type=_bounded(0.0, MAX_HEADROOM_FRACTION), default=0.0,
                   help="extra fraction on top of the peak when ranking GPUs, e.g. 0.1 for production traffic")
    p.add_argument("--provider", action="append", default=[], metavar="NAME",
                   help="rank only this provider's prices (repeatable; prefix match, e.g. --provider spheron --provider runpod)")
    p.add_argument("--offline", action="store_true", help="never contact the Hub; use the catalog and the on-disk cache")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")


# vLLM engine flags: given with the transformers runtime they would change nothing, and a flag that is
# silently ignored is a wrong answer to the question asked.
_VLLM_ONLY_FLAGS = (("vllm_version", "--vllm-version"), ("max_num_seqs", "--max-num-seqs"),
                    ("max_num_batched_tokens", "--max-num-batched-tokens"), ("enforce_eager", "--enforce-eager"),
                    ("gpu_memory_utilization", "--gpu-memory-utilization"), ("kv_cache_dtype", "--kv-cache-dtype"))


def _one_value(args: argparse.Namespace, a: str, a_flag: str, b: str, b_flag: str) -> Any:
    """The value of an input that has two spellings (a vLLM flag and the calculator's own); both given and different is an error."""
    va, vb = getattr(args, a, None), getattr(args, b, None)
    if va is not None and vb is not None and va != vb:
        raise InvalidWorkloadError(f"{a_flag} {va} and {b_flag} {vb} name the same setting with two values; give one of them.")
    return va if va is not None else vb


def _refuse_ignored_flags(args: argparse.Namespace) -> None:
    given = [flag for name, flag in _VLLM_ONLY_FLAGS if getattr(args, name, None) not in (None, False, "")]
    if given and args.runtime != "vllm":
        raise InvalidWorkloadError(f"{', '.join(given)} {'is a vLLM flag' if len(given) == 1 else 'are vLLM flags'}: "
                                   "add --runtime vllm (the transformers runtime has no such setting).")
    for name, flag, method in (("oft_block_size", "--oft-block-size", "oft"), ("vera_rank", "--vera-rank", "vera")):
        if getattr(args, name, None) is not None and args.peft_method != method:
            raise InvalidWorkloadError(f"{flag} sizes {method.upper()} adapters: add --peft-method {method} (with --mode lora or qlora).")
    if args.trainer not in (None, "custom") and args.mode == "inference":
        raise InvalidWorkloadError(f"--trainer {args.trainer} sets up a training loop; inference has none: add --mode lora, qlora or full, "
                                   "or leave out --trainer.")


def workload_from_args(args: argparse.Namespace, *, default_trainer: str | None = None) -> Workload:
    """The trainer's settings for the mode, with every option given on the command line on top.
    Without --trainer the fine-tuning modes assume TRL's SFTTrainer (`trainers.DEFAULT_TRAINER`).
    Raises InvalidWorkloadError for flags that contradict each other or would change nothing."""
    from .trainers import DEFAULT_TRAINER, preset_workload

    _refuse_ignored_flags(args)
    trainer = args.trainer or (default_trainer or DEFAULT_TRAINER if args.mode != "inference" else "custom")
    # Options left out are None: the Workload's (or the trainer's) default applies.
    kv_precision = _one_value(args, "kv_cache_dtype", "--kv-cache-dtype", "kv_precision", "--kv-precision")
    kv_precision = None if kv_precision == "auto" else kv_precision
    context = _one_value(args, "max_model_len", "--max-model-len", "context", "--context")
    num_gpus = _one_value(args, "tensor_parallel_size", "--tensor-parallel-size", "gpus", "--gpus")
    return preset_workload(
        trainer,
        mode=args.mode, precision=args.precision, quant_method=args.quant_method, quant_group_size=args.group_size,
        double_quant=args.double_quant, context_length=context, generated_tokens=args.generated,
        batch_size=args.batch, vllm_version=args.vllm_version, max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens, enforce_eager=args.enforce_eager,
        kv_cache_precision=kv_precision, cache_implementation=args.cache, attention=args.attention, gradient_checkpointing=args.grad_checkpointing,
        optimizer=args.optimizer, master_weights=args.master_weights, lora_rank=args.lora_rank, lora_targets=args.lora_targets,
        adapter_precision=args.adapter_precision, keep_logits=args.keep_logits or None, runtime=args.runtime,
        gpu_memory_utilization=args.gpu_memory_utilization, num_gpus=num_gpus, parallelism=args.parallelism,
        audio_token_share=args.audio_share, stack=args.stack, speech_codec=args.speech_codec,
        loss_impl=args.loss, loss_chunks=args.loss_chunks, compile_loss=args.compile_loss, compile_layers=args.compile_layers,
        trained_token_fraction=args.trained_fraction,
        checkpoint_every=args.checkpoint_every, checkpoint_policy=args.checkpoint_policy, activation_offload=args.activation_offload,
        optimizer_in_backward=args.optimizer_in_backward, fused_optimizer=args.fused_optimizer, paged_optimizer=args.paged_optimizer,
        cpu_offload=args.cpu_offload, peft_method=args.peft_method, num_virtual_tokens=args.virtual_tokens, packing=args.packing,
        oft_block_size=args.oft_block_size, vera_rank=args.vera_rank,
        sample_lengths=_sample_lengths(args), norm_kernel=args.norm_kernel, mlp_kernel=args.mlp_kernel,
    )


def _sample_lengths(args: argparse.Namespace) -> tuple[int, ...] | None:
    """--sample-lengths as given, or --sample-lengths-file read (bounded) and summarised."""
    path = getattr(args, "sample_lengths_file", None)
    if path is None:
        return args.sample_lengths
    from .lengths import MAX_TEXT_CHARS, parse_lengths, summarise_lengths

    if args.sample_lengths is not None:
        raise InvalidWorkloadError("give --sample-lengths or --sample-lengths-file, not both.")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_CHARS + 1)
    except OSError as exc:
        raise InvalidWorkloadError(f"--sample-lengths-file: cannot read {path!r} ({exc.strerror or exc}).") from exc
    lengths = parse_lengths(data.decode("utf-8", errors="replace"))
    if not lengths:
        raise InvalidWorkloadError(f"--sample-lengths-file: {path!r} holds no lengths.")
    return summarise_lengths(lengths)


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage on a bad option; the contract is one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m calculator", description="Peak GPU memory and the cheapest GPUs for a Hugging Face model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    est = sub.add_parser("estimate", help="estimate peak VRAM and rank GPU configurations by price")
    _add_workload_options(est)
    ver = sub.add_parser("verify", help="check the estimate: trace the real architecture on CPU (--trace) or measure on a GPU (--live)")
    _add_workload_options(ver)
    level = ver.add_mutually_exclusive_group()
    level.add_argument("--trace", action="store_true", help="FakeTensor trace of the real model on CPU (no GPU, no weights) [default]")
    level.add_argument("--live", action="store_true", help="run on the local GPU with random weights and measure")
    ver.add_argument("--timeout", type=_bounded(1.0, 86_400.0), default=600.0, help="seconds before the verification run is stopped (default 600)")
    sub.add_parser("catalog", help="list the bundled models (work offline)")
    est.add_argument("--profile", action="store_true",
                     help="for architectures outside the analytic families: trace a sized-down copy (torch; ~1 min, cached) for activations/KV")
    prof = sub.add_parser("profile", help="make (or show the cached) trace profile of a model: per-layer memory terms fitted from traces")
    _add_workload_options(prof)
    prof.add_argument("--timeout", type=_bounded(1.0, 86_400.0), default=300.0, help="seconds before profiling is stopped (default 300)")
    return parser


def _text_report(data: dict[str, Any]) -> str:
    lines = [
        f"{data['model']}  ({format_count(data['params'])} parameters, {data['params_source']})",
        f"counted from: {data['counted_from']}",
        f"workload: {data['workload']['mode']}, {data['workload']['precision']} ({data['workload']['weight_format']}), "
        f"context {data['workload']['context_length']:,}, batch {data['workload']['batch_size']}, {data['workload']['num_gpus']} GPU(s)",
        f"peak VRAM{' per GPU' if data['per_gpu'] else ''}: {format_bytes(data['total_bytes'], 'GiB', 2)} on the device "
        f"({format_bytes(data['total_bytes'], 'GB', 2)}); PyTorch allocated {format_bytes(data['torch_allocated_bytes'], 'GiB', 2)}; "
        f"peak during {data['peak_phase']}",
        "",
    ]
    trainer = data.get("trainer")
    if trainer:
        if trainer.get("problem"):
            lines.insert(1, f"trainer problem: {trainer['problem']}")
        lines.insert(-1, f"trainer: {trainer['name']} (loss {trainer['loss']}, gradient checkpointing "
                         f"{'on' if trainer['gradient_checkpointing'] else 'off'}, optimizer {trainer['optimizer']}, fp32 weights "
                         f"{'on' if trainer['fp32_weights'] else 'off'}; --trainer custom sizes exactly the options given)")
    if data.get("host_bytes"):
        lines.insert(-1, f"host RAM for offloaded tensors: {format_bytes(data['host_bytes'], 'GiB', 2)}")
    for name, value in data["breakdown"].items():
        if value:
            lines.append(f"  {data['breakdown_labels'][name]:<32} {format_bytes(value, 'GiB', 2):>12}")
    if data.get("gpu_ranking"):
        lines += ["", "cheapest GPU configurations that fit:"]
        shown = [c for c in data["gpu_ranking"] if c["fits"]][:8]
        for i, c in enumerate(shown, 1):
            price = f"${c['total_usd_per_hour']:.2f}/hr ({c['provider']})" if c["total_usd_per_hour"] is not None else "no price"
            lines.append(f"  {i:>2}. {c['count']}x {c['gpu']:<28} {price:<40} {c['utilisation'] * 100:5.1f}% used")
            if c.get("vllm_max_concurrent_sequences") is not None:
                lines.append(f"      vLLM: {c['vllm_max_concurrent_sequences']:,} sequences of {data['workload']['context_length']:,} tokens at once, "
                             f"or {c['vllm_max_context_at_batch']:,} tokens each for {data['workload']['batch_size']} sequences")
    ranked = [c for c in data.get("gpu_ranking", []) if c.get("vllm_starts") is not None]
    # The cheapest that start, then the closest that do not (with the smallest change that starts them).
    vllm_rows = [c for c in ranked if c["fits"]][:8] + [c for c in data.get("vllm_not_starting", []) if c.get("vllm_reason")][:3]
    if vllm_rows:
        lines += ["", "will `vllm serve` start? (per ranked configuration)"]
        for c in vllm_rows:
            head = f"  {c['count']}x {c['gpu']:<28}"
            if c["vllm_starts"]:
                lines.append(f"{head} starts: {c['vllm_kv_tokens']:,} KV tokens, {c['vllm_max_concurrency']:.2f}x concurrency at "
                             f"{data['workload']['context_length']:,} tokens")
                lines.append(f"      {c['vllm_command']}")
            else:
                lines.append(f"{head} does not start: {c['vllm_reason']}")
                if c.get("vllm_fix"):
                    f = c["vllm_fix"]
                    lines.append(f"      smallest change: {f['description']} -> {f['kv_tokens']:,} KV tokens, {f['max_concurrency']:.2f}x")
                    lines.append(f"      {f['command']}")
            sg = c.get("sglang")
            if sg:
                state = f"{sg['max_total_num_tokens']:,} KV tokens ({sg['max_concurrency']:.2f}x)" if sg["starts"] else f"does not start: {sg['reason']}"
                lines.append(f"      SGLang {sg['version']}: mem_fraction_static {sg['mem_fraction_static']:.3f}, {state}")
    for note in data.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _estimate(args: argparse.Namespace) -> int:
    from .report import build_plan, estimate_to_dict, provider_price_book
    from .resolve import resolve_model

    workload = workload_from_args(args)
    resolved = resolve_model(args.model, offline=args.offline)
    prices = provider_price_book(tuple(args.provider)) if args.provider else None
    spec = resolved.spec
    if args.profile and spec.counted_by == "inventory":
        from .profile import with_profile

        print("making a trace profile of a sized-down copy (about a minute; cached afterwards)...", file=sys.stderr)
        spec = with_profile(spec, workload)
    plan = build_plan(spec, workload, headroom_fraction=args.headroom, prices=prices)
    data = estimate_to_dict(plan)
    data["model_source"] = resolved.source
    data["model_source_detail"] = resolved.detail
    # The checkpoint the numbers were computed from (Hub models; None for the catalog and local folders).
    data["model_revision"], data["model_sha"] = resolved.revision, resolved.sha
    data["inputs"] |= {"headroom_fraction": args.headroom, "providers": list(args.provider)}
    print(json.dumps(data, indent=2) if args.json else _text_report(data))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .resolve import resolve_model

    # The trace runs the plain loop (model(...).loss.backward(), foreach AdamW): verify it unless a trainer is named.
    workload = workload_from_args(args, default_trainer="custom")
    resolved = resolve_model(args.model, offline=args.offline)
    from .verify import run_verification, verification_text

    data = run_verification(resolved.spec, workload, level="live" if args.live else "trace", timeout=args.timeout)
    print(json.dumps(data, indent=2) if args.json else verification_text(data))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from .profile import get_profile, kind_labels, settings_for
    from .resolve import resolve_model

    workload = workload_from_args(args)
    resolved = resolve_model(args.model, offline=args.offline)
    profile = get_profile(resolved.spec.raw_config, settings_for(workload), max_seconds=args.timeout,
                          on_progress=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(profile.to_json(), indent=2))
        return 0
    print(f"{args.model}: profile of {profile.model_type} ({', '.join(kind_labels(profile))}), traced at depths "
          f"{', '.join(map(str, profile.traced_depths))} in {profile.seconds:.0f} s")
    for key, err in sorted(profile.check_error_pct.items()):
        print(f"  held-out point {key}: {err:+.2f}% of the phase peak")
    for note in profile.notes:
        print(f"note: {note}")
    return 0


def _catalog(_: argparse.Namespace) -> int:
    from .catalog import catalog_entries

    for entry in sorted(catalog_entries().values(), key=lambda e: e.model_id.lower()):
        print(f"{entry.model_id:<50} {entry.task}")
    return 0


def _quiet_third_party() -> None:
    """transformers (the inventory and trace paths) logs config problems at ERROR and warns about
    deprecated keys while it reads a hostile config; huggingface_hub warns too. The contract is one
    stderr line, ours, so both stay quiet unless the operator sets their verbosity."""
    if not os.environ.get("TRANSFORMERS_VERBOSITY"):
        os.environ["TRANSFORMERS_VERBOSITY"] = "critical"
    warnings.filterwarnings("ignore", module=r"(transformers|huggingface_hub)(\.|$)")


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_third_party()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"estimate": _estimate, "verify": _verify, "catalog": _catalog, "profile": _profile}[args.command](args)
    except CalculatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (RecursionError, MemoryError, OverflowError):
        # Input the validators missed must still give one line, not a traceback with server paths.
        print("error: the input is too large or too deeply nested to process: check the model's files and the numbers given", file=sys.stderr)
        return 2
