"""GPU catalog: loading, usable memory, user-added GPUs, precision support."""

from __future__ import annotations

import pytest

from calculator.errors import InvalidWorkloadError
from calculator.gpus import GPU, get_gpu, interconnect_note, load_gpus, precision_support, with_extra_gpus
from calculator.units import MiB


def test_catalog_has_39_gpus_with_unique_ids():
    gpus = load_gpus()
    assert len(gpus) == 39
    assert len({g.id for g in gpus}) == 39
    assert load_gpus() is gpus  # cached: one parse per process


def test_usable_bytes_is_the_nvidia_smi_total():
    # H100 80GB: nvidia-smi prints 81559MiB, not 80 x 1024 = 81920 (SOURCES.md, S-NVSMI).
    assert get_gpu("h100-sxm").usable_bytes == 81_559 * 2**20 == 85_520_809_984
    # RTX 4090: 24564MiB.
    assert get_gpu("rtx-4090").usable_bytes == 24_564 * 2**20 == 25_757_220_864
    # A40 with ECC on loses 1/16: 46068 MiB.
    assert get_gpu("a40").usable_bytes == 46_068 * MiB
    assert not get_gpu("h100-sxm").usable_is_estimate


def test_missing_readout_is_estimated_and_flagged():
    rtx4080 = get_gpu("rtx-4080")
    assert rtx4080.reported_total_mib is None
    assert rtx4080.usable_is_estimate
    # floor(16 x 1024 x 0.99) = floor(16220.16) = 16220 MiB
    assert rtx4080.usable_bytes == 16_220 * MiB
    assert "estimated" in rtx4080.usable_note


def test_units_bandwidth_and_flops():
    h100 = get_gpu("h100-sxm")
    assert h100.memory_bandwidth_bytes_per_s == 3_350_000_000_000  # 3350 GB/s, decimal
    assert h100.bf16_flops_per_s == pytest.approx(989e12)  # dense, not the 1979 "with sparsity"
    assert h100.fp8_flops_per_s == pytest.approx(1979e12)
    assert get_gpu("v100-16gb").int8_ops_per_s is None  # not published for Volta


def test_unknown_gpu_id_names_the_known_ones():
    with pytest.raises(InvalidWorkloadError, match=r"Unknown GPU id 'h1000'.*h100-sxm"):
        get_gpu("h1000")


def test_user_added_gpu_is_appended_and_usable():
    row = {"id": "my-card", "name": "My Card", "memory_gb": 20, "memory_bandwidth_gbps": 500, "fp16_bf16_tflops_dense": 100, "reported_total_mib": 20000}
    gpus = with_extra_gpus([row])
    assert len(gpus) == 40
    mine = gpus[-1]
    assert isinstance(mine, GPU) and mine.user_added and mine.id == "my-card"
    assert mine.usable_bytes == 20_000 * MiB
    assert len(load_gpus()) == 39  # the bundled table is not changed


def test_user_row_replaces_a_catalog_gpu_in_place():
    # An A40 with ECC off reports 49140 MiB (SOURCES.md).
    a40 = get_gpu("a40")
    row = {"id": "a40", "name": "A40 (ECC off)", "memory_gb": 48, "memory_bandwidth_gbps": 696, "fp16_bf16_tflops_dense": 149.7, "reported_total_mib": 49140}
    gpus = with_extra_gpus([row])
    assert len(gpus) == 39
    replaced = next(g for g in gpus if g.id == "a40")
    assert replaced.usable_bytes == 49_140 * MiB > a40.usable_bytes
    assert [g.id for g in gpus] == [g.id for g in load_gpus()]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"id": "x", "name": "X", "memory_bandwidth_gbps": 1, "fp16_bf16_tflops_dense": 1}, "memory_gb"),
        ({"id": "x", "name": "X", "memory_gb": "lots", "memory_bandwidth_gbps": 1, "fp16_bf16_tflops_dense": 1}, "not a number"),
        ({"id": "x", "name": "X", "memory_gb": -4, "memory_bandwidth_gbps": 1, "fp16_bf16_tflops_dense": 1}, "positive"),
        ({"id": "", "name": "X", "memory_gb": 4, "memory_bandwidth_gbps": 1, "fp16_bf16_tflops_dense": 1}, "id"),
        ({"id": "x", "name": "X", "memory_gb": 4, "memory_bandwidth_gbps": 1, "fp16_bf16_tflops_dense": 1, "nvlink": "maybe"}, "nvlink"),
    ],
)
def test_bad_user_rows_are_rejected_with_a_message(row, match):
    with pytest.raises(InvalidWorkloadError, match=match):
        with_extra_gpus([row])


def test_fp8_native_on_hopper_not_on_ampere():
    ok, note = precision_support(get_gpu("h100-sxm"), "fp8")
    assert ok and "fp8" in note
    ok, note = precision_support(get_gpu("a100-80gb-sxm"), "fp8")
    assert not ok and note.startswith("not native") and "16-bit" in note
    assert precision_support(get_gpu("rtx-4090"), "fp8")[0]  # Ada has fp8 tensor cores
    assert precision_support(get_gpu("mi300x"), "fp8")[0]


@pytest.mark.parametrize("gpu_id", ["v100-16gb", "v100-32gb", "t4"])
def test_bf16_not_native_before_ampere(gpu_id):
    ok, note = precision_support(get_gpu(gpu_id), "bf16")
    assert not ok and "fp16" in note
    assert precision_support(get_gpu(gpu_id), "fp16") == (True, "fp16 is supported natively.")


def test_bf16_native_on_ampere_and_later():
    for gpu_id in ("a100-40gb-sxm", "a10", "rtx-3090", "h100-pcie", "b200"):
        assert precision_support(get_gpu(gpu_id), "bf16")[0], gpu_id


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_weight_only_quantization_runs_on_any_cuda_gpu_and_is_flagged_elsewhere(precision):
    ok, note = precision_support(get_gpu("t4"), precision)
    assert ok and "weight-only" in note
    ok, note = precision_support(get_gpu("mi300x"), precision)
    assert not ok and note.startswith("not native")


def test_every_gpu_answers_every_precision():
    for gpu in load_gpus():
        for precision in ("fp32", "bf16", "fp16", "fp8", "int8", "int4"):
            ok, note = precision_support(gpu, precision)
            assert isinstance(ok, bool) and note


def test_unknown_precision_is_an_error():
    with pytest.raises(InvalidWorkloadError):
        precision_support(get_gpu("t4"), "fp4")


def test_interconnect_notes():
    assert interconnect_note(get_gpu("rtx-4090"), 1) == ""
    assert interconnect_note(get_gpu("rtx-4090"), 2).startswith("PCIe only: tensor parallel over PCIe is slow")
    assert interconnect_note(get_gpu("h100-sxm"), 8).startswith("NVLink between all 8 GPUs")
    assert "pairs only" in interconnect_note(get_gpu("rtx-a6000"), 4)


def test_compute_capability_from_the_architecture():
    """NVIDIA's CUDA compute capability table: V100 7.0, T4 7.5, A100 8.0, GA10x 8.6, Ada 8.9, Hopper 9.0,
    B200 10.0, GB20x 12.0; AMD and Intel parts have none."""
    from calculator.gpus import compute_capability

    expected = {"v100-32gb": 70, "t4": 75, "a100-80gb-sxm": 80, "a10": 86, "rtx-3090": 86, "l4": 89, "rtx-4090": 89,
                "h100-sxm": 90, "b200": 100, "rtx-5090": 120, "rtx-pro-6000-blackwell": 120, "mi300x": None, "gaudi3": None}
    assert {g: compute_capability(get_gpu(g)) for g in expected} == expected
    assert all(compute_capability(g) is not None for g in load_gpus() if g.vendor == "NVIDIA")
