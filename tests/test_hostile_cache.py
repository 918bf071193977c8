"""Caches never hand one answer to another question (issue 8, defects 1 and 2).

Against the Hub stand-in (tests/hub_standin.py, 127.0.0.1): two revisions of one repo with
different config.json get different numbers, in one session and on the shared `st.cache_data`
caches; a gated or private repo's cached copy is served only to the token that fetched it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_standin import (
    FakeRepo,
    HubStandin,
    bert_base_repo,
    catalog_config_bytes,
    hub_standin_fixture,  # noqa: F401  (registers the `hub_standin` fixture)
    llama_31_8b_repo,
)
from streamlit.testing.v1 import AppTest

import ui.loaders
from calculator.errors import HubUnavailableError
from calculator.hub import fetch_model, token_fingerprint
from calculator.resolve import resolve_model
from calculator.units import GiB
from calculator.workload import Workload

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")

REPO = "org/llama-swa"
TOKEN_A = "hf_tokenAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
TOKEN_B = "hf_tokenBBBBBBBBBBBBBBBBBBBBBBBBBBBB"


def _two_revision_repo() -> FakeRepo:
    """Llama-3.2-3B's config on main; branch `swa` adds a 512-token sliding window (so at 4,096
    tokens every layer caches 512 tokens instead of 4,096: a smaller KV cache)."""
    main = catalog_config_bytes("meta-llama__Llama-3.2-3B")
    swa = json.dumps({**json.loads(main), "sliding_window": 512}).encode()
    return FakeRepo(files={"config.json": main}, branches=("main",), branch_files={"swa": {"config.json": swa}})


def test_two_revisions_get_their_own_numbers_through_the_shared_caches(hub_standin: HubStandin) -> None:
    hub_standin.add(REPO, _two_revision_repo())
    w = Workload(context_length=4096)
    prices = ui.loaders.price_setup()

    main = ui.loaders.resolve(f"{REPO}@main")
    swa = ui.loaders.resolve(f"{REPO}@swa")
    main_view = ui.loaders.view(main, w, headroom_pct=0, prices=prices)
    swa_view = ui.loaders.view(swa, w, headroom_pct=0, prices=prices)

    assert swa.spec.layer_types == ("sliding",) * 28 and main.spec.layer_types == ("full",) * 28
    assert (main.sha, swa.sha) == (hub_standin.sha_of(REPO), hub_standin.sha_of(REPO, "swa"))
    assert ui.loaders.spec_key(main) != ui.loaders.spec_key(swa)
    # KV cache: 28 layers x 2 (K, V) x 8 kv heads x 128 head_dim x 2 bytes (fp16) per token:
    # 4,096 tokens on main, 512 on the sliding-window branch.
    per_token = 28 * 2 * 8 * 128 * 2
    assert main_view.plan.estimate.breakdown.kv_cache_bytes == 4096 * per_token
    assert swa_view.plan.estimate.breakdown.kv_cache_bytes == 512 * per_token


def test_spec_key_changes_with_any_config_field_or_count() -> None:
    base = resolve_model("meta-llama/Llama-3.2-3B")
    changed_config = type(base)(spec=type(base.spec)(**{**_fields(base.spec), "raw_config": {"x": 1}}), source=base.source, detail="")
    changed_counts = type(base)(
        spec=base.spec.with_exact_counts(num_params=1, weight_bytes=2, source="catalog"), source=base.source, detail=base.detail
    )
    other_commit = type(base)(spec=base.spec, source="hub", detail="", revision="main", sha="a" * 40)
    keys = {ui.loaders.spec_key(r) for r in (base, changed_config, changed_counts, other_commit)}
    assert len(keys) == 4


def _fields(spec) -> dict:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


def test_app_pages_show_each_revision_its_own_peak(hub_standin: HubStandin) -> None:
    hub_standin.add(REPO, _two_revision_repo())

    def peak(ref: str) -> str:
        at = AppTest.from_file("../app.py", default_timeout=60)
        at.query_params["model"] = ref
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        return next(m.value for m in at.metric if m.label.startswith("Peak VRAM"))

    main_peak, swa_peak = peak(f"{REPO}@main"), peak(f"{REPO}@swa")
    assert main_peak != swa_peak
    # The difference is the KV cache of 4,096 - 512 tokens (see the test above), in GiB as shown.
    diff = float(main_peak.split()[0].replace(",", "")) - float(swa_peak.split()[0].replace(",", ""))
    assert diff == pytest.approx((4096 - 512) * 28 * 2 * 8 * 128 * 2 / GiB, abs=0.011)


# --- defect 2: the on-disk cache is per token for gated and private repos -------------------------


@pytest.mark.parametrize("kind", ["private", "gated"])
def test_cached_restricted_repo_is_served_only_to_the_token_that_read_it(hub_standin: HubStandin, tmp_path: Path, kind: str) -> None:
    repo = bert_base_repo(private=True, authorized_tokens=frozenset({TOKEN_A})) if kind == "private" else llama_31_8b_repo(
        behaviour="gated", authorized_tokens=frozenset({TOKEN_A, TOKEN_B})
    )
    hub_standin.add("org/restricted", repo)
    cache = tmp_path / "cache"
    online = fetch_model("org/restricted", token=TOKEN_A, endpoint=hub_standin.url, cache_dir=cache, timeout=2.0)
    assert online.private or online.gated

    assert fetch_model("org/restricted", token=TOKEN_A, cache_dir=cache, offline=True).config == online.config
    for other in (TOKEN_B, None):
        with pytest.raises(HubUnavailableError, match="has not been fetched before"):
            fetch_model("org/restricted", token=other, cache_dir=cache, offline=True)
    # Hub down (stopped): same rule on the fallback path.
    hub_standin.stop()
    assert fetch_model("org/restricted", token=TOKEN_A, endpoint=hub_standin.url, cache_dir=cache, timeout=1.0).source == "cache"
    with pytest.raises(HubUnavailableError):
        fetch_model("org/restricted", token=TOKEN_B, endpoint=hub_standin.url, cache_dir=cache, timeout=1.0)
    # The file is named by a fingerprint of the token; the token itself is nowhere on disk.
    (path,) = (cache / "models").rglob("*.json")
    assert token_fingerprint(TOKEN_A) in path.name
    assert all(TOKEN_A not in p.read_text() and TOKEN_A not in p.name for p in cache.rglob("*") if p.is_file())


def test_public_repo_cache_is_shared_by_every_token(hub_standin: HubStandin, tmp_path: Path) -> None:
    hub_standin.add("org/public", bert_base_repo())
    fetch_model("org/public", token=TOKEN_A, endpoint=hub_standin.url, cache_dir=tmp_path, timeout=2.0)

    for token in (TOKEN_A, TOKEN_B, None):
        assert fetch_model("org/public", token=token, cache_dir=tmp_path, offline=True).source == "cache"


def test_an_old_format_private_entry_in_the_shared_place_is_not_served(tmp_path: Path) -> None:
    # What format 1 wrote for a private repo: the shared file, readable by any token.
    path = tmp_path / "models" / "models--org--private" / "main.json"
    path.parent.mkdir(parents=True)
    for fmt in (1, 2):
        path.write_text(json.dumps({"format": fmt, "repo_id": "org/private", "config": {"model_type": "bert"}, "private": True}))
        with pytest.raises(HubUnavailableError):
            fetch_model("org/private", token=TOKEN_B, cache_dir=tmp_path, offline=True)


def test_app_lookup_cache_is_keyed_by_the_token(hub_standin: HubStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_standin.add("org/private", bert_base_repo(private=True, authorized_tokens=frozenset({TOKEN_A})))
    monkeypatch.setenv("HF_TOKEN", TOKEN_A)
    assert ui.loaders.resolve("org/private").source == "hub"

    monkeypatch.setenv("HF_TOKEN", TOKEN_B)
    hub_standin.stop()
    with pytest.raises(HubUnavailableError):
        ui.loaders.resolve("org/private")
