"""The precision x mode table: every cell computes its own precision and mode, or says why it has none.

The 8-bit QLoRA and LoRA cells once showed the 4-bit NF4 number (the QLoRA mode forced NF4 whatever
the precision). Now INT8 · LoRA is LoRA on an LLM.int8 base with peft's k-bit preparation, and the
cells without a configuration of their own show "—" with the reason in the caption."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from calculator import memory, report
from calculator.estimate import estimate
from calculator.quantization import weight_format
from calculator.resolve import resolve_model
from calculator.units import format_bytes
from calculator.workload import Workload
from ui.state import DEFAULT_MODEL, MAIN_PARAMS, main_workload, reconcile_main

LLAMA_8B = resolve_model("meta-llama/Llama-3.1-8B").spec

# Llama-3.1-8B, 32 layers. LLM.int8 linear = int8 weight + one fp32 scale per output row (bitsandbytes Int8Params CB + SCB):
#   elements per layer: q,o 4096x4096 x2 + k,v 4096x1024 x2 + gate,up,down 4096x14336 x3 = 218,103,808
#   scales per layer: 4 bytes x (4096 + 1024 + 1024 + 4096 + 14336 + 14336 + 4096) = 172,032
INT8_LINEARS = 32 * (218_103_808 + 172_032)  # 6,984,826,880
# Not quantized (the LM head is skipped by transformers' get_keys_to_not_convert): embed_tokens + lm_head
# 2 x 128256 x 4096 + norms (32 layers x 2 + 1 final) x 4096 = 1,050,939,392 parameters.
KEPT_PARAMS = 2 * 128_256 * 4096 + 65 * 4096


def test_int8_lora_base_is_llm_int8_with_peft_kbit_upcast():
    w = Workload(mode="lora", precision="int8")
    fmt = weight_format(LLAMA_8B, w)
    assert (fmt.name, fmt.bits) == ("bnb-int8", 8)
    assert memory.weight_bytes(LLAMA_8B, fmt) == INT8_LINEARS + 2 * KEPT_PARAMS == 9_086_705_664
    # peft 0.21.2 prepare_model_for_kbit_training: every bf16 parameter that is not quantized -> fp32.
    assert memory.kbit_upcast_bytes(LLAMA_8B, fmt) == 2 * KEPT_PARAMS
    assert estimate(LLAMA_8B, w).breakdown.weights_bytes == INT8_LINEARS + 4 * KEPT_PARAMS == 11_188_584_448


def test_qlora_at_int8_is_an_8bit_base_not_nf4():
    fmt = weight_format(LLAMA_8B, Workload(mode="qlora", precision="int8"))
    assert (fmt.name, fmt.bits) == ("bnb-int8", 8)
    assert weight_format(LLAMA_8B, Workload(mode="qlora", precision="int4")).name == "bnb-nf4"


@pytest.mark.parametrize("spec", [LLAMA_8B, resolve_model(DEFAULT_MODEL).spec], ids=lambda s: s.model_id)
def test_every_cell_is_its_own_workload_or_absent(spec):
    base = Workload()
    table = {row["precision"]: row for row in report.precision_mode_table(spec, base)}
    absent = {("fp32", "qlora"), ("fp16", "qlora"), ("fp8", "qlora"), ("fp8", "full"), ("int8", "qlora"), ("int8", "full"),
              ("int4", "lora"), ("int4", "full")}
    assert report.TABLE_PRECISIONS == ("fp32", "fp16", "fp8", "int8", "int4")
    for precision in report.TABLE_PRECISIONS:
        for mode in report.TABLE_MODES:
            cell = table[precision][mode]
            if (precision, mode) in absent:
                assert cell is None and report.table_cell_absent(precision, mode), (precision, mode)
            else:
                assert report.table_cell_absent(precision, mode) is None
                assert cell == estimate(spec, Workload(precision=precision, mode=mode)).total_bytes, (precision, mode)
    # Per-channel fp8 and LLM.int8 store the same bytes per linear (1 byte per weight + one fp32 scale per output row:
    # quantization.py), so their inference cells agree; no other cell repeats another's number.
    assert table["fp8"]["inference"] == table["int8"]["inference"]
    values = [table[p][m] for p in report.TABLE_PRECISIONS for m in report.TABLE_MODES if table[p][m] is not None and (p, m) != ("fp8", "inference")]
    assert len(set(values)) == len(values)
    # FP32 holds 4 bytes per weight: every computed FP32 cell is above the 16-bit one.
    assert all(table["fp32"][m] > table["fp16"][m] for m in ("inference", "lora", "full"))


@pytest.mark.parametrize("selected", ["bf16", "fp16"])
def test_the_16_bit_row_is_the_selected_16_bit_type_and_both_size_alike(selected):
    """FP16 and BF16 share one row ("FP16 / BF16"): computed at the selection's 16-bit type, and equal in bytes."""
    spec = resolve_model(DEFAULT_MODEL).spec
    w = Workload(precision=selected)
    table = {row["precision"]: row for row in report.precision_mode_table(spec, w)}
    assert selected in table and ({"fp16", "bf16"} - {selected}).isdisjoint(table)
    other = "fp16" if selected == "bf16" else "bf16"
    for mode in ("inference", "lora", "full"):
        assert table[selected][mode] == estimate(spec, Workload(precision=other, mode=mode)).total_bytes, mode


def default_page_workload() -> Workload:
    values, _ = reconcile_main({p.name: p.default for p in MAIN_PARAMS})
    return main_workload(values)


def test_main_page_table_shows_each_cell_and_the_reasons():
    at = AppTest.from_file("../app.py", default_timeout=30).run()
    assert not at.exception
    frame = next(t.value for t in at.table if t.value.index.name == "Precision")
    spec = resolve_model(DEFAULT_MODEL).spec
    page_workload = default_page_workload()  # the page's defaults (trainer preset included), not Workload()'s
    int8_cell, int4_cell = report.table_workload(page_workload, "int8", "lora"), report.table_workload(page_workload, "int4", "qlora")
    assert (int8_cell.precision, int8_cell.mode, weight_format(spec, int8_cell).name) == ("int8", "lora", "bnb-int8")
    assert (int4_cell.precision, int4_cell.mode, weight_format(spec, int4_cell).name) == ("int4", "qlora", "bnb-nf4")
    int8_lora, int4_qlora = estimate(spec, int8_cell).total_bytes, estimate(spec, int4_cell).total_bytes
    assert frame.loc["INT8", "LoRA fine-tune"] == format_bytes(int8_lora) != format_bytes(int4_qlora)
    assert frame.loc["INT4", "QLoRA fine-tune"] == format_bytes(int4_qlora)
    assert frame.loc["INT8", "QLoRA fine-tune"] == frame.loc["INT4", "LoRA fine-tune"] == "—"
    assert list(frame.index) == ["FP32", "FP16 / BF16", "FP8", "INT8", "INT4"]
    fp32_full = estimate(spec, report.table_workload(page_workload, "fp32", "full")).total_bytes
    fp8_inference = estimate(spec, report.table_workload(page_workload, "fp8", "inference")).total_bytes
    assert frame.loc["FP32", "Full fine-tune"] == format_bytes(fp32_full) and frame.loc["FP8", "Inference"] == format_bytes(fp8_inference)
    assert frame.loc["FP8", "Full fine-tune"] == frame.loc["FP32", "QLoRA fine-tune"] == "—"
    caption = " ".join(c.value for c in at.caption)
    assert "INT8 · QLoRA: QLoRA's base is 4-bit NF4" in caption and "INT4 · LoRA: LoRA on a 4-bit base is QLoRA" in caption
    assert "FP8 · Full, INT8 · Full, INT4 · Full: full fine-tuning updates every weight" in caption
    assert "FP16 and BF16 store 2 bytes per value and size alike: that row is computed at FP16" in caption


def test_a_selection_on_a_dash_cell_says_what_the_headline_computes():
    at = AppTest.from_file("../app.py", default_timeout=30)
    at.query_params.update({"precision": "int8", "mode": "qlora"})
    at.run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "INT8 · QLoRA fine-tune, has no cell of its own: the headline above computes LoRA adapters on an LLM.int8 (8-bit) base" in captions
    spec = resolve_model(DEFAULT_MODEL).spec
    peak = next(m.value for m in at.metric if m.label.startswith("Peak VRAM"))
    values, _ = reconcile_main({p.name: p.default for p in MAIN_PARAMS} | {"precision": "int8", "mode": "qlora"})
    w = main_workload(values)
    assert weight_format(spec, w).name == "bnb-int8"
    assert peak == f"{estimate(spec, w).total_bytes / 2**30:,.2f} GiB"
