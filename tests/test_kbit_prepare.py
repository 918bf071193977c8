"""peft's k-bit preparation (fp32 upcast of a bitsandbytes base's unquantized parameters) is counted
only for the loops that run it: TRL 1.16's SFTTrainer does not."""

from __future__ import annotations

import inspect

import pytest

from calculator import memory, trainers
from calculator.estimate import estimate
from calculator.quantization import weight_format
from calculator.resolve import resolve_catalog
from calculator.trainers import preset_workload

LLAMA_8B = resolve_catalog("meta-llama/Llama-3.1-8B").spec
# Not quantized: embed_tokens + lm_head 2 x 128,256 x 4,096 + 65 RMSNorms x 4,096 (tests/test_table_cells.py).
KEPT_PARAMS = 2 * 128_256 * 4096 + 65 * 4096


def test_trl_sft_trainer_never_calls_prepare_model_for_kbit_training():
    sft = pytest.importorskip("trl.trainer.sft_trainer")
    source = inspect.getsource(sft)
    assert "prepare_model_for_kbit_training" not in source
    # What it does instead for a quantized base: trainable (adapter) parameters to bf16.
    assert "param.data = param.data.to(torch.bfloat16)" in source


def test_peft_upcasts_every_unquantized_16bit_parameter_of_a_4bit_base_too():
    other = pytest.importorskip("peft.utils.other")
    source = inspect.getsource(other.prepare_model_for_kbit_training)
    assert 'param.__class__.__name__ != "Params4bit"' in source and "param.data.to(torch.float32)" in source


@pytest.mark.parametrize(("mode", "precision", "fmt_name"), [("qlora", "int4", "bnb-nf4"), ("lora", "int8", "bnb-int8")])
def test_upcast_counted_only_for_loops_that_prepare(mode, precision, fmt_name):
    by_trainer = {t: estimate(LLAMA_8B, preset_workload(t, mode=mode, precision=precision)).breakdown.weights_bytes for t in trainers.TRAINERS}
    fmt = weight_format(LLAMA_8B, preset_workload("custom", mode=mode, precision=precision))
    assert fmt.name == fmt_name
    assert memory.kbit_upcast_bytes(LLAMA_8B, fmt) == 2 * KEPT_PARAMS  # bf16 -> fp32: 2 more bytes each
    for t in ("trl-sft", "torchtune", "unsloth"):
        assert not trainers.kbit_upcast(t)
        assert by_trainer[t] == memory.weight_bytes(LLAMA_8B, fmt)
    for t in ("custom", "hf-trainer", "axolotl-liger"):
        assert trainers.kbit_upcast(t)
        assert by_trainer[t] == memory.weight_bytes(LLAMA_8B, fmt) + 2 * KEPT_PARAMS
