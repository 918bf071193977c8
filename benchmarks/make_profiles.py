"""Make the trace profiles shipped in calculator/data/profiles/ (used where torch is not installed).

    python benchmarks/make_profiles.py [--catalog | --models ID ...] [--defaults TYPE ...] [--max-seconds 240]

--catalog profiles every bundled catalog config (configs with the same shapes share one file);
--defaults profiles transformers' default config of each model_type named (the architectures the
analytic formulas do not cover; a default config is what `AutoConfig.for_model(type)` builds, so
the profile applies to checkpoints with exactly that config). Each profile is traced with the
default settings (bf16, SDPA, LoRA r=16 all-linear, fp32 adapters) and written under the key
`calculator.profile.shipped_profile` looks up. A summary table goes to
benchmarks/results/profiles.md (seconds, traced depths, held-out error per phase).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calculator.catalog import catalog_config, catalog_entries  # noqa: E402
from calculator.profile import MODES, PROFILES_DIR, default_settings, kind_labels, make_profile, profile_key, save_profile  # noqa: E402

# Architectures people load from the Hub that the analytic families do not cover (issue 9's list);
# benchmarks/make_inventories.py ships inventories for the same list.
HUB_TYPES = (
    "phi", "phimoe", "falcon", "bloom", "mpt", "cohere", "cohere2", "glm4", "nemotron", "olmo", "olmoe", "granite", "granitemoe",
    "dbrx", "ernie4_5", "ernie4_5_moe", "exaone4", "seed_oss", "qwen3_next", "mamba", "mamba2", "falcon_mamba", "jamba",
    "recurrent_gemma", "lfm2", "falcon_h1", "granitemoehybrid", "bart", "deberta-v2", "modernbert", "whisper", "marian",
    "mllama", "qwen2_vl", "qwen2_5_vl", "llava", "idefics3", "smolvlm", "gemma3",
)
# Profiles also for two analytic families whose formulas issue 9 found wrong (checked against them).
DEFAULT_TYPES = (*HUB_TYPES, "smollm3", "starcoder2")
RESULTS = ROOT / "benchmarks" / "results" / "profiles.md"


def _configs(args: argparse.Namespace) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    if args.catalog or args.models:
        entries = sorted(catalog_entries().values(), key=lambda e: e.model_id)
        if args.models:  # in the order given (the most used first, when time is short)
            by_id = {e.model_id: e for e in entries}
            entries = [by_id[m] for m in args.models if m in by_id]
        for entry in entries:
            out.append((entry.model_id, catalog_config(entry)))
    for mt in args.defaults or ():
        out.append(default_config(mt))
    return out


def default_config(model_type: str) -> tuple[str, dict]:
    """(label, config dict) of transformers' default config for `model_type`."""
    from transformers import AutoConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f"{model_type} (transformers default)", AutoConfig.for_model(model_type).to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", action="store_true")
    parser.add_argument("--models", nargs="*", default=None, help="catalog ids to profile, in this order (instead of the whole catalog)")
    parser.add_argument("--defaults", nargs="*", default=None, help=f"model types (none given: {', '.join(DEFAULT_TYPES)})")
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--modes", nargs="*", default=list(MODES),
                        help="modes to trace (default all); a profile without a mode leaves it to the analytic formulas, and says so")
    args = parser.parse_args()
    if args.defaults == []:
        args.defaults = list(DEFAULT_TYPES)
    settings = default_settings()
    rows = 0
    done: set[str] = set()

    def record(row: str) -> None:
        nonlocal rows
        rows += 1
        print(row, flush=True)
        header = "" if RESULTS.exists() else (
            "# Shipped trace profiles\n\nMade by `python benchmarks/make_profiles.py` (torch 2.13 CPU, transformers 5.24, peft 0.21). "
            "Held-out error: profile vs a direct trace at (batch 2, 3,072 tokens, or the shortened equivalent), % of that phase's peak.\n\n"
            "| config | seconds | traced depths | layer kinds | held-out error |\n|---|---|---|---|---|\n"
        )
        with RESULTS.open("a") as f:
            f.write(header + row + "\n")

    for name, cfg in _configs(args):
        key = profile_key(cfg, settings, None)
        path = PROFILES_DIR / f"{key}.json"
        if key in done:
            continue
        done.add(key)
        if path.exists():
            print(f"{name}: already shipped ({path.name})", flush=True)
            continue
        started = time.monotonic()
        try:
            profile = make_profile(cfg, settings, max_seconds=args.max_seconds, modes=tuple(args.modes))
        except Exception as e:  # one architecture's failure is a row of the table, not the end of the run
            record(f"| {name} | failed | | | {type(e).__name__}: {str(e)[:150]} |")
            continue
        save_profile(profile, path)
        checks = ", ".join(f"{k} {v:+.2f}%" for k, v in sorted(profile.check_error_pct.items()))
        record(f"| {name} | {time.monotonic() - started:.0f} | {', '.join(map(str, profile.traced_depths))} | "
               f"{'; '.join(kind_labels(profile))} | {checks} |")
    print(json.dumps({"written": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
