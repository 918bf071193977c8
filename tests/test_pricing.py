"""Prices: current-price rule, generic ids, user rates, data issues, ranking, live prices."""

from __future__ import annotations

import dataclasses
import http.server
import io
import sys
import threading
import time
import types
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from calculator.errors import InvalidWorkloadError
from calculator.gpus import get_gpu, load_gpus, with_extra_gpus
from calculator.pricing import (
    USER_PROVIDER,
    GPUConfiguration,
    PriceBook,
    PriceRow,
    apply_price_overrides,
    bundled_as_of,
    bundled_price_book,
    cheapest_fit,
    current_prices,
    data_issues,
    fetch_live_prices,
    load_prices,
    price_book,
    rank_configurations,
    tensor_parallel_problem,
)
from calculator.units import MiB

H100_USABLE = 81_559 * MiB  # nvidia-smi total of an H100 80GB
RTX4090_USABLE = 24_564 * MiB


def _quote(provider: str, gpu_id: str, shape: int = 1, quotes=None):
    quotes = current_prices() if quotes is None else quotes
    return next(q for q in quotes if q.provider == provider and q.gpu_id == gpu_id and q.gpus_per_instance == shape)


def _only(rank, gpu_id: str, count: int = 1) -> GPUConfiguration:
    return next(c for c in rank if c.gpu.id == gpu_id and c.count == count)


# --- loading and the current-price rule ---------------------------------------------------


def test_bundled_prices_load():
    rows = load_prices()
    assert len(rows) == 235
    assert load_prices() is rows
    assert bundled_as_of() == "2026-11-16"


def test_latest_high_confidence_dated_row_wins_over_older_and_v7():
    # RunPod Secure H100 SXM: 3.99 (2026-11-09, high) beats 3.49 (2026-09-25, high) and v7 2.99.
    q = _quote("RunPod (Secure Cloud)", "h100-sxm")
    assert q.usd_per_gpu_hour == 3.99 and q.as_of == "2026-11-09"


def test_v8_row_wins_over_v7_for_the_same_provider():
    # Lambda A10: v7 $0.75 is superseded by v8 / dated $1.29 (SOURCES.md: Lambda raised prices).
    assert _quote("Lambda", "a10").usd_per_gpu_hour == 1.29
    # Lambda H100 SXM 2x: only v7 (3.19) and v8 (4.19) list this shape -> v8.
    q = _quote("Lambda", "h100-sxm", 2)
    assert q.usd_per_gpu_hour == 4.19 and "v8" in q.basis


def test_v7_is_dropped_for_every_shape_once_a_newer_row_exists():
    # RunPod Secure A100 80GB PCIe has v7 rows for 1x and 8x; newer rows only for 1x. The v7 8x
    # row must not survive as "current".
    shapes = {q.gpus_per_instance for q in current_prices() if q.provider == "RunPod (Secure Cloud)" and q.gpu_id == "a100-80gb-pcie"}
    assert shapes == {1}


def test_v7_is_kept_when_it_is_all_there_is():
    q = _quote("RunPod (Secure Cloud)", "rtx-a5000")
    assert q.usd_per_gpu_hour == 0.29 and "v7" in q.basis and q.as_of == "undated (v7 snapshot)"


def test_one_quote_per_provider_gpu_shape():
    keys = [(q.provider, q.gpu_id, q.gpus_per_instance) for q in current_prices()]
    assert len(keys) == len(set(keys))


def test_lowest_price_within_the_latest_date():
    # Spheron RTX 4090: 0.53 dated 2026-05-03 and 0.53 dated "2026": one quote, the dated day wins.
    q = _quote("Spheron", "rtx-4090")
    assert q.usd_per_gpu_hour == 0.53 and q.as_of == "2026-05-03"


def test_generic_ids_are_priced_as_the_pcie_card():
    quotes = current_prices()
    assert {q.gpu_id for q in quotes}.isdisjoint({"a100-40gb", "a100-80gb", "h100-80gb"})
    spheron_a100 = _quote("Spheron", "a100-80gb-pcie")
    assert spheron_a100.listed_gpu_id == "a100-80gb" and spheron_a100.usd_per_gpu_hour == 0.82
    assert "form factor not stated" in spheron_a100.note and "a100-80gb-sxm" in spheron_a100.note
    # OpenRelay's "A100 40GB" is the only source of a price for the A100 40GB PCIe row.
    assert _quote("OpenRelay", "a100-40gb-pcie").usd_per_gpu_hour == 0.8
    jarvis = _quote("JarvisLabs", "h100-pcie", 8)
    assert jarvis.listed_gpu_id == "h100-80gb"


# --- offers for a GPU count -----------------------------------------------------------------


def test_exact_shape_wins_and_bigger_shapes_are_paid_whole():
    book = bundled_price_book()
    # AWS sells H100 only as p5.48xlarge (8 GPUs at $6.88): one GPU costs the whole instance.
    aws_1 = next(o for o in book.offers("h100-sxm", 1) if o.provider == "AWS")
    assert aws_1.total_usd_per_hour == pytest.approx(8 * 6.88) and "you pay for 8" in aws_1.note
    aws_8 = next(o for o in book.offers("h100-sxm", 8) if o.provider == "AWS")
    assert aws_8.total_usd_per_hour == pytest.approx(55.04) and aws_8.note == ""
    # Lambda H100 SXM lists 1, 2, 4 and 8 GPUs: 4 GPUs use the 4x price (4.09), not 1x (4.29).
    lambda_4 = next(o for o in book.offers("h100-sxm", 4) if o.provider == "Lambda")
    assert lambda_4.usd_per_gpu_hour == pytest.approx(4.09)
    # A 1-GPU listing is scaled for 2 GPUs, and says so.
    runpod_2 = next(o for o in book.offers("rtx-4090", 2) if o.provider == "RunPod (Community Cloud)")
    assert runpod_2.total_usd_per_hour == pytest.approx(0.68) and "scaled" in runpod_2.note


# --- user rates --------------------------------------------------------------------------------


def test_price_override_adds_your_rate_and_wins_when_cheaper():
    rows = apply_price_overrides(None, {"h100-sxm": 1.25}, as_of="2026-12-01")
    assert len(rows) == len(load_prices()) + 1
    rank = rank_configurations({1: 70 * 10**9}, prices=rows)
    h100 = _only(rank, "h100-sxm")
    assert h100.cheapest_provider == USER_PROVIDER and h100.usd_per_gpu_hour == 1.25 and h100.price_as_of == "2026-12-01"
    assert h100.price_range is not None and h100.price_range[0] == 1.25


def test_price_override_for_an_unpriced_gpu_makes_it_rankable():
    rank = rank_configurations({1: 10 * 10**9}, prices=apply_price_overrides(None, {"t4": 0.05}))
    assert cheapest_fit(rank).gpu.id == "t4"


def test_price_override_can_replace_other_providers():
    rows = apply_price_overrides(None, {"rtx-4090": 0.9}, replace_others=True)
    c = _only(rank_configurations({1: 10**9}, prices=rows), "rtx-4090")
    assert c.cheapest_provider == USER_PROVIDER and c.providers_count == 1 and c.price_range == (0.9, 0.9)


def test_generic_override_maps_like_price_rows():
    rows = apply_price_overrides(None, {"a100-80gb": 0.5})
    assert _quote(USER_PROVIDER, "a100-80gb-pcie", quotes=current_prices(rows)).usd_per_gpu_hour == 0.5


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"h1000": 1.0}, "not in the GPU table"), ({"t4": 0}, "positive"), ({"t4": float("nan")}, "positive"), ({"t4": "1"}, "positive")],
)
def test_bad_overrides_are_rejected(overrides, match):
    with pytest.raises(InvalidWorkloadError, match=match):
        apply_price_overrides(None, overrides)


# --- data issues ---------------------------------------------------------------------------


def test_data_issues_report_unpriced_gpus_estimates_and_generic_rows():
    issues = data_issues()
    unpriced = {"t4", "rtx-3090-ti", "rtx-4080", "rtx-5080", "gb200", "mi250", "mi325x", "mi355x", "gaudi2", "gaudi3"}
    for gpu_id in unpriced:
        assert any("No price for" in i and f"({gpu_id})" in i for i in issues), gpu_id
    # a100-40gb-pcie is priced only through the generic id, so it is not reported unpriced.
    assert not any("(a100-40gb-pcie)" in i for i in issues)
    assert any("rtx-4080" in i and "estimated" in i for i in issues)
    assert any("do not state the form factor" in i for i in issues)
    # The bundled prices name no GPU that the table lacks.
    assert not any("which the GPU table lacks" in i for i in issues)


def test_data_issues_report_price_rows_for_missing_gpus():
    extra = PriceRow(provider="Lambda", gpu_id="gh200", gpu="GH200 96GB", usd_per_gpu_hour=2.29, snapshot="SkyPilot catalog v8 (undated snapshot)")
    issues = data_issues(prices=[*load_prices(), extra])
    assert any("'gh200'" in i and "Lambda" in i and "not ranked" in i for i in issues)
    # ...and the ranking does not crash on it.
    assert rank_configurations({1: 10**9}, prices=[*load_prices(), extra])


# --- the fit rule ----------------------------------------------------------------------------


def test_exactly_full_fits_one_byte_over_does_not():
    gpus = [get_gpu("h100-sxm")]
    full = rank_configurations({1: H100_USABLE}, gpus=gpus)[0]
    assert full.fits and full.utilisation == 1.0 and full.per_gpu_required_bytes == H100_USABLE
    over = rank_configurations({1: H100_USABLE + 1}, gpus=gpus)[0]
    assert not over.fits and "over" in over.reason


def test_headroom_and_reserve_are_applied_to_the_peak():
    gpus = [get_gpu("rtx-4090")]
    # 20e9 x 1.2 = 24.0e9 <= 25,757,220,864 usable: fits...
    assert rank_configurations({1: 20 * 10**9}, gpus=gpus, headroom_fraction=0.2)[0].fits
    # ...plus a 2 GiB reserve: 24.0e9 + 2,147,483,648 = 26,147,483,648 > usable: does not.
    c = rank_configurations({1: 20 * 10**9}, gpus=gpus, headroom_fraction=0.2, runtime_reserve_bytes=2 * 2**30)[0]
    assert not c.fits and c.per_gpu_required_bytes == 26_147_483_648
    # Edge with headroom, on a card of exactly 20,000 MiB = 20,971,520,000 B: a peak of
    # 16,777,216,000 B x 1.25 = 20,971,520,000 B fits exactly; one byte more (x 1.25 = ...001.25,
    # rounded up to ...002) does not.
    row = {"id": "card", "name": "Card", "memory_gb": 20, "memory_bandwidth_gbps": 500, "fp16_bf16_tflops_dense": 100, "reported_total_mib": 20000}
    card = with_extra_gpus([row])[-1:]
    assert rank_configurations({1: 16_777_216_000}, gpus=card, headroom_fraction=0.25)[0].fits
    assert not rank_configurations({1: 16_777_216_001}, gpus=card, headroom_fraction=0.25)[0].fits


def test_bad_headroom_is_rejected():
    with pytest.raises(InvalidWorkloadError):
        rank_configurations({1: 1}, headroom_fraction=-0.1)


# --- multi-GPU validity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "heads", "kv", "ok"),
    [
        (2, 32, 8, True),
        (8, 32, 8, True),
        (4, 28, 4, True),  # Qwen2.5-7B: 28 heads, 4 KV heads
        (8, 28, 4, False),  # 28 % 8 != 0
        (16, 64, 8, True),  # 16 % 8 == 0: each KV head replicated on 2 GPUs (vLLM)
        (4, 32, 2, True),  # 4 % 2 == 0: KV heads replicated
        (4, 36, 6, False),  # 6 % 4 and 4 % 6 both non-zero
        (3, 48, 48, True),
        (1, 7, 1, True),
    ],
)
def test_tensor_parallel_head_rule(count, heads, kv, ok):
    assert (tensor_parallel_problem(count, heads, kv) == "") is ok


def test_invalid_tensor_parallel_configurations_do_not_fit_but_are_listed():
    per_gpu = {1: 20 * 10**9, 2: 10 * 10**9, 4: 5 * 10**9, 8: 3 * 10**9}
    rank = rank_configurations(per_gpu, num_attention_heads=28, num_key_value_heads=4)
    eight = _only(rank, "h100-sxm", 8)
    assert not eight.fits and not eight.tensor_parallel_ok and "28 attention heads" in eight.reason
    assert _only(rank, "h100-sxm", 4).fits
    # Without tensor parallelism (e.g. pipeline or ZeRO) the head rule does not apply.
    assert _only(rank_configurations(per_gpu, num_attention_heads=28, num_key_value_heads=4, tensor_parallel=False), "h100-sxm", 8).fits


def test_multi_gpu_notes_mention_the_interconnect():
    rank = rank_configurations({2: 10 * 10**9})
    assert "PCIe only: tensor parallel over PCIe is slow" in _only(rank, "rtx-4090", 2).reason
    assert "NVLink" in _only(rank, "h100-sxm", 2).reason
    assert _only(rank, "h100-sxm", 2).total_vram_bytes == 2 * H100_USABLE


# --- ordering and the acceptance fact ---------------------------------------------------------


def test_ordering_fitting_priced_then_unpriced_then_non_fitting():
    rank = rank_configurations({1: 13 * 10**9, 2: 7 * 10**9})
    fits = [c.fits for c in rank]
    assert fits == sorted(fits, reverse=True)  # all fitting first
    fitting = [c for c in rank if c.fits]
    priced = [c.priced for c in fitting]
    assert priced == sorted(priced, reverse=True)  # priced before unpriced
    totals = [c.total_usd_per_hour for c in fitting if c.priced]
    assert totals == sorted(totals)
    assert len(rank) == 39 * 2


def test_spheron_catalog_cheapest_fit_for_13_gb_is_the_rtx_4090_at_53_cents():
    # The product page this app is modelled on lists Spheron's own prices (RTX 4090 $0.53,
    # L40S $0.61, RTX 5090 $0.68, A100 80GB $0.82, RTX PRO 6000 $1.29; prices.csv rows dated
    # "2026"). Restricted to those rows, a model needing 13.0e9 bytes per GPU lands on the 4090.
    spheron = [r for r in load_prices() if r.provider == "Spheron" and r.as_of == "2026"]
    assert len(spheron) == 5
    best = cheapest_fit(rank_configurations({1: 13 * 10**9}, prices=spheron))
    assert best is not None
    assert (best.gpu.id, best.cheapest_provider, best.usd_per_gpu_hour) == ("rtx-4090", "Spheron", 0.53)
    assert best.gpu.memory_gb == 24


def test_13_gb_fits_16_gb_cards_and_not_12_gb_cards():
    # 13.0e9 bytes = 12,397.8 MiB. Every 16 GB card reports >= 15,360 MiB (T4, ECC on), so the
    # 16 GB cards DO fit at zero headroom; the 12 GB RTX 3060 (12,288 MiB = 12,884,901,888 B)
    # does not. With the whole bundled table the cheapest fit is therefore a 16 GB card.
    rank = rank_configurations({1: 13 * 10**9})
    assert _only(rank, "t4").fits and _only(rank, "rtx-4060-ti-16gb").fits
    assert not _only(rank, "rtx-3060-12gb").fits
    assert cheapest_fit(rank).gpu.memory_gb == 16


def test_a_16_gb_card_does_not_fit_once_the_need_passes_its_nvidia_smi_total():
    # The largest 16 GB readout is RTX 4060 Ti 16GB: 16,380 MiB = 17,175,674,880 B. One byte
    # more fits no 16 GB card, and the cheapest fit becomes a 24 GB card.
    need = 16_380 * MiB + 1
    rank = rank_configurations({1: need})
    assert not any(c.fits for c in rank if c.gpu.memory_gb == 16)
    best = cheapest_fit(rank)
    assert best.gpu.memory_gb == 24 and best.gpu.id in {"rtx-3090", "rtx-4090", "rtx-a5000", "l4", "a10", "a10g"}


def test_unpriced_fitting_gpus_rank_after_priced_ones():
    rank = rank_configurations({1: 10**9})
    t4 = rank.index(_only(rank, "t4"))
    last_priced = max(i for i, c in enumerate(rank) if c.fits and c.priced)
    assert t4 > last_priced
    assert cheapest_fit(rank, require_price=False) is rank[0]


def test_missing_counts_are_skipped_and_precision_is_reported_not_excluded():
    rank = rank_configurations({1: 10 * 10**9}, precision="fp8")
    assert {c.count for c in rank} == {1}
    a100 = _only(rank, "a100-80gb-sxm")
    assert a100.fits and not a100.precision_ok and a100.precision_note.startswith("not native")
    assert _only(rank, "h100-sxm").precision_ok


def test_ranking_is_fast():
    book = bundled_price_book()
    per_gpu = {1: 30 * 10**9, 2: 15 * 10**9, 4: 8 * 10**9, 8: 4 * 10**9}
    rank_configurations(per_gpu, prices=book)  # warm the per-count memo
    start = time.perf_counter()
    for _ in range(20):
        rank_configurations(per_gpu, prices=book, num_attention_heads=32, num_key_value_heads=8)
    assert (time.perf_counter() - start) / 20 < 0.010  # 39 GPUs x 4 counts well under 10 ms
    assert isinstance(price_book(), PriceBook) and price_book() is book


# --- live prices -------------------------------------------------------------------------------


@pytest.fixture
def cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VRAM_CALC_CACHE", str(tmp_path))
    return tmp_path / "live_prices.json"


def _fake_item(**kw):
    base = dict(provider="lambdalabs", instance_name="gpu_1x_h100_sxm5", location="us-east-1", price=2.49, cpu=26, memory=225.0,
                gpu_count=1, gpu_name="H100", gpu_memory=80.0, spot=False, disk_size=None)
    base.update(kw)
    return types.SimpleNamespace(**base)


def _install_fake_gpuhunt(monkeypatch, items=None, error: Exception | None = None, delay: float = 0.0):
    module = types.ModuleType("gpuhunt")

    class Catalog:
        def __init__(self, balance_resources=True, auto_reload=True):
            pass

        def load(self, version=None):
            if delay:
                time.sleep(delay)
            if error:
                raise error

        def query(self, **kwargs):
            assert kwargs["spot"] is False
            return list(items or [])

    module.Catalog = Catalog
    monkeypatch.setitem(sys.modules, "gpuhunt", module)


def test_live_prices_from_a_stand_in_gpuhunt_are_mapped_cached_and_reused(cache_path, monkeypatch):
    items = [
        _fake_item(),
        _fake_item(instance_name="gpu_8x_h100_sxm5", price=8 * 2.29, gpu_count=8),
        _fake_item(gpu_name="RTX4090", gpu_memory=24.0, price=0.31, provider="runpod"),
        _fake_item(gpu_name="TPUv5", gpu_memory=16.0),  # no such GPU here: reported, not ranked
        _fake_item(price=0.9, spot=True),  # spot offers are not on-demand prices
        _fake_item(gpu_count=0, gpu_name=None),  # CPU-only
    ]
    _install_fake_gpuhunt(monkeypatch, items)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    snap = fetch_live_prices(now=now)
    assert snap.source == "live" and snap.fetched_at == now and "Live prices fetched 2026-12-01 12:00 UTC" in snap.note
    live = [r for r in snap.rows if r.pricing == "on-demand (live catalog)"]
    assert len(live) == 3 and snap.unmapped_gpus == ("TPUv5 16.0GB",)
    assert {(r.provider, r.gpu_id, r.gpus_per_instance) for r in live} == {("Lambda", "h100-80gb", 1), ("Lambda", "h100-80gb", 8), ("RunPod", "rtx-4090", 1)}
    assert next(r for r in live if r.gpus_per_instance == 8).usd_per_gpu_hour == pytest.approx(2.29)
    assert all(r.as_of == "2026-12-01" for r in live)
    # Bundled rows stay for providers gpuhunt lacks, and the live row is ranked.
    assert any(r.provider == "Spheron" for r in snap.rows)
    c = _only(rank_configurations({1: 10**9}, prices=snap.rows), "rtx-4090")
    assert c.cheapest_provider in {"RunPod", "OpenRelay"} and c.usd_per_gpu_hour <= 0.31
    assert cache_path.exists()

    # Within max_age the cache answers, even with gpuhunt broken.
    _install_fake_gpuhunt(monkeypatch, error=OSError("offline"))
    cached = fetch_live_prices(now=now + timedelta(hours=1))
    assert cached.source == "cache" and cached.fetched_at == now and len(cached.rows) == len(snap.rows)

    # Past max_age with the network down: the stale cache, with the failure in the note.
    stale = fetch_live_prices(now=now + timedelta(days=2))
    assert stale.source == "cache" and "failed" in stale.note and "cached 2026-12-01 12:00 UTC" in stale.note


def test_offline_without_cache_falls_back_to_the_bundled_snapshot(cache_path, monkeypatch):
    _install_fake_gpuhunt(monkeypatch, error=OSError("Network is unreachable"))
    snap = fetch_live_prices()
    assert snap.source == "bundled" and snap.fetched_at is None
    assert snap.rows == load_prices()
    assert "Network is unreachable" in snap.note and "bundled price snapshot dated up to 2026-11-16" in snap.note
    assert not cache_path.exists()


def test_timeout_falls_back(cache_path, monkeypatch):
    _install_fake_gpuhunt(monkeypatch, delay=2.0)
    start = time.perf_counter()
    snap = fetch_live_prices(timeout=0.2)
    assert time.perf_counter() - start < 1.5
    assert snap.source == "bundled" and "timed out" in snap.note


def test_missing_gpuhunt_falls_back_with_a_note(cache_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpuhunt", None)  # makes `import gpuhunt` raise ImportError
    snap = fetch_live_prices()
    assert snap.source == "bundled" and "gpuhunt, which is not installed" in snap.note


def test_corrupt_cache_is_ignored(cache_path, monkeypatch):
    cache_path.write_text("{not json", encoding="utf-8")
    _install_fake_gpuhunt(monkeypatch, error=OSError("offline"))
    assert fetch_live_prices().source == "bundled"


def _catalog_zip(provider: str, csv_text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{provider}.csv", csv_text)
    return buffer.getvalue()


def test_real_gpuhunt_against_a_local_catalog_server(cache_path, monkeypatch):
    """gpuhunt's own loader, pointed at a stand-in for its S3 bucket on 127.0.0.1."""
    pytest.importorskip("gpuhunt")
    header = "instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,gpu_vendor,flags,cpu_arch,provider_data\n"
    files = {
        "/v3/lambdalabs/version": b"20261201\n",
        "/v3/lambdalabs/20261201/catalog.zip": _catalog_zip(
            "lambdalabs",
            header + "gpu_1x_h100_sxm5,us-east-1,2.99,26,225,1,H100,80,False,,nvidia,,x86,{}\n"
            "gpu_1x_h100_sxm5,us-east-1,1.2,26,225,1,H100,80,True,,nvidia,,x86,{}\n",
        ),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("GPUHUNT_CATALOG_URL", f"http://127.0.0.1:{server.server_port}/v3")
        snap = fetch_live_prices(timeout=20)
    finally:
        server.shutdown()
    assert snap.source == "live", snap.note
    live = [r for r in snap.rows if r.pricing == "on-demand (live catalog)"]
    assert [(r.provider, r.gpu_id, r.usd_per_gpu_hour) for r in live] == [("Lambda", "h100-80gb", 2.99)]


def test_real_gpuhunt_with_the_network_down_falls_back(cache_path, monkeypatch):
    pytest.importorskip("gpuhunt")
    import socket

    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("GPUHUNT_CATALOG_URL", f"http://127.0.0.1:{port}/v3")
    snap = fetch_live_prices(timeout=20)
    assert snap.source == "bundled" and "failed" in snap.note


def test_snapshot_rows_are_frozen_dataclasses():
    row = load_prices()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.usd_per_gpu_hour = 0  # type: ignore[misc]
    assert len(load_gpus()) == 39
