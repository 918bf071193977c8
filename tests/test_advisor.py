"""The reverse question: limits found by binary search sit exactly on the fit boundary."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calculator import advisor
from calculator.estimate import estimate
from calculator.gpus import get_gpu
from calculator.resolve import resolve_model
from calculator.units import GiB
from calculator.workload import Workload

LLAMA_8B = resolve_model("meta-llama/Llama-3.1-8B").spec  # 32 layers, 8 KV heads x 128, max 131,072 tokens
RTX_4090 = get_gpu("rtx-4090").usable_bytes  # 24,564 MiB (nvidia-smi)


def total(w: Workload) -> int:
    return estimate(LLAMA_8B, w).total_bytes


def test_max_context_fits_and_one_more_token_does_not():
    w = Workload()
    n = advisor.max_context_length(LLAMA_8B, w, usable_bytes=RTX_4090)
    assert 1 < n < LLAMA_8B.max_position_embeddings
    assert total(replace(w, context_length=n)) <= RTX_4090
    assert total(replace(w, context_length=n + 1)) > RTX_4090
    # Hand check: fp16 weights are ~15 GiB, so ~8 GiB is left for K/V at 128 KiB per token
    # (32 layers x 8 kv heads x 128 dims x 2 (K,V) x 2 bytes): tens of thousands of tokens.
    assert estimate(LLAMA_8B, w).kv_bytes_per_token == 32 * 8 * 128 * 2 * 2
    assert 30_000 < n < 70_000


def test_max_context_with_headroom_is_smaller():
    w = Workload()
    plain = advisor.max_context_length(LLAMA_8B, w, usable_bytes=RTX_4090)
    margin = advisor.max_context_length(LLAMA_8B, w, usable_bytes=RTX_4090, headroom_fraction=0.10)
    assert margin < plain
    assert total(replace(w, context_length=margin)) * 1.10 <= RTX_4090 + 1
    assert total(replace(w, context_length=margin + 1)) * 1.10 > RTX_4090


def test_max_context_capped_at_model_maximum_and_zero_when_nothing_fits():
    huge = 10_000 * GiB
    assert advisor.max_context_length(LLAMA_8B, Workload(), usable_bytes=huge) == LLAMA_8B.max_position_embeddings
    assert advisor.max_context_length(LLAMA_8B, Workload(), usable_bytes=huge, upper=1000) == 1000
    assert advisor.max_context_length(LLAMA_8B, Workload(), usable_bytes=1 * GiB) == 0


def test_max_batch_fits_and_one_more_does_not():
    w = Workload(context_length=4096)
    b = advisor.max_batch_size(LLAMA_8B, w, usable_bytes=RTX_4090)
    assert b >= 1
    assert total(replace(w, batch_size=b)) <= RTX_4090 < total(replace(w, batch_size=b + 1))


def test_equal_fits():
    w = Workload()
    need = total(w)
    assert advisor.fits(LLAMA_8B, w, usable_bytes=need)
    assert not advisor.fits(LLAMA_8B, w, usable_bytes=need - 1)


def test_tensor_parallel_that_cannot_split_fits_nothing():
    # 32 attention heads do not split over 3 GPUs.
    w = replace(Workload(), num_gpus=3, parallelism="tp")
    assert advisor.tp_problem(LLAMA_8B, w)
    assert not advisor.fits(LLAMA_8B, w, usable_bytes=10_000 * GiB)
    assert advisor.max_context_length(LLAMA_8B, w, usable_bytes=10_000 * GiB) == 0


def test_fit_limits_cover_the_table_and_agree_with_fits():
    w = Workload(mode="lora", context_length=2048)
    limits = advisor.fit_limits(LLAMA_8B, w, usable_bytes=RTX_4090)
    cells = [(f.precision, f.mode) for f in limits]
    # The table's cells with a number of their own (report.table_cell_absent): LoRA on an 8-bit base, QLoRA
    # on a 4-bit one; full only at fp16.
    assert cells == [("fp16", "inference"), ("fp16", "lora"), ("fp16", "full"), ("int8", "inference"), ("int8", "lora"),
                     ("int4", "inference"), ("int4", "qlora")]
    for f in limits:
        assert f.fits == (f.required_bytes <= RTX_4090)
        assert f.required_bytes == total(f.workload)
        if f.max_context_length and not f.context_capped:
            assert total(replace(f.workload, context_length=f.max_context_length + 1)) > RTX_4090
        if f.max_batch_size:
            assert total(replace(f.workload, batch_size=f.max_batch_size)) <= RTX_4090


def test_no_suggestions_when_it_fits():
    assert advisor.suggest_changes(LLAMA_8B, Workload(), usable_bytes=RTX_4090) == []


def test_suggestions_fit_and_come_least_disruptive_first():
    w = Workload(context_length=131_072)  # fp16 inference at the model's full context: ~31 GiB
    changes = advisor.suggest_changes(LLAMA_8B, w, usable_bytes=RTX_4090)
    assert changes and all(c.fits for c in changes)
    kinds = [c.kind for c in changes]
    assert kinds == sorted(kinds, key=advisor.CHANGE_ORDER.index)
    assert kinds[0] == "more_gpus"  # 2 GPUs, tensor parallel, fit without touching the job
    assert "2 GPUs" in changes[0].description
    assert "shorter_context" in kinds
    shorter = next(c for c in changes if c.kind == "shorter_context")
    assert shorter.workload.context_length == advisor.max_context_length(LLAMA_8B, w, usable_bytes=RTX_4090, upper=131_071)
    for c in changes:
        assert c.required_bytes == total(c.workload) <= RTX_4090


def test_lower_precision_is_the_next_one_that_fits():
    small = get_gpu("rtx-3060-12gb").usable_bytes  # 12 GiB: fp16 weights alone (15 GiB) do not fit
    changes = advisor.suggest_changes(LLAMA_8B, Workload(), usable_bytes=small)
    lower = next(c for c in changes if c.kind == "lower_precision")
    assert lower.workload.precision == "fp8" and "fp8" in lower.description
    assert total(lower.workload) <= small < total(Workload())


def test_qlora_and_checkpointing_are_offered_for_lora():
    w = Workload(mode="lora", precision="bf16", context_length=4096)
    changes = advisor.suggest_changes(LLAMA_8B, w, usable_bytes=RTX_4090)
    kinds = {c.kind for c in changes}
    assert kinds <= set(advisor.CHANGE_ORDER)
    for c in changes:
        assert c.fits and c.required_bytes <= RTX_4090


def test_combined_change_when_no_single_change_is_enough():
    spec = resolve_model("meta-llama/Llama-3.1-70B").spec
    changes = advisor.suggest_changes(spec, Workload(mode="full", precision="bf16"), usable_bytes=RTX_4090)
    assert len(changes) == 1 and changes[0].kind == "combined"
    assert "gradient checkpointing" in changes[0].description


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_on_gpus_matches_ranking_convention(count):
    w = advisor.on_gpus(Workload(), count)
    assert w.num_gpus == count and w.parallelism == "auto"
