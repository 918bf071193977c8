"""How long a trace profile takes to make, and what it predicts, for a few architectures.

    python benchmarks/profile_speed.py [--out benchmarks/results/profile_speed_after.txt] [--types TYPE ...]

The app shows a spinner while an unknown architecture's profile is made, and the estimate-vs-trace
sweep (benchmarks/profile_sweep.py) makes one per model type, so the seconds matter. For each type
(transformers' default config at full depth: `make_profile` sizes it down itself, as the app does)
it prints CPU seconds (`time.process_time`, what the profile costs whatever else shares the machine),
wall seconds, the depths and points traced, and a fingerprint of the fit: the profiled bytes
(activations + KV / state + logits + gradients) of each mode's largest phase at a workload off the
fit points (batch 3 x 1,536 tokens; inference decodes to 1,539 positions). Run once before a change
and once after; the fingerprints must agree and the seconds shrink.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calculator.profile import make_profile  # noqa: E402

TYPES = ("llama", "phi", "gemma2", "qwen3_moe", "mamba2", "bert")


def fingerprint(profile) -> dict[str, int]:
    out = {}
    for mode in profile.modes:
        phases = profile.phase_bytes(mode, batch=3, tokens=1536, context=1539)
        out[mode] = max(sum(comp.values()) for comp in phases.values())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="*", default=list(TYPES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch
    import transformers
    from transformers import AutoConfig

    lines = [f"make_profile per model type (default config, full depth; torch {torch.__version__}, transformers {transformers.__version__})",
             "type | cpu s | wall s | depths | points | fingerprint GiB (inference / lora / full) | check % | notes"]
    print(lines[0], flush=True)
    total_cpu = 0.0
    for mt in args.types:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = AutoConfig.for_model(mt).to_dict()
        c0, w0 = time.process_time(), time.monotonic()
        try:
            p = make_profile(cfg, max_seconds=900)
        except Exception as e:  # a row with the reason
            lines.append(f"{mt} | failed: {type(e).__name__}: {str(e)[:160]}")
            print(lines[-1], flush=True)
            continue
        cpu, wall = time.process_time() - c0, time.monotonic() - w0
        total_cpu += cpu
        fp = fingerprint(p)
        fps = " / ".join(f"{fp[m] / 2**30:.4f}" if m in fp else "-" for m in ("inference", "lora", "full"))
        checks = ", ".join(f"{k}={v:+.3f}" for k, v in sorted(p.check_error_pct.items()))
        lines.append(f"{mt} | {cpu:.1f} | {wall:.1f} | {p.traced_depths} | {len(p.points)} | {fps} | {checks} | {'; '.join(p.notes)[:160]}")
        print(lines[-1], flush=True)
    lines.append(f"total cpu s: {total_cpu:.1f}")
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
