"""Reserved / allocated of the caching-allocator replay for a few length distributions.

    nice -n 10 python benchmarks/allocator_reserve.py [--out benchmarks/results/allocator_reserve.txt]

For Llama-3.2-3B (catalog config) fine-tuned at batch 4, each row prints what the estimate shows
(allocated, the allocator cache, reserved / allocated, and `added`: the cache above the flat 5%)
and what the replay of its training steps through `calculator.allocator` gives, each as growth
over the fixed-shape replay: `capped`, the least card the steps run in at 2 MiB resolution
(`smallest_capacity`: cached whole segments released on a failed cudaMalloc, as PyTorch does;
the estimate searches it to 1/16 of the range, so `added` is a little above it); `in use`, the
peak of partly used segments on an unbounded card (the search's upper bound); `unbounded`,
max_memory_reserved on a card with room to spare. Then how the estimate's figure moves with the
number of replayed steps (it replays `VARIABLE_LENGTH_STEPS`), the fixed-shape replay's own
reserve (against the flat 5%), and the time an estimate spends replaying.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calculator import allocator  # noqa: E402
from calculator.estimate import estimate  # noqa: E402
from calculator.resolve import resolve_catalog  # noqa: E402
from calculator.units import GiB  # noqa: E402
from calculator.workload import Workload  # noqa: E402

E = sys.modules["calculator.estimate"]
MODEL = "meta-llama/Llama-3.2-3B-Instruct"
TIME_BUDGET_S = 600


def distributions(context: int) -> dict[str, tuple[int, ...]]:
    rng = random.Random(7)
    return {
        "fixed (no distribution)": (),
        "narrow: 90-100% of the context": tuple(range(context * 9 // 10, context + 1, max(context // 200, 1))),
        "uniform 64..context": tuple(range(64, context + 1, max(context // 64, 1))),
        "log-normal, median 400 (chat-like)": tuple(min(context, max(16, int(rng.lognormvariate(6.0, 0.8)))) for _ in range(2000)),
        "short with a rare longest (1 in 500)": (*(100 + i for i in range(499)), context),
    }


def replay_figures(spec, w: Workload, steps: int) -> tuple[int, int, int]:
    """(in use, capped, unbounded) growth over the fixed-shape replay, in bytes, for `steps` varied steps."""
    old = E.VARIABLE_LENGTH_STEPS
    E.VARIABLE_LENGTH_STEPS = steps
    try:
        shapes = E._step_shapes(w)
    finally:
        E.VARIABLE_LENGTH_STEPS = old
    c = 2
    plan = None
    if w.mode == "lora":
        plan = E.memory.AdapterPlan(names=E.memory.lora_target_names(spec, w.lora_targets), rank=w.lora_rank,
                                    adapter_bytes=4 if w.adapter_precision == "fp32" else 2)
    layers = spec.num_hidden_layers

    def step(b: int, s: int) -> allocator.StepTensors:
        loss = E._loss_bytes(spec, w, tokens=b * s, c=c, hidden_bytes=c, head_weight_bytes=c)
        return E._replayed_step(spec, w, b=b, s=s, c=c, layers=layers, loss=loss, plan=plan, input_bytes=c)

    def events(steps_: tuple[allocator.StepTensors, ...]) -> list[allocator.Event]:
        out: list[allocator.Event] = []
        for st in steps_:
            out += allocator.step_events(st, first_handle=len(out))
        return out

    varied_steps = tuple(step(b, s) for b, s in shapes)
    fixed_steps = (step(*shapes[-1]),) * 2
    v, f = allocator.replay_steps(varied_steps), allocator.replay_steps(fixed_steps)
    in_use = (v.peak_in_use_bytes - v.peak_allocated_bytes) - (f.peak_in_use_bytes - f.peak_allocated_bytes)
    capped = (allocator.smallest_capacity(events(varied_steps)) - v.peak_allocated_bytes) - (
        allocator.smallest_capacity(events(fixed_steps)) - f.peak_allocated_bytes)
    return in_use, capped, v.reserve_bytes - f.reserve_bytes


def estimate_added(spec, w: Workload, steps: int) -> int:
    """The estimate's allocator cache above the flat 5%, replaying `steps` varied steps."""
    old = E.VARIABLE_LENGTH_STEPS
    E.VARIABLE_LENGTH_STEPS = steps
    try:
        b = estimate(spec, w).breakdown
    finally:
        E.VARIABLE_LENGTH_STEPS = old
    return b.allocator_reserve_bytes - int(b.torch_allocated_bytes * E.RESERVED_FRACTION_TRAINING)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "allocator_reserve.txt"))
    args = parser.parse_args()
    spec = resolve_catalog(MODEL).spec
    started = time.monotonic()
    lines = [f"Allocator reserve under variable-length batches: {MODEL}, bf16, batch 4, trainer 'custom' (HF Trainer loop, full logits).",
             f"The estimate replays {E.VARIABLE_LENGTH_STEPS} varied steps, then the longest; GiB = 2^30 bytes.", ""]
    setups = [
        ("LoRA r16 all-linear, checkpointing on, 2,048 tokens", dict(mode="lora", gradient_checkpointing=True, context_length=2048)),
        ("LoRA r16 all-linear, checkpointing off, 2,048 tokens", dict(mode="lora", context_length=2048)),
        ("full fine-tune, checkpointing on, 4,096 tokens", dict(mode="full", gradient_checkpointing=True, context_length=4096)),
    ]
    for title, kw in setups:
        lines += [f"## {title}", "",
                  f"{'distribution':40} {'packing':12} {'allocated':>10} {'cache':>8} {'res/alloc':>9} {'added':>7} {'capped':>7} {'in use':>7} "
                  f"{'unbounded':>9}"]
        for name, lengths in distributions(kw["context_length"]).items():
            for packing in ("padded", "padding-free") if lengths else ("padded",):
                if time.monotonic() - started > TIME_BUDGET_S:
                    lines.append("(time budget reached)")
                    break
                w = Workload(precision="bf16", batch_size=4, sample_lengths=lengths, packing=packing, **kw)
                b = estimate(spec, w).breakdown
                in_use, capped, unbounded = replay_figures(spec, w, E.VARIABLE_LENGTH_STEPS) if lengths else (0, 0, 0)
                added = b.allocator_reserve_bytes - int(b.torch_allocated_bytes * E.RESERVED_FRACTION_TRAINING)
                lines.append(f"{name:40} {packing:12} {b.torch_allocated_bytes / GiB:10.2f} {b.allocator_reserve_bytes / GiB:8.2f} "
                             f"{b.torch_reserved_bytes / b.torch_allocated_bytes:9.3f} {added / GiB:7.2f} {capped / GiB:7.2f} {in_use / GiB:7.2f} "
                             f"{unbounded / GiB:9.2f}")
        lines.append("")
    lines += ["## The estimate's `added` (GiB) against the number of varied steps replayed", "",
              f"{'setup / distribution':72} {'4':>6} {'8':>6} {'16':>6} {'32':>6} {'64':>6}"]
    for title, kw in setups[:1] + setups[2:]:
        for name, lengths in list(distributions(kw["context_length"]).items())[1:]:
            w = Workload(precision="bf16", batch_size=4, sample_lengths=lengths, **kw)
            row = [estimate_added(spec, w, n) / GiB for n in (4, 8, 16, 32, 64)]
            lines.append(f"{(title.split(',')[0] + ' / ' + name):72} " + " ".join(f"{x:6.2f}" for x in row))
    lines.append("")
    w = Workload(mode="lora", precision="bf16", batch_size=4, gradient_checkpointing=True, context_length=2048)
    fixed = allocator.replay_steps((E._replayed_step(spec, w, b=4, s=2048, c=2, layers=spec.num_hidden_layers,
                                                      loss=E._loss_bytes(spec, w, tokens=8192, c=2, hidden_bytes=2, head_weight_bytes=2),
                                                      plan=None, input_bytes=2),) * 4)
    lines += ["## Fixed shapes", "",
              f"Four identical steps (LoRA-sized tensors, 2,048 tokens): reserved / allocated of the replayed tensors "
              f"{fixed.peak_reserved_bytes / fixed.peak_allocated_bytes:.4f}, {fixed.segments} segments. The replay does not reproduce "
              "the flat 5% the estimate keeps for fixed shapes (that figure stands for what the model leaves out), so it is only "
              "used for the growth under variable lengths.", ""]
    lengths = distributions(2048)["log-normal, median 400 (chat-like)"]
    timings = []
    for kw in (dict(mode="lora", gradient_checkpointing=True), dict(mode="full")):
        allocator.replay_steps.cache_clear()
        w = Workload(precision="bf16", batch_size=4, context_length=2048, sample_lengths=lengths, **kw)
        t0 = time.perf_counter()
        estimate(spec, w)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        estimate(spec, dataclasses.replace(w))
        warm = time.perf_counter() - t0
        timings.append(f"{kw['mode']}: first estimate {cold * 1000:.0f} ms, repeated {warm * 1000:.1f} ms (replays cached)")
    lines += ["## Time an estimate spends on the replay (28 layers, this 2-core machine, shared)", "", *timings, ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
