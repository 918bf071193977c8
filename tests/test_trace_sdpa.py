"""The trace runs SDPA with unequal q/k and v head sizes (multi-head latent attention) as a GPU's
memory-efficient kernel does, not as CPU's math path (calculator/verify/_sdpa.py)."""

from __future__ import annotations

import pytest

from calculator.workload import Workload

pytestmark = pytest.mark.trace

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from calculator.verify import trace_workload  # noqa: E402
from calculator.verify._sdpa import backward_workspace_bytes, gpu_sdpa_kernels  # noqa: E402


def _tiny_mla() -> dict:
    """A 2-layer DeepSeek-V3 (transformers 5.24 `DeepseekV3Config`) with query/key heads of 32 + 16 and value heads of 32."""
    import warnings

    from transformers import AutoConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoConfig.for_model(
            "deepseek_v3", vocab_size=512, hidden_size=256, intermediate_size=512, moe_intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=8, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=1,
            topk_group=1, first_k_dense_replace=1, q_lora_rank=64, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
            v_head_dim=32, max_position_embeddings=8192).to_dict()


@pytest.mark.parametrize("workload", [
    {"mode": "inference", "generated_tokens": 2},
    {"mode": "full"},
])
def test_unequal_head_sizes_trace_without_a_seq_squared_term(workload: dict) -> None:
    """Peaks at 256, 512 and 768 tokens: weights + a*s + b*s^2. The math path's scores (8 heads x batch 2 x s^2 in bf16,
    and their fp32 copies) made the second difference peak(3s) - 2 peak(2s) + peak(s) = 2 b s^2 several MiB; the
    kernel's output, logsumexp, gradients and workspace are linear in s, so it vanishes up to the 32- and 128-token
    alignments of the logsumexp and the workspace."""
    cfg = _tiny_mla()
    mode = workload.pop("mode")
    peaks = [trace_workload(cfg, Workload(mode=mode, precision="bf16", context_length=s, batch_size=2, **workload), model_id="tiny-mla").peak_bytes
             for s in (256, 512, 768)]
    second_difference = peaks[2] - 2 * peaks[1] + peaks[0]
    # 2 b s^2 of the math path at s = 256: 2 x (8 heads x batch 2 x 256^2 x 2 bytes) = 4 MiB per bf16 score tensor alone.
    assert abs(second_difference) < 256 * 1024, (peaks, second_difference)


def test_equal_head_sizes_call_torch_itself() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(), gpu_sdpa_kernels():
        q = torch.randn(1, 4, 64, 32, dtype=torch.bfloat16, requires_grad=True)
        same = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        v = torch.randn(1, 4, 64, 16, dtype=torch.bfloat16, requires_grad=True)
        mla = torch.nn.functional.scaled_dot_product_attention(q, q, v, is_causal=True)
    assert "Flash" in type(same.grad_fn).__name__  # CPU flash kernel, untouched
    assert type(mla.grad_fn).__name__ == "_MemEfficientAttentionBackward"
    assert mla.shape == (1, 4, 64, 16) and mla.dtype == torch.bfloat16


def test_deepseek_v3_backward_workspace() -> None:
    """DeepSeek-V3 (128 heads, q/k 192, v 128), batch 1, 4096 tokens, bf16: kernel 128x64_k65536 (first bf16 sm80 kernel with
    kMaxK >= 192), gK/gV staged in fp32 (kMaxK > kBlockSizeI), num_splits_key = min(64, 200 // 128) = 1:
      gk = 4096 x align(192, 128) = 4096 x 256 = 1,048,576
      gv = 4096 x align(128, 128) = 524,288
      gq = ceil(4096/128) x ceil(192/64) x (4 + 128 x 64) = 32 x 3 x 8196 = 786,816
      128 heads x 2,359,680 fp32 = 1,208,156,160 bytes."""
    assert backward_workspace_bytes(1, 128, 4096, 4096, 192, 128, torch.bfloat16) == 1_208_156_160


def test_the_trace_says_which_head_sizes_ran_as_the_memory_efficient_kernel() -> None:
    r = trace_workload(_tiny_mla(), Workload(mode="inference", precision="bf16", context_length=64, generated_tokens=2), model_id="tiny-mla")
    assert any("(48 vs 32)" in n and "memory-efficient" in n for n in r.notes), r.notes
