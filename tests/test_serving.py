"""vLLM's start-up budget, term by term, pinned to the vLLM code of each modelled version
(`calculator/vllm.py` names the file and function behind every rule), and "will it start"."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from calculator import vllm as V
from calculator.cli import main
from calculator.errors import InvalidWorkloadError
from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.serving import startup_fix, vllm_capacity
from calculator.workload import Workload

MiB = 2**20
GiB = 2**30
H100 = 81_559 * MiB  # nvidia-smi memory.total of an H100 80GB (gpus.csv)
RTX4090 = 24_564 * MiB
LLAMA8 = "meta-llama/Llama-3.1-8B"


@pytest.fixture(scope="module")
def llama8():
    return resolve_catalog(LLAMA8).spec


def settings(version: str = "0.33", **kw) -> V.VllmSettings:
    kw.setdefault("max_model_len", 4096)
    return V.resolved_settings(V.VllmSettings(version=version, **kw), gpu_total_bytes=V.cuda_total_bytes(H100), gpu_name="NVIDIA H100 80GB HBM3")


def test_versions_parse_and_unknown_ones_are_one_clear_error():
    assert V.vllm_version(None).name == V.CURRENT_VLLM_VERSION == "0.33"
    assert V.vllm_version("v0.32.0").name == "0.32"
    assert V.vllm_version("0.10.2").engine == "v1"
    assert V.vllm_version("0.7.3").engine == "v0"
    with pytest.raises(InvalidWorkloadError, match=r"0\.33, 0\.32, 0\.19, 0\.10, 0\.7"):
        Workload(runtime="vllm", vllm_version="0.4")


def test_default_batch_limits_follow_get_batch_defaults():
    v33, v7 = V.vllm_version("0.33"), V.vllm_version("0.7")
    # arg_utils.py get_batch_defaults: >= 70 GiB and not A100 -> 8192 tokens / 1024 seqs (OpenAI server).
    assert V.default_batch_limits(v33, max_model_len=4096, gpu_total_bytes=79 * GiB, gpu_name="NVIDIA H100") == (8192, 1024)
    assert V.default_batch_limits(v33, max_model_len=4096, gpu_total_bytes=79 * GiB, gpu_name="NVIDIA A100-SXM4-80GB") == (2048, 256)
    assert V.default_batch_limits(v33, max_model_len=4096, gpu_total_bytes=23 * GiB, gpu_name="RTX 4090") == (2048, 256)
    # V0: no chunked prefill up to 32K, so the profile is max(max_model_len, 2048) tokens.
    assert V.default_batch_limits(v7, max_model_len=8192, gpu_total_bytes=79 * GiB, gpu_name="H100") == (8192, 256)
    assert V.default_batch_limits(v7, max_model_len=131072, gpu_total_bytes=79 * GiB, gpu_name="H100") == (2048, 256)


def test_capture_sizes_match_the_logged_graph_counts():
    # 0.33 grid [1,2,4] + range(8,256,8) + range(256, 513, 16): 3 + 31 + 17 = 51 PIECEWISE sizes up
    # to 512 = 2 x 256 seqs, and the 35 of them <= 256 again as FULL decode graphs. vLLM logs exactly
    # "Profiling CUDA graph memory: PIECEWISE=51 (largest=512), FULL=35 (largest=256)" (PR #39559).
    s = settings(max_num_seqs=256)
    sizes = V.capture_sizes(s)
    assert (len(sizes), sizes[-1], V.cudagraph_count(s)) == (51, 512, 86)
    # 0.10.2: [1,2,4] + range(8, 513, 8) = 3 + 64 = 67, PIECEWISE only.
    s10 = settings("0.10", max_num_seqs=256)
    assert (len(V.capture_sizes(s10)), V.cudagraph_count(s10)) == (67, 67)
    # V0 0.7.3: [1, 2, 4] + multiples of 8 up to the first >= max_num_seqs: 3 + 32 = 35 at 256, 3 + 13 at 100.
    assert len(V.capture_sizes(settings("0.7", max_num_seqs=256))) == 35
    assert V.capture_sizes(settings("0.7", max_num_seqs=100))[-1] == 104
    # --enforce-eager captures nothing and costs nothing.
    eager = settings(enforce_eager=True)
    assert V.capture_sizes(eager) == () and V.cudagraph_bytes(resolve_catalog(LLAMA8).spec, eager, compute_bytes=2) == 0


def test_forward_profile_splits_only_the_intermediate_dims(llama8):
    # Per token, bf16: MLP block 3h (residual, normed input, output) + 3I/TP (gate_up 2I, act I);
    # attention 3h + (2q + 2kv)/TP + 2kv. Llama-8B: h 4096, I 14336, q 4096, kv 1024.
    tp1 = V.forward_activation_bytes(llama8, tokens=8192, compute_bytes=2, tp=1)
    assert tp1 == 8192 * 2 * (3 * 4096 + 3 * 14336)
    tp2 = V.forward_activation_bytes(llama8, tokens=8192, compute_bytes=2, tp=2)
    assert tp2 == 8192 * 2 * (3 * 4096 + 3 * 14336 // 2)
    assert tp1 > tp2 > tp1 // 2  # not divided by TP as a whole


def test_sampler_term_per_version(llama8):
    # One row of full-vocabulary logits per profiled request (min(max_num_seqs, tokens)).
    # 0.19+ also keeps the Triton top-k/top-p scratch: one fp32 row per SM (132 assumed) over the vocabulary.
    assert V.sampler_bytes(llama8, requests=1024, version=V.vllm_version("0.33")) == 1024 * 128_256 * 14 + 132 * 128_256 * 4
    assert V.sampler_bytes(llama8, requests=64, version=V.vllm_version("0.19")) == 64 * 128_256 * 14 + 64 * 128_256 * 4
    # The full-vocabulary sort of 0.10.2 and V0: logits 2 + fp32 copy 4 + torch.sort's 32 = 38 B.
    assert V.sampler_bytes(llama8, requests=1024, version=V.vllm_version("0.10")) == 1024 * 128_256 * 38
    assert V.sampler_bytes(llama8, requests=256, version=V.vllm_version("0.7")) == 256 * 128_256 * 38


def test_activation_peak_does_not_shrink_with_tp_when_the_sampler_dominates(llama8):
    # V0 on an H100, max_model_len 8192: 8192 profiled tokens over 256 sequences. The sampler
    # (256 x 128,256 x 38 B = 1.25 GB) plus the kept hidden states (8192 x 4096 x 2) outweighs the
    # forward, so TP=1 and TP=2 peak alike: 1.22 GiB (vLLM logged 1.26 GiB for both, PR #10511).
    a1 = V.activation_peak_bytes(llama8, settings("0.7", max_model_len=8192, tensor_parallel_size=1), compute_bytes=2)
    a2 = V.activation_peak_bytes(llama8, settings("0.7", max_model_len=8192, tensor_parallel_size=2), compute_bytes=2)
    assert a1 == a2 == 8192 * 4096 * 2 + 256 * 128_256 * 38
    assert round(a1 / GiB, 2) == 1.22


def test_kv_blocks_per_rank_dtype_and_sliding_window(llama8):
    s = settings()
    # 16 tokens x 32 layers x 2 (K, V) x 8 heads x 128 x 2 B = 2 MiB; TP=2 halves the heads; fp8 halves the bytes.
    assert V.kv_bytes_per_block(llama8, s, kv_bits=16) == 2 * MiB
    assert V.kv_bytes_per_block(llama8, settings(tensor_parallel_size=2), kv_bits=16) == MiB
    assert V.kv_bytes_per_block(llama8, s, kv_bits=8) == MiB
    # TP beyond the KV heads replicates one head per rank.
    assert V.kv_bytes_per_block(llama8, settings(tensor_parallel_size=16), kv_bits=16) == 2 * MiB // 8
    # gpt-oss-20b: 12 sliding (window 128) + 12 full layers. At max_model_len 32768 with 2048 batched
    # tokens a full layer needs 2048 blocks, a sliding one cdiv(127 + 2048, 16) + 1 = 137
    # (SlidingWindowSpec.max_admission_blocks_per_request): per whole-model block (2048 + 137) / 2.
    oss = resolve_catalog("openai/gpt-oss-20b").spec
    s_oss = V.resolved_settings(V.VllmSettings(max_model_len=32768), gpu_total_bytes=23 * GiB, gpu_name="RTX 4090")
    assert V.kv_blocks_per_request(oss, s_oss) == (2048 + 137) / 2


def test_h100_llama3_8b_budget_against_the_pr_10511_log(llama8):
    # "total_gpu_memory 79.22GiB ... the current vLLM instance can use 71.29GiB ... model weights take 14.96GiB"
    w = Workload(precision="bf16", runtime="vllm", context_length=8192, vllm_version="0.7")
    b = V.vllm_budget(llama8, w, gpu_usable_bytes=H100, gpu_name="NVIDIA H100 80GB HBM3")
    assert round(b.gpu_total_bytes / GiB, 2) == 79.22
    assert round(b.requested_bytes / GiB, 1) == 71.3
    assert round(b.weights_bytes / GiB, 2) == 14.96
    assert b.starts and not b.cudagraphs_in_budget
    # KV = requested - weights - activation peak - non-torch, whole 2 MiB blocks.
    assert b.available_kv_bytes == b.requested_bytes - b.weights_bytes - b.activation_peak_bytes - b.non_torch_bytes
    assert b.num_blocks == b.available_kv_bytes // (2 * MiB)
    assert b.kv_tokens == b.num_blocks * 16


def test_current_version_counts_cuda_graphs_inside_the_budget(llama8):
    w = Workload(precision="bf16", runtime="vllm", context_length=8192)
    b = V.vllm_budget(llama8, w, gpu_usable_bytes=H100, gpu_name="NVIDIA H100 80GB HBM3")
    assert b.cudagraphs_in_budget and b.cudagraph_bytes > 0
    assert b.available_kv_bytes == b.requested_bytes - b.weights_bytes - b.activation_peak_bytes - b.non_torch_bytes - b.cudagraph_bytes
    eager = V.vllm_budget(llama8, Workload(precision="bf16", runtime="vllm", context_length=8192, enforce_eager=True),
                          gpu_usable_bytes=H100, gpu_name="NVIDIA H100 80GB HBM3")
    assert eager.available_kv_bytes == b.available_kv_bytes + b.cudagraph_bytes


def test_will_it_start_and_the_smallest_fix(llama8):
    # 128K context on a 24 GB card: weights fit, one request's KV (16 GiB) does not.
    w = Workload(precision="bf16", runtime="vllm", context_length=131072)
    cap = vllm_capacity(llama8, w, gpu_bytes=RTX4090, gpu_name="NVIDIA GeForce RTX 4090", nvlink=False)
    assert not cap.starts and "cannot hold one request" in cap.reason
    fix = cap.fix
    assert fix is not None and fix.kind == "max_model_len"  # eager and fp8 KV alone are not enough
    assert fix.command.startswith(f"vllm serve {LLAMA8} --max-model-len ") and fix.max_concurrency >= 1
    assert fix.workload.context_length == cap.budget.max_model_len_that_fits
    # 70B in bf16 on one H100 (131 GiB of weights): no memory for KV at all; more GPUs is the fix.
    spec70 = resolve_catalog("meta-llama/Llama-3.1-70B").spec
    fix70 = startup_fix(spec70, Workload(precision="bf16", runtime="vllm"), gpu_bytes=H100, gpu_name="NVIDIA H100 80GB HBM3")
    assert fix70 is not None and fix70.kind == "tensor_parallel" and "--tensor-parallel-size " in fix70.command
    # A workload that starts needs no fix.
    assert startup_fix(llama8, Workload(precision="bf16", runtime="vllm"), gpu_bytes=H100) is None


def test_start_up_fails_when_utilization_leaves_no_room_for_the_context(llama8):
    b = V.vllm_budget(llama8, Workload(precision="bf16", runtime="vllm", gpu_memory_utilization=1.0), gpu_usable_bytes=H100)
    assert not b.starts and "free memory at start-up" in b.reason


def test_estimate_is_the_card_size_needed(llama8):
    w = Workload(precision="bf16", runtime="vllm", context_length=4096, batch_size=4, gpu_memory_utilization=0.8)
    b = estimate(llama8, w).breakdown
    # Four requests of 4096 tokens: 4 x 256 blocks x 2 MiB.
    assert b.kv_cache_bytes == 4 * 256 * 2 * MiB
    # The card that starts it: the budget (80 % of mem_get_info's total) holds weights + profile +
    # non-torch + graphs + KV; nvidia-smi shows the driver's reserve on top.
    budget = V.vllm_budget(llama8, w, gpu_usable_bytes=b.total_bytes)
    assert budget.starts and budget.max_concurrency >= 4
    smaller = V.vllm_budget(llama8, w, gpu_usable_bytes=b.total_bytes - 256 * MiB)
    assert smaller.max_concurrency < 4


def test_cli_prints_the_command_and_json_has_the_answer(capsys):
    assert main(["estimate", LLAMA8, "--offline", "--runtime", "vllm", "--precision", "bf16", "--max-model-len", "131072",
                 "--vllm-version", "0.32", "--max-num-seqs", "64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = [c for c in data["gpu_ranking"] if c["vllm_starts"] is not None]
    assert rows and all("vllm_command" in c for c in rows)
    assert all("--max-num-seqs 64" in c["vllm_command"] for c in rows)
    failing = [c for c in rows if not c["vllm_starts"]] + data["vllm_not_starting"]
    assert data["vllm_not_starting"] and all(c["vllm_reason"] for c in failing)
    # The closest configurations that do not start each come with the command that does.
    fixes = [c["vllm_fix"] for c in data["vllm_not_starting"] if c["vllm_fix"]]
    assert fixes and all(f["command"].startswith(f"vllm serve {LLAMA8} ") and f["max_concurrency"] >= 1 for f in fixes)
    assert main(["estimate", LLAMA8, "--offline", "--runtime", "vllm", "--enforce-eager", "--kv-cache-dtype", "fp8"]) == 0
    text = capsys.readouterr().out
    assert "will `vllm serve` start?" in text and "--enforce-eager" in text and "--kv-cache-dtype fp8" in text


def test_main_page_answers_will_it_start_with_the_command_line():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../app.py", default_timeout=60)
    for k, v in {"model": LLAMA8, "precision": "bf16", "runtime": "vllm", "context": "32768", "vllm_version": "0.32",
                 "max_num_seqs": "128", "eager": "true"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception and not at.error
    assert any(h.value == "Will `vllm serve` start?" for h in at.header)
    commands = [c.value for c in at.code if c.value.startswith("vllm serve")]
    assert commands and all("--max-num-seqs 128" in c and "--enforce-eager" in c for c in commands)
    frames = [d.value for d in at.dataframe if "vLLM starts" in d.value.columns]
    assert frames and set(frames[0]["vLLM starts"]) <= {"yes", "no"} and "SGLang KV tokens" in frames[0].columns
    text = " ".join(m.value for m in at.markdown)
    assert "does not start" in text and "Smallest change" in text
    terms = [d.value for d in at.dataframe if "Term" in d.value.columns]
    assert terms and {"Weights (this rank)", "Activation peak (profile)", "CUDA graphs", "KV cache available"} <= set(terms[0]["Term"])
    assert "none (--enforce-eager)" in set(terms[0].iloc[:, 2])


def test_vllm_ranking_fit_is_the_engine_starting_on_that_gpu(llama8):
    from calculator.report import build_plan, serving_for

    w = Workload(precision="bf16", runtime="vllm", context_length=8192, batch_size=2)
    plan = build_plan(llama8, w)
    for c in plan.ranking[:40]:
        s = serving_for(plan, c)
        if c.tensor_parallel_ok:
            assert c.fits == (s.starts and s.max_concurrency >= 2), (c.gpu.id, c.count)
    assert plan.cheapest is not None and plan.cheapest.fits


@pytest.mark.parametrize(
    ("version", "engine", "sampler", "graphs_in_budget", "graphs", "every_rank"),
    [
        # 0.33.0 / 0.32.0: FlashInfer/Triton sampler (no sort), graphs profiled into the budget
        # (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1), 51 PIECEWISE + 35 FULL at 256 seqs.
        ("0.33", "v1", 14, True, (51, 86), True),
        ("0.32", "v1", 14, True, (51, 86), True),
        # 0.19.0: same sampler and grid, graphs not yet in the budget (env default "0").
        ("0.19", "v1", 14, False, (51, 86), True),
        # 0.10.2: full-vocab sort, graphs after the KV cache, 67 PIECEWISE only.
        ("0.10", "v1", 38, False, (67, 67), True),
        # 0.7.3 (V0): full-vocab sort on rank 0 only, 35 graphs up to max_num_seqs.
        ("0.7", "v0", 38, False, (35, 35), False),
    ],
)
def test_each_version_term_by_term(version, engine, sampler, graphs_in_budget, graphs, every_rank):
    v = V.vllm_version(version)
    assert (v.engine, v.sampler_bytes_per_logit, v.cudagraphs_in_budget, v.sampler_on_every_rank) == (engine, sampler, graphs_in_budget, every_rank)
    s = settings(version, max_num_seqs=256)
    assert (len(V.capture_sizes(s)), V.cudagraph_count(s)) == graphs


def test_a_higher_utilization_is_the_first_fix_when_it_is_enough(llama8):
    # 49,152 tokens of bf16 KV (6 GiB) miss the 0.9 budget of a 24 GB card by a little: the lowest
    # --gpu-memory-utilization (in 0.01 steps, at most 0.95) that starts it comes first.
    w = Workload(precision="bf16", runtime="vllm", context_length=49152)
    fix = startup_fix(llama8, w, gpu_bytes=RTX4090, gpu_name="NVIDIA GeForce RTX 4090", nvlink=False, datacenter=False)
    assert fix is not None and fix.kind == "gpu_memory_utilization"
    u = fix.workload.gpu_memory_utilization
    assert 0.9 < u <= 0.95 and f"--gpu-memory-utilization {u:g}" in fix.command
    below = V.vllm_budget(llama8, Workload(precision="bf16", runtime="vllm", context_length=49152, gpu_memory_utilization=round(u - 0.01, 2)),
                          gpu_usable_bytes=RTX4090, nvlink=False, datacenter=False)
    assert not below.starts


def test_encoder_only_models_start_without_a_kv_cache():
    bert = resolve_catalog("google-bert/bert-base-uncased").spec
    b = V.vllm_budget(bert, Workload(runtime="vllm", context_length=512), gpu_usable_bytes=RTX4090, nvlink=False, datacenter=False)
    assert b.starts and b.kv_tokens == 0 and b.max_concurrency == 256  # max_num_seqs on a 24 GB card


def test_nccl_init_and_lazy_parts_by_snapshot_order_and_nccl(llama8):
    # NCCL >= 2.22 (0.10.2 and later) connects channels at the first large collective, inside the
    # profile; what the distributed setup allocates up front is inside 0.10.2's budget (snapshot
    # first) and outside 0.19+'s ("Initialize the distributed environment BEFORE taking memory
    # snapshot"). V0's NCCL 2.21 connects everything at init, inside its budget.
    w = Workload(precision="bf16", runtime="vllm", context_length=8192, num_gpus=2)
    v010 = V.vllm_budget(llama8, replace(w, vllm_version="0.10"), gpu_usable_bytes=H100, nvlink=True)
    v019 = V.vllm_budget(llama8, replace(w, vllm_version="0.19"), gpu_usable_bytes=H100, nvlink=True)
    v07 = V.vllm_budget(llama8, replace(w, vllm_version="0.7"), gpu_usable_bytes=H100, nvlink=True)
    assert v010.non_torch_bytes == V.NON_TORCH_TP1_BYTES_V1 + V.NCCL_INIT_BYTES_NVLINK + 1864 * MiB and v010.nccl_outside_bytes == 0
    assert v019.non_torch_bytes == V.NON_TORCH_TP1_BYTES_V1 + 1864 * MiB and v019.nccl_outside_bytes == V.NCCL_INIT_BYTES_NVLINK
    assert v07.non_torch_bytes == V.NON_TORCH_TP1_BYTES_V0 + V.NCCL_EAGER_BYTES_NVLINK and v07.nccl_outside_bytes == 0
    # The 0.19.0 H100 SXM logs: non-torch 2.07 GiB at TP=2, 2.13 at TP=4 (Llama-3.1-8B); 0.25 at TP=1.
    assert round(v019.non_torch_bytes / GiB, 2) == 2.07
    v019_tp4 = V.vllm_budget(llama8, replace(w, vllm_version="0.19", num_gpus=4), gpu_usable_bytes=H100, nvlink=True)
    assert round(v019_tp4.non_torch_bytes / GiB, 2) == 2.13
    # PCIe: the 215 MiB of the 2x RTX 4090 V0 log, at init under V0 and during the profile with lazy connect.
    pcie = V.vllm_budget(llama8, replace(w, vllm_version="0.19"), gpu_usable_bytes=RTX4090, nvlink=False, datacenter=False)
    assert pcie.non_torch_bytes == V.NON_TORCH_TP1_BYTES_CONSUMER + V.NCCL_BYTES_PCIE and pcie.nccl_outside_bytes == 0


def test_moe_workspace_is_sized_from_the_triton_experts_shapes_and_kept_through_sampling():
    # Qwen3-30B-A3B at 8192 tokens, TP=1: N = 2 x 768, K = 2048, top_k 8: workspace1 8192 x 8 x 2048
    # and workspace2 8192 x 8 x 2048, bf16 = 512 MiB, held by the WorkspaceManager while the sampler runs.
    qwen_moe = resolve_catalog("Qwen/Qwen3-30B-A3B").spec
    assert V.moe_workspace_bytes(qwen_moe, tokens=8192, compute_bytes=2, tp=1) == 2 * 8192 * 8 * 2048 * 2
    s19 = V.resolved_settings(V.VllmSettings(version="0.19", max_model_len=8192), gpu_total_bytes=79 * GiB, gpu_name="NVIDIA H100 80GB HBM3")
    s10 = replace(s19, version="0.10")
    a19 = V.activation_peak_bytes(qwen_moe, s19, compute_bytes=2)
    sampler = V.sampler_bytes(qwen_moe, requests=1024, version=V.vllm_version("0.19"))
    assert a19 == 512 * MiB + 8192 * 2048 * 2 + sampler
    # vLLM 0.19.0 logged "torch peak memory increase: 2.68GiB" for this model on an H100 (llm-d-planner logs).
    assert abs(a19 / GiB - 2.68) < 0.05
    # Dense models have no workspace; 0.10.2 is not modelled as keeping it.
    assert V.moe_workspace_bytes(resolve_catalog("meta-llama/Llama-3.1-8B").spec, tokens=8192, compute_bytes=2, tp=1) == 0
    assert V.activation_peak_bytes(qwen_moe, s10, compute_bytes=2) == 8192 * 2048 * 2 + V.sampler_bytes(qwen_moe, requests=1024, version=V.vllm_version("0.10"))


def test_mxfp4_weights_do_not_start_below_ampere_whatever_the_memory():
    """gpt-oss-20b (MXFP4 experts) on V100 32GB: the memory fits, but vLLM's config check refuses the method below
    compute capability 8.0 (`Mxfp4Config.get_min_capability` = 80, vllm/config/vllm.py `_get_quantization_config`).
    The ranking said it starts on 1x V100 32GB and on T4s."""
    from calculator.gpus import compute_capability, get_gpu
    from calculator.report import build_plan, serving_for

    spec = resolve_catalog("openai/gpt-oss-20b").spec
    assert spec.quantization.method == "mxfp4"
    w = Workload(runtime="vllm", precision="bf16")
    plan = build_plan(spec, w)
    by = {(c.gpu.id, c.count): c for c in plan.ranking}
    for gpu_id in ("v100-32gb", "v100-16gb", "t4"):
        for count in (1, 2):
            c = by[(gpu_id, count)]
            assert not c.fits and c.reason.startswith("vLLM refuses mxfp4 weights on"), (gpu_id, count)
            served = serving_for(plan, c)
            assert not served.starts and served.fix is None  # no flag makes an old GPU run the kernels
    assert "V100 32GB (compute capability 7.0)" in by[("v100-32gb", 1)].reason and "need compute capability 8.0" in by[("v100-32gb", 1)].reason
    # Ampere and newer start (A10 is 8.6, A100 8.0: both at or above 80).
    assert by[("a100-80gb-sxm", 1)].fits and by[("a10", 1)].fits and serving_for(plan, by[("a10", 1)]).starts
    # The same card size without the capability (an AMD part, or no GPU given) is the memory answer alone.
    b = V.vllm_budget(spec, w, gpu_usable_bytes=get_gpu("v100-32gb").usable_bytes)
    assert b.starts
    assert not V.vllm_budget(spec, w, gpu_usable_bytes=get_gpu("v100-32gb").usable_bytes,
                             compute_capability=compute_capability(get_gpu("v100-32gb"))).starts
    # A bf16 model has no such gate on V100 (vLLM casts to fp16 there).
    assert V.capability_problem("bf16", 70) == "" and V.capability_problem("awq", 70) and not V.capability_problem("awq", 75)


GEMMA3_4B = {  # google/gemma-3-4b-it's config.json dimensions
    "model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "mm_tokens_per_image": 256, "torch_dtype": "bfloat16",
    "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
                    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208, "sliding_window": 1024,
                    "max_position_embeddings": 131072, "query_pre_attn_scalar": 256},
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                      "num_attention_heads": 16, "image_size": 896, "patch_size": 14},
}


def test_encoder_profile_batch_follows_the_multimodal_budget():
    from calculator.spec import model_spec_from_config

    gemma = model_spec_from_config("google/gemma-3-4b-it", GEMMA3_4B)
    s = V.resolved_settings(V.VllmSettings(version="0.19", max_model_len=8192), gpu_total_bytes=79 * GiB, gpu_name="NVIDIA H100 80GB HBM3")
    enc = V.encoder_profile(gemma, s, compute_bytes=2)
    # vLLM 0.19.0 logged for gemma-3-4b/12b/27b on an H100: "Encoder cache will be initialized with a budget of
    # 8192 tokens, and profiled with 32 image items" (llm-d-planner logs): 8192 // 256 tokens per image.
    assert enc is not None and (enc.budget, enc.items, enc.tokens_per_item, enc.patches_per_item) == (8192, 32, 256, 64 * 64)
    # SigLIP over 32 x 4096 patches: (2 x 1152 + max(4 x 1152, 2 x 4304)) x 2 B per patch; the 32 x 256 embeddings
    # of the text width stay cached through the text run.
    assert enc.peak_bytes == 32 * 4096 * 2 * (2 * 1152 + 2 * 4304)
    assert enc.output_bytes == 32 * 256 * 2560 * 2
    text_only = replace(gemma, raw_config={k: v for k, v in GEMMA3_4B.items() if k != "vision_config"})
    assert V.activation_peak_bytes(gemma, s, compute_bytes=2) == enc.output_bytes + V.activation_peak_bytes(text_only, s, compute_bytes=2)
    # A smaller budget profiles fewer images; an image larger than the budget raises the budget to one image.
    small = replace(s, max_num_batched_tokens=2048, max_num_seqs=256)
    assert V.encoder_profile(gemma, small, compute_bytes=2).items == 8
    tiny = replace(s, max_num_batched_tokens=128)
    assert (V.encoder_profile(gemma, tiny, compute_bytes=2).budget, V.encoder_profile(gemma, tiny, compute_bytes=2).items) == (256, 1)
    # V0, text-only models and processors that size images at run time (no fixed image_size) are not profiled here.
    assert V.encoder_profile(gemma, replace(s, version="0.7"), compute_bytes=2) is None
    assert V.encoder_profile(text_only, s, compute_bytes=2) is None
    dynamic = replace(gemma, raw_config={**GEMMA3_4B, "vision_config": {"hidden_size": 1280, "patch_size": 14, "spatial_merge_size": 2}})
    assert V.encoder_profile(dynamic, s, compute_bytes=2) is None


def test_the_terms_table_names_the_encoder_profile():
    from calculator.spec import model_spec_from_config
    from ui.widgets import vllm_terms_frame

    gemma = model_spec_from_config("google/gemma-3-4b-it", GEMMA3_4B)
    b = V.vllm_budget(gemma, Workload(runtime="vllm", context_length=8192, vllm_version="0.19"), gpu_usable_bytes=H100,
                      gpu_name="NVIDIA H100 80GB HBM3")
    assert b.encoder is not None and b.encoder.items == 32
    why = vllm_terms_frame(b).set_index("Term").loc["Activation peak (profile)"].iloc[-1]
    assert "encoder profiled first: 32 images × 256 tokens" in why
    text = V.vllm_budget(resolve_catalog("meta-llama/Llama-3.1-8B").spec, Workload(runtime="vllm"), gpu_usable_bytes=H100)
    assert text.encoder is None and "encoder" not in vllm_terms_frame(text).set_index("Term").loc["Activation peak (profile)"].iloc[-1]


def test_mxfp4_needs_a_vllm_that_has_it():
    """vLLM 0.7.3 has no mxfp4 method (it came with gpt-oss in 0.10.1): gpt-oss-20b starts nowhere under it."""
    from calculator.report import build_plan, serving_for

    spec = resolve_catalog("openai/gpt-oss-20b").spec
    plan = build_plan(spec, Workload(runtime="vllm", vllm_version="0.7"))
    assert not any(c.fits for c in plan.ranking)
    first = plan.ranking[0]
    assert first.reason.startswith("vLLM 0.7 has no mxfp4 quantization (added in 0.10.1)")
    assert serving_for(plan, first).fix is None
    assert V.version_problem("mxfp4", V.vllm_version("0.10")) == "" and V.version_problem("bf16", V.vllm_version("0.7")) == ""
    assert any(c.fits for c in build_plan(spec, Workload(runtime="vllm", vllm_version="0.10")).ranking)


def _h100_defaults(version: str = "0.19", **kw) -> V.VllmSettings:
    """`vllm serve` defaults on an H100 at 8K context, as the llm-d-planner 0.19.0 logs run it."""
    return V.resolved_settings(V.VllmSettings(version=version, max_model_len=8192, **kw), gpu_total_bytes=int(79.19 * GiB),
                               gpu_name="NVIDIA H100 80GB HBM3")


def test_gpt_oss_captures_up_to_1024_as_its_architecture_config_asks():
    # `GptOssForCausalLMConfig.verify_and_update_config` (model_executor/models/config.py, 0.19.0 and 0.33.0)
    # sets max_cudagraph_capture_size = 1024: [1,2,4] + range(8,256,8) + range(256,1025,16) = 3 + 31 + 49 = 83,
    # as the 0.19.0 log prints "PIECEWISE=83 (largest=1024), FULL=83 (largest=1024)".
    oss = resolve_catalog("openai/gpt-oss-20b").spec
    for version in ("0.19", "0.33"):
        s = _h100_defaults(version, tensor_parallel_size=2)
        sizes = V.capture_sizes(s, oss)
        assert (len(sizes), sizes[-1], len(V.full_capture_sizes(s, oss)), V.cudagraph_count(s, oss)) == (83, 1024, 83, 166)
    # Other architectures keep min(2 x max_num_seqs, 512): 51 + 51 graphs, as every other log of the campaign prints.
    s = _h100_defaults()
    assert (V.capture_sizes(s, resolve_catalog(LLAMA8).spec)[-1], V.cudagraph_count(s, resolve_catalog(LLAMA8).spec)) == (512, 102)
    # Capped by max_num_batched_tokens (`min(max_num_tokens, max_cudagraph_capture_size)`, config/vllm.py).
    assert V.capture_sizes(_h100_defaults(max_num_batched_tokens=768), oss)[-1] == 768


def test_fa3_split_scratch_is_the_full_graph_pool_on_hopper(llama8):
    # FlashAttentionMetadataBuilder (v1/attention/backends/flash_attn.py 0.19.0): FULL graphs on FA3 fix
    # num_splits = 32 (`flash_attn_max_num_splits_for_cuda_graph`, config/attention.py); out_accum
    # [32, tokens, heads, head_size] + lse [32, tokens, heads], fp32. Llama-3.1-8B at 512 decode tokens:
    # 32 x 512 x 32 x (128 + 1) x 4 B = 258 MiB. The 0.19.0 logs' DEBUG line: "Estimated FULL CUDA graph
    # memory: 260.00 MiB first-capture" at TP=1, 132 at TP=2, 70 at TP=4; Qwen2.5-7B (28 heads): 228.
    assert V.fa3_split_bytes(llama8, tokens=512, tp=1) == 32 * 512 * 32 * 129 * 4 == 258 * MiB
    assert V.fa3_split_bytes(llama8, tokens=512, tp=2) == 129 * MiB
    assert V.fa3_split_bytes(resolve_catalog("Qwen/Qwen2.5-7B-Instruct").spec, tokens=512, tp=1) == 32 * 512 * 28 * 129 * 4
    s = _h100_defaults()
    assert V.uses_fa3_splits(s, compute_bytes=2, compute_capability=90)
    # Not on Ampere (FA2: `get_flash_attn_version` picks 3 on SM 9.x only), not in fp32 (FlashAttention's
    # supported_dtypes are fp16/bf16: the fp32 log runs TRITON_ATTN and logs a 4 MiB FULL first capture),
    # not without FULL graphs (0.10.2 captures PIECEWISE only).
    assert not V.uses_fa3_splits(s, compute_bytes=2, compute_capability=80)
    assert not V.uses_fa3_splits(s, compute_bytes=4, compute_capability=90)
    assert not V.uses_fa3_splits(_h100_defaults("0.10"), compute_bytes=2, compute_capability=90)


def test_cuda_graph_memory_is_the_pool_plus_a_driver_cost_per_graph_and_layer(llama8):
    # 102 graphs, pool = FA3's 258 MiB, per graph 1,316 KiB + 32 x 171 KiB: 0.91 GiB, the Llama-3.1-8B log's
    # "Graph capturing finished in 6 secs, took 0.91 GiB" it was read from (with the PP=2 / PP=4 runs).
    s = _h100_defaults()
    b = V.cudagraph_bytes(llama8, s, compute_bytes=2, compute_capability=90)
    assert b == 258 * MiB + 102 * (1316 + 32 * 171) * 1024
    assert round(b / GiB, 2) == 0.91
    # Without FA3 the pool is the largest PIECEWISE capture's forward (512 tokens).
    pw = V.forward_activation_bytes(llama8, tokens=512, compute_bytes=2, tp=1)
    assert V.cudagraph_bytes(llama8, s, compute_bytes=2, compute_capability=80) == pw + 102 * (1316 + 32 * 171) * 1024
    # MoE layers cost 46 KiB more per graph (read from Mixtral-8x7B at TP=2); held out, Qwen3-30B-A3B's
    # 48 MoE layers: 1.41 GiB logged.
    qwen_moe = resolve_catalog("Qwen/Qwen3-30B-A3B").spec
    q = V.cudagraph_bytes(qwen_moe, s, compute_bytes=2, compute_capability=90)
    assert q == V.fa3_split_bytes(qwen_moe, tokens=512, tp=1) + 102 * (1316 + 48 * (171 + 46)) * 1024
    assert abs(q / GiB - 1.41) < 0.03


def test_mxfp4_experts_run_monolithic_on_hopper_so_no_workspace_stays_through_sampling():
    # oracle/mxfp4.py (0.19.0, 0.33.0) prefers OAITritonMxfp4ExpertsMonolithic (SM 9.0-10.x), whose
    # `FusedMoEKernelMonolithicImpl.apply` takes nothing from the WorkspaceManager: the gpt-oss-20b TP=2 log
    # ("Using 'TRITON' Mxfp4 MoE backend") prints "torch peak memory increase: 2.87GiB".
    oss = resolve_catalog("openai/gpt-oss-20b").spec
    v19 = V.vllm_version("0.19")
    assert not V.moe_workspace_kept(v19, "mxfp4", 90)
    assert V.moe_workspace_kept(v19, "mxfp4", 80)  # Ampere: Marlin, a modular kernel
    assert V.moe_workspace_kept(v19, "bf16", 90) and not V.moe_workspace_kept(V.vllm_version("0.10"), "bf16", 90)
    w = Workload(runtime="vllm", context_length=8192, num_gpus=2, gpu_memory_utilization=0.9, vllm_version="0.19")
    b = V.vllm_budget(oss, w, gpu_usable_bytes=int(79.19 * GiB) + V.CUDA_TOTAL_RESERVED_BYTES, gpu_name="NVIDIA H100 80GB HBM3",
                      compute_capability=90)
    assert abs(b.activation_peak_bytes / GiB - 2.87) < 0.05


def test_datacenter_blackwell_captures_up_to_1024_from_0_33(llama8):
    # 0.33.0 `VllmConfig._set_cudagraph_sizes`: "1024 if current_platform.is_device_capability_family(100)
    # else 512"; 0.19.0: min(2 x max_num_seqs, 512) on every GPU. 1024 seqs: 3 + 31 + 49 = 83 sizes.
    s33, s19 = _h100_defaults("0.33"), _h100_defaults("0.19")
    assert V.capture_sizes(s33, llama8, compute_capability=100)[-1] == 1024
    assert V.cudagraph_count(s33, llama8, compute_capability=100) == 166
    assert V.capture_sizes(s33, llama8, compute_capability=90)[-1] == 512  # Hopper
    assert V.capture_sizes(s33, llama8, compute_capability=120)[-1] == 512  # RTX 50 / RTX PRO (family 12)
    assert V.capture_sizes(s19, llama8, compute_capability=100)[-1] == 512
    # Still 2 x max_num_seqs below that.
    assert V.capture_sizes(replace(s33, max_num_seqs=256), llama8, compute_capability=100)[-1] == 512
    assert V.capture_sizes(replace(s33, max_num_seqs=128), llama8, compute_capability=100)[-1] == 256


def test_kv_cache_is_the_latent_only_where_vllm_runs_its_mla_backend():
    """vLLM caches the MLA latent for the model types of `is_deepseek_mla` (DeepSeek-V3: 512 + 64 per
    token and layer); MiniCPM3's own attention module expands K/V per head with V padded to the q/k
    head size (vllm/model_executor/models/minicpm3.py), so its block holds 2 x 40 heads x 96."""
    pytest.importorskip("transformers")
    from transformers import AutoConfig

    from calculator.spec import model_spec_from_config

    s = V.VllmSettings(max_model_len=4096)
    ds = model_spec_from_config("deepseek_v3", AutoConfig.for_model("deepseek_v3").to_dict())
    assert V.caches_latent(ds)
    assert V.kv_bytes_per_block(ds, s, kv_bits=16) == ds.num_hidden_layers * (512 + 64) * V.VLLM_BLOCK_SIZE * 2
    cpm = model_spec_from_config("minicpm3", AutoConfig.for_model("minicpm3").to_dict())
    assert "mla" in cpm.layer_types and not V.caches_latent(cpm)
    assert cpm.head_dim == 96 and cpm.num_key_value_heads == 40
    assert V.kv_bytes_per_block(cpm, s, kv_bits=16) == cpm.num_hidden_layers * 2 * 40 * 96 * V.VLLM_BLOCK_SIZE * 2
