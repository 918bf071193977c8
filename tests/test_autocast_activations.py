"""What a step saves under bf16 autocast with fp32 weights (TRL SFTTrainer's default of loading a
model id in fp32), and what a frozen embedding does to the first layer. Hand derivations of the
tensors the FakeTensor traces of TRL's step keep (benchmarks/results/trainer_traces-quick.md)."""

from __future__ import annotations

from calculator import memory
from calculator.resolve import resolve_catalog

LLAMA = resolve_catalog("meta-llama/Llama-3.2-3B").spec  # h 3072, q 3072, kv 1024, I 8192, 24 heads, 28 layers
H, INTER = 3072, 8192


def test_stream_readers_are_qkv_and_gate_up():
    # q, k, v read the normalized stream (o_proj writes back to it); gate and up read it (down reads act x up).
    assert memory.stream_readers(LLAMA) == (3, 2)


def test_fp32_residual_under_autocast_saves_a_cast_per_reader():
    bf16 = memory.layer_saved_bytes_per_token(LLAMA, compute_bytes=2, seq_len=4096, attention="sdpa", adapters=None)
    fp32_stream = memory.layer_saved_bytes_per_token(LLAMA, compute_bytes=2, seq_len=4096, attention="sdpa", adapters=None,
                                                     residual_bytes=4)
    # Pure bf16: each RMSNorm saves its fp32 upcast (4h), 1/rms and the bf16 normalized tensor (2h); q/k/v share
    # one bf16 input (2h), gate/up another (2h): 131,176 B per token (tests/test_memory.py).
    assert bf16 == 131_176
    # fp32 stream: the normalized tensor is fp32 (4h instead of 2h, twice), and autocast casts the fp32 norm output
    # once per linear that reads it (not cached: not a leaf), so q, k, v save 3 x 2h and gate, up 2 x 2h.
    assert fp32_stream == bf16 + 2 * (4 * H - 2 * H) + (3 - 1) * 2 * H + (2 - 1) * 2 * H


def test_lora_a_output_is_in_the_compute_dtype_under_autocast():
    names = memory.lora_target_names(LLAMA, "all-linear")
    plain = memory.AdapterPlan(names=names, rank=16, adapter_bytes=4)
    autocast = memory.AdapterPlan(names=names, rank=16, adapter_bytes=4, input_copy_bytes=2)
    a = memory.layer_saved_bytes_per_token(LLAMA, compute_bytes=2, seq_len=2048, attention="sdpa", adapters=plain)
    b = memory.layer_saved_bytes_per_token(LLAMA, compute_bytes=2, seq_len=2048, attention="sdpa", adapters=autocast)
    # 7 adapters per layer. Without autocast each keeps an fp32 copy of its input (4 x in) and an fp32 r-wide
    # lora_A output; under autocast a bf16 cast of the input (2 x in) and a bf16 lora_A output (2 x 16).
    inputs = 3 * H + H + 2 * H + INTER  # q, k, v, o, gate, up, down in_features
    assert a - b == 2 * inputs + 7 * (4 - 2) * 16


def test_frozen_embedding_without_checkpointing_leaves_the_first_norm_unsaved():
    names = memory.lora_target_names(LLAMA, "all-linear")
    plan = memory.AdapterPlan(names=names, rank=16, adapter_bytes=2)
    kw = dict(batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", adapters=plan, gradient_checkpointing=False)
    with_grad = memory.training_activation_bytes(LLAMA, **kw)
    without = memory.training_activation_bytes(LLAMA, **kw, first_layer_input_grad=False)
    assert with_grad - without == 1000 * (4 * H + 4)  # the first RMSNorm's fp32 input and 1/rms


def test_frozen_embedding_first_layer_qkv_save_no_weight_cast():
    kw = dict(compute_bytes=2, layers_kept=28, full_logits=False, adapter_params=0)
    a = memory.autocast_weight_cast_bytes(LLAMA, **kw)
    b = memory.autocast_weight_cast_bytes(LLAMA, **kw, first_layer_input_grad=False)
    assert a - b == 2 * (H * 3072 + 2 * H * 1024)  # layer 0's q, k, v weights in bf16


def test_frozen_head_saves_no_input():
    names = memory.lora_target_names(LLAMA, "all-linear")
    plan = memory.AdapterPlan(names=names, rank=16, adapter_bytes=2)
    kw = dict(batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", gradient_checkpointing=True)
    per_layer_inputs = 28 * 2 * H
    # LoRA: the final norm keeps its fp32 input and 1/rms; its frozen weight and the frozen head need no input.
    assert memory.training_activation_bytes(LLAMA, adapters=plan, **kw) == 1000 * (per_layer_inputs + 4 * H + 4)
    # Full, fused head: + the normalized tensor (2h); the head's input copy is the loss term's.
    assert memory.training_activation_bytes(LLAMA, adapters=None, head_saves_input=False, **kw) == 1000 * (per_layer_inputs + 4 * H + 4 + 2 * H)
    # Full, full logits: + lm_head's saved input (2h).
    assert memory.training_activation_bytes(LLAMA, adapters=None, **kw) == 1000 * (per_layer_inputs + 4 * H + 4 + 4 * H)



def test_lora_loss_backward_has_no_adapter_gradients_yet():
    from calculator.estimate import estimate
    from calculator.workload import Workload

    w = Workload(mode="lora", precision="bf16", adapter_precision="bf16", context_length=2048, batch_size=4, optimizer="adamw",
                 fused_optimizer=True)
    e = estimate(LLAMA, w)
    params = memory.lora_params(LLAMA, memory.AdapterPlan(names=memory.lora_target_names(LLAMA, "all-linear"), rank=16, adapter_bytes=2))
    assert e.peak_phase == "backward" and e.trainable_params == params
    # bf16 adapter weights (2) + two bf16 AdamW states (4); their gradients (2) come once the loss buffers are gone.
    assert e.breakdown.adapters_bytes == 6 * params


def test_autocast_cache_lives_through_the_forward_only():
    from calculator.estimate import estimate
    from calculator.trainers import preset_workload

    # TRL full fine-tune, fp32 weights under bf16 autocast, checkpointing on, transformers' full logits.
    w = preset_workload("trl-sft", mode="full", precision="bf16", context_length=2048, batch_size=4, loss_impl="full")
    e = estimate(LLAMA, w)
    tokens, vocab = 8192, 128_256
    all_casts = 2 * LLAMA.num_params  # autocast's cache: a bf16 copy of every weight, until the forward ends
    head_cast = 2 * vocab * H  # the (tied) LM head's cast, saved by its matmul: the only cast alive in backward
    forward_loss, backward_loss = tokens * vocab * (2 + 8), tokens * vocab * 12  # bf16 logits + fp32 upcast + log-probs; 3 fp32
    assert e.phases["forward (autocast cache)"] - e.phases["backward"] == (all_casts - head_cast) + (forward_loss - backward_loss)
    # At full depth the cache outweighs the backward's extra fp32 buffer: the forward is the peak (traced: Llama-3.2-3B at
    # 2,048 x 4, forward 54.63 GiB).
    assert e.peak_phase == "forward (autocast cache)"
