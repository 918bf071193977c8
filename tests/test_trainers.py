"""Trainer presets pinned to their frameworks' code, and each memory saver's term to a hand derivation."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from calculator import memory
from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.trainers import DEFAULT_TRAINER, PRESETS, TRAINERS, lm_head_problem, preset_settings, preset_workload
from calculator.workload import TRAINER_NAMES, Workload

LLAMA = resolve_catalog("meta-llama/Llama-3.2-3B").spec  # h 3072, vocab 128,256, 28 layers, tied embeddings
HIGGS = resolve_catalog("bosonai/higgs-audio-v2-generation-3B-base").spec


# --------------------------------------------------------------------------------------------
# Presets = the frameworks' defaults
# --------------------------------------------------------------------------------------------


def test_trainer_names_agree():
    assert TRAINERS == TRAINER_NAMES and set(PRESETS) == set(TRAINERS) and DEFAULT_TRAINER == "trl-sft"


def test_trl_sft_preset_matches_its_source_lines():
    p = PRESETS["trl-sft"]
    assert p.gradient_checkpointing is True  # trl 1.16 base_config.py: `gradient_checkpointing: bool = field(default=True,`
    assert p.max_length == 1024  # sft_config.py: `max_length (int or None, optional, defaults to 1024)`
    assert p.loss_impl == "fused-linear"  # sft_config.py: `loss_type: str = field(default="nll",`; sft_trainer.py: `add_fused_lm_head(`
    assert p.fused_optimizer and p.optimizer == "adamw"  # transformers training_args.py: `default_optim = "adamw_torch_fused"`
    assert p.master_weights is True  # sft_trainer.py: "If `dtype` is not specified in `args.model_init_kwargs`, it defaults to `float32`"
    assert p.activation_offload is False  # sft_config.py: `activation_offloading: bool = field(default=False,`
    assert p.packing == "padded"  # sft_config.py: `packing: bool = field(default=False,`, `padding_free` False
    assert p.needs_lm_head  # utils.py add_fused_lm_head: `lm_head = self.get_output_embeddings()`
    # QLoRA: sft_trainer.py "the PEFT adapter weights are converted to bf16"
    assert preset_settings("trl-sft", "qlora")["adapter_precision"] == "bf16"


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl not installed")
def test_trl_and_transformers_field_defaults_are_the_presets():
    """Read the defaults from the installed code itself (dataclass fields; SFTConfig() refuses bf16 on a CPU box)."""
    import trl
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trl_utils
    from transformers import TrainingArguments
    from trl import SFTConfig

    assert trl.__version__ == "1.16.0"
    sft = {f.name: f.default for f in dataclasses.fields(SFTConfig)}
    assert sft["gradient_checkpointing"] is PRESETS["trl-sft"].gradient_checkpointing
    assert sft["bf16"] is None  # base_config.py __post_init__: `self.bf16 = not (self.fp16) if self.bf16 is None` -> autocast on
    assert sft["max_length"] == PRESETS["trl-sft"].max_length
    assert sft["loss_type"] == "nll" and sft["activation_offloading"] is False and sft["packing"] is False and sft["padding_free"] is False
    assert sft["optim"] == "adamw_torch_fused"
    assert (trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, kernel.TOKEN_CHUNK_SIZE) == (memory.TRL_VOCAB_CHUNK, memory.TRL_TOKEN_CHUNK)
    args = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    assert args["optim"] == "adamw_torch_fused" and args["bf16"] is False and not args["activation_checkpointing"]
    hf = PRESETS["hf-trainer"]
    assert hf.fused_optimizer and not hf.gradient_checkpointing and not hf.master_weights and hf.loss_impl == "full"


def test_torchtune_unsloth_axolotl_presets_match_their_configs():
    tt = PRESETS["torchtune"]
    # recipes/configs/llama3_2/3B_lora_single_device.yaml (v0.6.1): `lora_rank: 64`, `CEWithChunkedOutputLoss`,
    # `enable_activation_checkpointing: True`, `enable_activation_offloading: False`, `dtype: bf16`
    assert (tt.lora_rank, tt.loss_impl, tt.loss_chunks, tt.gradient_checkpointing, tt.activation_offload) == (64, "chunked-output", 8, True, False)
    assert tt.adapter_precision == "bf16" and not tt.master_weights and tt.fused_optimizer  # `torch.optim.AdamW` + `fused: True`
    full = preset_settings("torchtune", "full")  # 3B_full_single_device.yaml: `PagedAdamW8bit`, `optimizer_in_bwd: True`
    assert (full["optimizer"], full["paged_optimizer"], full["optimizer_in_backward"]) == ("adamw-8bit", True, True)
    us = PRESETS["unsloth"]  # models/llama.py get_peft_model: `r = 16`, `use_gradient_checkpointing = "unsloth"` (offloaded)
    assert (us.lora_rank, us.gradient_checkpointing, us.activation_offload, us.loss_impl) == (16, True, True, "fused-linear-liger")
    ax = PRESETS["axolotl-liger"]  # examples/llama-3/lora-1b.yml: `optimizer: adamw_8bit`, `sample_packing: true`, `gradient_checkpointing: true`
    assert (ax.optimizer, ax.packing, ax.gradient_checkpointing, ax.norm_kernel, ax.mlp_kernel) == ("adamw-8bit", "packed", True, "liger", "liger")


def test_preset_is_a_starting_point_explicit_settings_win():
    w = preset_workload("trl-sft", mode="lora", precision="bf16", gradient_checkpointing=False, optimizer=None)
    assert w.trainer == "trl-sft" and w.gradient_checkpointing is False  # explicit wins
    assert w.loss_impl == "fused-linear" and w.optimizer == "adamw"  # None = not given: the preset's
    assert preset_workload("trl-sft", mode="inference").loss_impl == "full"  # inference: nothing of the trainer applies


# --------------------------------------------------------------------------------------------
# Each saver's term, by hand
# --------------------------------------------------------------------------------------------


def test_chunked_output_loss_by_hand():
    # 8,192 tokens, vocab 128,256, bf16, 8 chunks. Eager: every bf16 chunk + two saved fp32 tensors per chunk
    # (traced: 8 bytes per logit) at the end of the loss forward = 8192*128256*(2+8) = 10,506,731,520.
    assert memory.chunked_output_loss_bytes(LLAMA, tokens=8192, compute_bytes=2, chunks=8) == 10_506_731_520
    # Compiled: the bf16 chunks (8192*128256*2 = 2,101,346,304) + two fp32 per-row stats (8*8192) + one chunk's
    # fp32 gradient and bf16 cast in backward (1024*128256*6 = 788,004,864).
    assert memory.chunked_output_loss_bytes(LLAMA, tokens=8192, compute_bytes=2, chunks=8, compiled=True) == 2_889_416_704
    # The unchunked fp32 loss is 12 bytes per logit: 12,608,077,824.
    assert memory.loss_buffer_bytes(LLAMA, batch_size=1, seq_len=8192, compute_bytes=2, keep_logits=False) == 12_608_077_824


def test_trl_fused_head_by_hand():
    # 4,096 trained tokens, bf16 everywhere, frozen head: tile 4096*32768*2 = 268,435,456;
    # saved hidden[mask] 4096*3072*2 + log_z/entropy 8*4096 = 25,198,592;
    # backward = tile + grad_logprobs 4096*4 + grad_hidden fp32 4096*3072*4 + its bf16 cast 4096*3072*2 = 343,949,312.
    got = memory.fused_lm_head_loss_bytes(LLAMA, tokens=4096, trained=4096, compute_bytes=2, hidden_bytes=2, head_weight_bytes=2, head_trainable=False)
    assert got == 25_198_592 + 343_949_312
    # Full fine-tune adds grad_weight fp32 (128256*3072*4) and its bf16 cast (*2).
    full = memory.fused_lm_head_loss_bytes(LLAMA, tokens=4096, trained=4096, compute_bytes=2, hidden_bytes=2, head_weight_bytes=2, head_trainable=True)
    assert full - got == 128256 * 3072 * 6
    # Completion-only loss: a quarter of the tokens trained -> 1,024 rows.
    assert memory.trained_tokens(4096, 0.25) == 1024


def test_liger_fused_linear_ce_by_hand():
    # inc = ceil(128256/3072) = 42; chunk = next_pow2(ceil(4096/42) = 98) = 128;
    # grad_input 4096*3072*2 + logits tile 128*128256*2 + loss 4*4096 = 25,165,824 + 32,833,536 + 16,384.
    assert memory.liger_fused_linear_ce_bytes(LLAMA, trained=4096, compute_bytes=2, head_weight_bytes=2, head_trainable=False) == 58_015_744


def test_checkpoint_every_k_and_offload_split():
    assert memory.checkpointed_layers(28, 1) == 28 and memory.checkpointed_layers(28, 3) == 10  # layers 0,3,...,27
    kw = dict(batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", adapters=None)
    every = memory.training_activation_bytes(LLAMA, gradient_checkpointing=True, **kw)
    third = memory.training_activation_bytes(LLAMA, gradient_checkpointing=True, checkpoint_every=3, **kw)
    per_layer = memory.layer_saved_bytes_per_token(LLAMA, compute_bytes=2, seq_len=1000, attention="sdpa", adapters=None)
    # 18 of 28 layers keep everything instead of their 2h-byte input.
    assert third - every == 1000 * 18 * (per_layer - 2 * 3072)
    # Offloading: 950 bytes of layers, 100 per layer, 50 for the head -> 2 layers + head stay.
    assert memory.offloaded_activation_split(saved_bytes=1000, per_layer_bytes=100, layers=8, head_bytes=50) == (250, 750)


def test_peft_method_parameter_counts_match_peft():
    # peft's own trainable counts in the method comparison (validation rows M132-M134, Llama-3.2-3B):
    plan = memory.AdapterPlan(names=frozenset({"q_proj", "v_proj"}), rank=32, adapter_bytes=4)
    assert memory.lora_params(LLAMA, plan) + memory.dora_extra_params(LLAMA, plan) == 9_289_728  # DoRA r=32 on q,v
    assert memory.ia3_params(LLAMA) == 286_720  # IA3 on k, v, down_proj: 28 x (1024 + 1024 + 8192)
    w = Workload(mode="lora", precision="bf16", peft_method="prompt-tuning", num_virtual_tokens=200, context_length=64)
    assert estimate(LLAMA, w).trainable_params == 614_400  # 200 virtual tokens x 3072
    # DoRA saves (c + a) x out per adapted linear per token: 28 x (3072 + 1024) x 6.
    assert memory.dora_saved_bytes_per_token(LLAMA, plan, compute_bytes=2) == 28 * 4096 * 6


ALL_LINEAR = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})


def test_oft_terms_match_peft_oft():
    # peft 0.21.2 OFTConfig defaults: oft_block_size=32, r=0 -> in/32 blocks of 32 x 32, stored as 32 x 31 / 2 = 496 values each.
    assert memory.peft_linear_targets(LLAMA, "all-linear") == ALL_LINEAR
    # Per layer: six 3,072-wide inputs (q, k, v, o, gate, up) and down_proj's 8,192: 26,624 x 31 / 2 = 412,672 per layer.
    assert memory.oft_params(LLAMA, ALL_LINEAR, block_size=32) == 28 * 412_672
    # Index buffers rows/cols (int64) per adapted linear: 2 x 496 x 8 = 7,936 bytes, 7 x 28 of them.
    assert memory.oft_buffer_bytes(LLAMA, ALL_LINEAR, block_size=32) == 7 * 28 * 7_936
    # Each adapted linear's bmm saves its own fp32 copy of the input: 4 x 26,624 per layer per token.
    assert memory.oft_saved_bytes_per_token(LLAMA, ALL_LINEAR, saved_bytes=4, copies_input=True) == 28 * 4 * 26_624
    # bf16 adapters on a bf16 base: views of the distinct inputs, attention input h, MLP input h, down input I
    # (o_proj's input is SDPA's saved output): 2 x (3072 + 3072 + 8192).
    assert memory.oft_saved_bytes_per_token(LLAMA, ALL_LINEAR, saved_bytes=2, copies_input=False) == 28 * 2 * 14_336
    assert memory.oft_saved_bytes_per_token(LLAMA, ALL_LINEAR, saved_bytes=2, copies_input=False, attention="eager") == 28 * 2 * 17_408
    # Q, Q^2, Q^3 and R, each in x 32 elements, per adapted linear: fp32 4 x 4 x 26,624 x 32 per layer; 7 bf16 casts under autocast.
    assert memory.oft_rotation_saved_bytes(LLAMA, ALL_LINEAR, block_size=32, adapter_bytes=4) == 28 * 16 * 26_624 * 32
    assert memory.oft_rotation_saved_bytes(LLAMA, ALL_LINEAR, block_size=32, adapter_bytes=4, autocast_bytes=2) == 28 * 14 * 26_624 * 32
    # peft's adjust_oft_parameters: 48 divides 3,072 (64 blocks) and stays; it does not divide 896 (Qwen2.5-0.5B), whose
    # nearest divisor is 56 (8 above; 32 is 16 below); a block above the input becomes the whole input.
    assert memory.oft_block_size(3072, 48) == 48 and memory.oft_block_size(896, 48) == 56 and memory.oft_block_size(896, 4096) == 896
    assert memory.oft_block_size(30, 7) == 6  # 6 and 10 both divide 30; 7 - 6 = 1 < 10 - 7 = 3


def test_vera_terms_match_peft_vera():
    # peft 0.21.2 VeraConfig default r=256; lambda_b (out) + lambda_d (r) per adapted linear.
    out = 3072 + 1024 + 1024 + 3072 + 8192 + 8192 + 3072  # q, k, v, o, gate, up, down
    assert memory.vera_params(LLAMA, ALL_LINEAR, rank=256) == 28 * (out + 7 * 256)
    # One shared vera_A [256, 8192] and vera_B [8192, 256] (largest adapted in and out), fp32 adapters.
    assert memory.vera_projection_bytes(LLAMA, ALL_LINEAR, rank=256, adapter_bytes=4) == 4 * 256 * (8192 + 8192)
    qv = frozenset({"q_proj", "v_proj"})
    assert memory.vera_projection_bytes(LLAMA, qv, rank=256, adapter_bytes=4) == 4 * 256 * (3072 + 3072)
    # Saved per token: x A^T (r) and (.) B^T (out) per adapted linear, no copy of x.
    assert memory.vera_saved_bytes_per_token(LLAMA, ALL_LINEAR, rank=256, saved_bytes=4) == 28 * 4 * (7 * 256 + out)
    # Under autocast each linear saves bf16 casts of its A and B slices: 2 x 256 x (in + out).
    assert memory.vera_autocast_cast_bytes(LLAMA, qv, rank=256, compute_bytes=2) == 28 * 2 * 256 * ((3072 + 3072) + (3072 + 1024))


def test_oft_and_vera_in_the_estimate():
    base = dict(mode="lora", precision="bf16", context_length=512, batch_size=1, optimizer="adamw", fused_optimizer=True)
    oft = estimate(LLAMA, Workload(peft_method="oft", **base))
    vera = estimate(LLAMA, Workload(peft_method="vera", **base))
    assert oft.trainable_params == 28 * 412_672
    assert vera.trainable_params == 28 * (27_648 + 7 * 256)  # out features + 7 x r per layer
    # Adapters at the peak (the loss's backward, before any adapter gradient exists): fp32 weights + two AdamW states
    # (12 bytes a parameter), plus OFT's index buffers / VeRA's projections.
    assert oft.breakdown.adapters_bytes == 12 * 28 * 412_672 + 7 * 28 * 7_936
    assert vera.breakdown.adapters_bytes == 12 * vera.trainable_params + 4 * 256 * 16_384
    # A bigger OFT block: more parameters; a smaller VeRA rank: fewer.
    assert estimate(LLAMA, Workload(peft_method="oft", oft_block_size=64, **base)).trainable_params > oft.trainable_params
    assert estimate(LLAMA, Workload(peft_method="vera", vera_rank=16, **base)).trainable_params < vera.trainable_params


def test_selective_op_checkpointing_keeps_every_other_matmul_and_attention():
    # torchtitan's op SAC (parallelize.py `_save_list`, "every second mm" recomputed). Llama layer, full fine-tune, bf16:
    # mm order q, k, v, o, gate, up, down -> q, v, gate, down kept; SDPA output (c x 3072) + fp32 log-sum-exp (4 x 24 heads).
    full = memory.selective_op_saved_bytes_per_token(LLAMA, compute_bytes=2, attention="sdpa")
    assert full == 2 * (3072 + 1024 + 8192 + 3072) + 2 * 3072 + 4 * 24 == 36_960
    # Eager attention runs bmm and softmax, neither in the list.
    assert memory.selective_op_saved_bytes_per_token(LLAMA, compute_bytes=2, attention="eager") == 2 * (3072 + 1024 + 8192 + 3072)
    # LoRA r=16 all-linear, fp32 adapters: 21 mm per layer (base, lora_A, lora_B each); the odd ones are q, q.B, k.A, v, v.B, o.A,
    # gate, gate.B, up.A, down, down.B.
    plan = memory.AdapterPlan(names=memory.lora_target_names(LLAMA, "all-linear"), rank=16, adapter_bytes=4)
    lora = memory.selective_op_saved_bytes_per_token(LLAMA, compute_bytes=2, attention="sdpa", adapters=plan, adapter_out_bytes=4)
    kept = 2 * 3072 + 4 * 3072 + 4 * 16 + 2 * 1024 + 4 * 1024 + 4 * 16 + 2 * 8192 + 4 * 8192 + 4 * 16 + 2 * 3072 + 4 * 3072
    assert lora == kept + 2 * 3072 + 4 * 24 == 98_592
    # Qwen2.5-0.5B: q, k, v carry a bias, so they run addmm (not in the list, not counted): o, gate, up, down -> o and up kept.
    qwen = resolve_catalog("Qwen/Qwen2.5-0.5B").spec
    assert memory.selective_op_saved_bytes_per_token(qwen, compute_bytes=2, attention="sdpa") == 2 * (896 + 4864) + 2 * 896 + 4 * 14
    # In the estimate: each of the 28 checkpointed layers keeps that much more per token; the recomputed layer takes its own over.
    base = dict(mode="full", precision="bf16", context_length=1024, batch_size=1, gradient_checkpointing=True, optimizer="adamw")
    plain = estimate(LLAMA, Workload(**base))
    sac = estimate(LLAMA, Workload(checkpoint_policy="selective-op", **base))
    assert sac.phases["backward"] - plain.phases["backward"] == 28 * 1024 * 36_960
    assert sac.phases["layer recompute"] - plain.phases["layer recompute"] == 27 * 1024 * 36_960
    # Without checkpointing the policy has nothing to act on.
    off = dict(base, gradient_checkpointing=False)
    assert estimate(LLAMA, Workload(checkpoint_policy="selective-op", **off)).total_bytes == estimate(LLAMA, Workload(**off)).total_bytes


def test_optimizer_in_backward_and_cpu_offload():
    base = Workload(mode="full", precision="bf16", context_length=512, optimizer="adamw", fused_optimizer=True)
    e = estimate(LLAMA, base)
    fused_in_bwd = estimate(LLAMA, dataclasses.replace(base, optimizer_in_backward=True))
    assert "optimizer step" in e.phases and "optimizer step" not in fused_in_bwd.phases
    # One parameter's gradient at a time: the tied embedding, 128256 x 3072 x 2 bytes.
    assert fused_in_bwd.breakdown.gradients_bytes == 128256 * 3072 * 2
    off = estimate(LLAMA, dataclasses.replace(base, cpu_offload="optimizer"))
    assert off.breakdown.optimizer_bytes == 0 and off.host_bytes >= e.breakdown.optimizer_bytes
    assert off.total_bytes < e.total_bytes


def test_fused_head_frees_the_logits_in_the_estimate():
    full = estimate(LLAMA, Workload(mode="lora", precision="bf16", context_length=4096))
    fused = estimate(LLAMA, Workload(mode="lora", precision="bf16", context_length=4096, loss_impl="fused-linear"))
    assert full.breakdown.logits_bytes == 12 * 4096 * 128256
    assert fused.breakdown.logits_bytes == memory.fused_lm_head_loss_bytes(
        LLAMA, tokens=4096, trained=4096, compute_bytes=2, hidden_bytes=2, head_weight_bytes=2, head_trainable=False)


def test_padding_uses_the_batch_maximum_and_packing_fills_rows():
    lengths = (100, 900, 300, 50)
    padded = Workload(mode="lora", precision="bf16", context_length=2048, batch_size=2, sample_lengths=lengths)
    packed = dataclasses.replace(padded, packing="packed")
    free = dataclasses.replace(padded, packing="padding-free")
    as_900 = Workload(mode="lora", precision="bf16", context_length=900, batch_size=2)
    as_600 = Workload(mode="lora", precision="bf16", context_length=600, batch_size=2)  # (900 + 300) / 2
    as_2048 = Workload(mode="lora", precision="bf16", context_length=2048, batch_size=2)
    assert estimate(LLAMA, padded).torch_allocated_bytes == estimate(LLAMA, as_900).torch_allocated_bytes
    assert estimate(LLAMA, free).torch_allocated_bytes == estimate(LLAMA, as_600).torch_allocated_bytes
    assert estimate(LLAMA, packed).torch_allocated_bytes == estimate(LLAMA, as_2048).torch_allocated_bytes


def test_higgs_has_no_single_lm_head_so_trl_says_it_cannot_start():
    assert "fails at its first step" in lm_head_problem(HIGGS, "trl-sft")
    assert lm_head_problem(LLAMA, "trl-sft") == "" and lm_head_problem(HIGGS, "hf-trainer") == ""
    e = estimate(HIGGS, preset_workload("trl-sft", mode="lora", precision="bf16"))
    assert e.trainer_problem and e.trainer_problem in e.notes
    # trl 1.16 sft_trainer.py runs the fused head on every step (loss_type is "nll" or "dft", both fused): no
    # setting of TRL avoids it, and the message says so and names the run it sizes instead.
    assert "No SFTConfig setting turns the fused head off" in e.trainer_problem and "trainer=hf-trainer" in e.trainer_problem
    # Sized: HF Trainer with TRL's settings as they are (checkpointing, fp32 load + autocast, fused AdamW) and full logits.
    assert e.workload.trainer == "hf-trainer" and e.workload.loss_impl == "full"
    assert e.workload.gradient_checkpointing and e.workload.master_weights and e.workload.fused_optimizer


def test_the_run_sized_instead_of_trl_is_what_naming_hf_trainer_gives():
    """A link or CLI call naming HF Trainer with those settings reproduces the figures shown for TRL's default."""
    from calculator.trainers import switch_settings

    for mode in ("lora", "qlora", "full"):
        precision = "int4" if mode == "qlora" else "bf16"
        shown = estimate(HIGGS, preset_workload("trl-sft", mode=mode, precision=precision))
        switched = preset_workload("hf-trainer", mode=mode, precision=precision,
                                   **{k: v for k, v in switch_settings(shown.workload).items() if k != "trainer"})
        again = estimate(HIGGS, switched)
        assert again.trainer_problem == "" and again.total_bytes == shown.total_bytes, mode
        assert again.breakdown == shown.breakdown, mode
    # A model with one lm_head keeps TRL's own run: nothing is swapped.
    e = estimate(LLAMA, preset_workload("trl-sft", mode="lora", precision="bf16"))
    assert e.trainer_problem == "" and e.workload.trainer == "trl-sft" and e.workload.loss_impl == "fused-linear"


# --------------------------------------------------------------------------------------------
# CLI, JSON and URL
# --------------------------------------------------------------------------------------------


def test_cli_assumes_trl_for_fine_tuning_and_explicit_flags_win(capsys):
    import json

    from calculator.cli import main

    assert main(["estimate", "meta-llama/Llama-3.2-3B", "--mode", "lora", "--precision", "bf16", "--offline", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trainer"]["name"] == "trl-sft" and data["trainer"]["loss"] == "fused-linear" and data["trainer"]["gradient_checkpointing"]
    w = preset_workload("trl-sft", mode="lora", precision="bf16")
    assert data["total_bytes"] == estimate(LLAMA, w).total_bytes
    assert main(["estimate", "meta-llama/Llama-3.2-3B", "--mode", "lora", "--precision", "bf16", "--offline", "--json",
                 "--trainer", "custom", "--no-grad-checkpointing"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_bytes"] == estimate(LLAMA, Workload(mode="lora", precision="bf16")).total_bytes  # the plain loop, unchanged
    assert main(["estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--mode", "lora", "--offline", "--json"]) == 0
    trl = json.loads(capsys.readouterr().out)
    assert "fails at its first step" in trl["trainer"]["problem"] and trl["trainer"]["name"] == "hf-trainer"
    # The command the message points to (HF Trainer, TRL's settings kept) gives the same peak, with no problem.
    assert main(["estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--mode", "lora", "--offline", "--json",
                 "--trainer", "hf-trainer", "--grad-checkpointing", "--master-weights"]) == 0
    hf = json.loads(capsys.readouterr().out)
    assert hf["trainer"]["problem"] is None and hf["total_bytes"] == trl["total_bytes"]


def test_url_carries_only_what_differs_from_the_trainer():
    from ui.state import MAIN_PARAMS, encode_params, read_params, resolve_trainer_values, trainer_relative

    values, notes = read_params(MAIN_PARAMS, {"mode": "lora", "trainer": "torchtune"})
    resolved = resolve_trainer_values(values)
    assert notes == [] and resolved["lora_rank"] == 64 and resolved["loss"] == "chunked-output"
    resolved["grad_ckpt"] = False  # the user turns torchtune's checkpointing off
    url, always = trainer_relative(resolved)
    assert always == ("trainer",)
    encoded = encode_params(MAIN_PARAMS, url, always=("mode", *always))
    assert encoded == {"mode": "lora", "trainer": "torchtune", "grad_ckpt": "0"}
    again, _ = read_params(MAIN_PARAMS, encoded)
    assert resolve_trainer_values(again) == resolved  # the link reproduces the view


def test_advisor_offers_the_savers_cheapest_first():
    from calculator.advisor import CHANGE_ORDER, _candidates, suggest_changes
    from calculator.gpus import get_gpu

    usable = get_gpu("rtx-4090").usable_bytes
    # The plain loop with an fp32 base, full logits, no checkpointing: 4,096 tokens do not fit 24 GB.
    w = Workload(mode="lora", precision="bf16", context_length=4096, master_weights=True)
    tried = [k for k, _, _ in _candidates(LLAMA, w, usable_bytes=usable, headroom_fraction=0)]
    assert tried[:4] == ["chunked_loss", "bf16_base", "gradient_checkpointing", "activation_offload"]  # cheapest first
    changes = suggest_changes(LLAMA, w, usable_bytes=usable)
    kinds = [c.kind for c in changes]
    assert kinds == sorted(kinds, key=CHANGE_ORDER.index) and "gradient_checkpointing" in kinds and all(c.fits for c in changes)
    full = Workload(mode="full", precision="bf16", context_length=1024)
    assert {"optimizer_in_backward", "cpu_offload"} <= {k for k, _, _ in _candidates(LLAMA, full, usable_bytes=usable, headroom_fraction=0)}
    # TRL's fused head is offered for a model with one lm_head, never for higgs-audio-v2's two heads.
    assert "chunked_loss" not in [k for k, _, _ in _candidates(HIGGS, w, usable_bytes=usable, headroom_fraction=0)]


# --------------------------------------------------------------------------------------------
# The main page
# --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_main_page_names_its_trainer_and_a_trainer_link_reproduces_it():
    from streamlit.testing.v1 import AppTest

    from calculator.units import GiB

    at = AppTest.from_file("../app.py", default_timeout=60)
    for k, v in {"model": "meta-llama/Llama-3.2-3B", "mode": "lora", "precision": "bf16", "trainer": "torchtune"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    assert at.selectbox(key="main.trainer").value == "torchtune"
    assert any("Assumes **torchtune recipe** defaults" in c.value for c in at.caption)
    assert at.number_input(key="main.lora_rank").value == 64  # the preset's rank is shown and adjustable
    w = preset_workload("torchtune", mode="lora", precision="bf16")
    assert next(m.value for m in at.metric if m.label.startswith("Peak VRAM")) == f"{estimate(LLAMA, w).total_bytes / GiB:,.2f} GiB"
    assert at.query_params["trainer"] == ["torchtune"] or at.query_params["trainer"] == "torchtune"
    # higgs-audio-v2 with TRL's default: the page says the fused head cannot start.
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params["mode"] = "lora"
    at.run()
    assert not at.exception and any("fails at its first step" in e.value for e in at.error)


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_lora_on_the_default_page_sizes_the_run_that_starts_and_one_click_switches_to_it():
    """The seed model + LoRA under TRL's default: the red box says why TRL cannot start, the figures are HF
    Trainer's with the same settings (said in the sentence), and the button switches the page to exactly that run."""
    from streamlit.testing.v1 import AppTest

    def peak(at):
        return next(m.value for m in at.metric if m.label.startswith("Peak VRAM"))

    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params["mode"] = "lora"
    at.run()
    assert not at.exception and at.selectbox(key="main.trainer").value == "trl-sft"
    shown = estimate(HIGGS, preset_workload("trl-sft", mode="lora", precision="fp16"))
    assert peak(at) == f"{shown.total_bytes / 2**30:,.2f} GiB"
    assert any("with **HF Trainer**" in m.value for m in at.markdown)
    at.button(key="main.switch_trainer").click().run()
    assert not at.exception and at.selectbox(key="main.trainer").value == "hf-trainer"
    assert peak(at) == f"{shown.total_bytes / 2**30:,.2f} GiB" and not at.error  # the same run, now with nothing wrong
    assert at.checkbox(key="main.grad_ckpt").value and at.checkbox(key="main.master_weights").value
    link = {k: at.query_params[k] for k in at.query_params}
    assert link["trainer"] in ("hf-trainer", ["hf-trainer"])
    # The link the page now carries reproduces it on a fresh session.
    again = AppTest.from_file("../app.py", default_timeout=60)
    for k, v in link.items():
        again.query_params[k] = v
    again.run()
    assert not again.exception and peak(again) == peak(at) and again.selectbox(key="main.trainer").value == "hf-trainer"
    assert not again.error
