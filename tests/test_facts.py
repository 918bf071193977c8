"""Model facts (task, model type, downloads, likes, last update, license, gated, commit): from
`model_info` through the Hub stand-in, from the catalog's dated copy offline, on the main page, in
its JSON export and in its share link."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from hub_standin import (
    HubStandin,
    hub_standin_fixture,  # noqa: F401  (registers the `hub_standin` fixture)
    llama_31_8b_repo,
)
from streamlit.testing.v1 import AppTest

from calculator.facts import ModelFacts, catalog_model_facts, compact_count, facts_from_model_info, facts_line
from calculator.hub import fetch_model_facts
from calculator.resolve import resolve_model
from ui.state import DEFAULT_MODEL

OTHER = "someorg/llama-copy"  # not in the catalog: the page must read it from the (stand-in) Hub
HUB_INFO = {
    "downloads": 161_600,
    "likes": 678,
    "pipeline_tag": "text-generation",
    "lastModified": "2026-05-31T08:12:00.000Z",
    "cardData": {"license": "llama3.1"},
    "tags": ["transformers", "safetensors", "license:llama3.1"],
}


def test_seed_model_facts_offline_are_the_seed_pages():
    facts = catalog_model_facts(DEFAULT_MODEL)
    assert facts is not None and facts.source == "catalog" and facts.as_of == "2026-11-25"
    # The seed page: "5.8B params · text-to-speech · higgs_audio_v2 · 161.6K downloads · 678 likes · updated May 31, 2026"
    # (5,771,283,456 parameters; this app prints three significant digits).
    assert facts_line(facts, num_params=resolve_model(DEFAULT_MODEL).spec.num_params) == (
        "5.77B params · text-to-speech · higgs_audio_v2 · 161.6K downloads · 678 likes · updated May 31, 2026"
    )
    assert facts.license is None and facts.sha is None  # not on the seed page: left out, not guessed


def test_catalog_model_without_a_dated_copy_shows_only_sourced_facts():
    facts = catalog_model_facts("meta-llama/Llama-3.1-8B")
    assert facts is not None and facts.as_of is None
    assert (facts.pipeline_tag, facts.model_type, facts.gated) == ("text-generation", "llama", True)
    assert (facts.downloads, facts.likes, facts.last_modified, facts.license) == (None, None, None, None)


def test_compact_count():
    assert [compact_count(n) for n in (0, 678, 1000, 161_600, 2_345_678, 7_000_000_000)] == ["0", "678", "1K", "161.6K", "2.3M", "7B"]


def test_model_info_through_the_standin(hub_standin: HubStandin):
    hub_standin.add(OTHER, llama_31_8b_repo(info=HUB_INFO))
    facts = fetch_model_facts(OTHER, endpoint=hub_standin.url, timeout=2.0)
    assert facts == ModelFacts(
        repo_id=OTHER, source="hub", as_of=facts.as_of, pipeline_tag="text-generation", model_type="llama", downloads=161_600,
        likes=678, last_modified="2026-05-31", license="llama3.1", gated=False, sha=hub_standin.sha_of(OTHER),
    )
    # Pinned to a commit: the request names it.
    sha = hub_standin.sha_of(OTHER)
    assert fetch_model_facts(f"{OTHER}@{sha}", endpoint=hub_standin.url, timeout=2.0).sha == sha
    assert any(r.path == f"/api/models/{OTHER}/revision/{sha}" for r in hub_standin.requests)


def test_gated_and_license_from_tags(hub_standin: HubStandin):
    hub_standin.add(OTHER, llama_31_8b_repo(behaviour="gated", info={"cardData": None, "tags": ["license:apache-2.0"]}))
    facts = fetch_model_facts(OTHER, endpoint=hub_standin.url, timeout=2.0)
    assert facts.gated is True and facts.license == "apache-2.0"


def test_malformed_facts_are_dropped_one_by_one(hub_standin: HubStandin):
    hub_standin.add(OTHER, llama_31_8b_repo(info={
        "downloads": -5, "likes": 10**15, "pipeline_tag": "<script>alert(1)</script>", "cardData": {"license": "x" * 500},
        "tags": ["license:" + "y" * 500], "sha": "not-a-commit",
    }))
    facts = fetch_model_facts(OTHER, endpoint=hub_standin.url, timeout=2.0)
    assert facts is not None and facts.model_type == "llama"
    assert (facts.downloads, facts.likes, facts.pipeline_tag, facts.license, facts.sha) == (None,) * 5


def test_an_answer_model_info_cannot_read_gives_none(hub_standin: HubStandin):
    # huggingface_hub's ModelInfo raises on a date it cannot parse: no facts, the page falls back to the catalog.
    hub_standin.add(OTHER, llama_31_8b_repo(info={"lastModified": "yesterday"}))
    assert fetch_model_facts(OTHER, endpoint=hub_standin.url, timeout=2.0) is None


def test_unreachable_or_missing_gives_none(hub_standin: HubStandin):
    assert fetch_model_facts("nobody/nothing", endpoint=hub_standin.url, timeout=2.0) is None
    assert fetch_model_facts(OTHER, endpoint="http://127.0.0.1:9", timeout=1.0) is None
    assert fetch_model_facts("../../etc", endpoint=hub_standin.url, timeout=1.0) is None


def test_facts_from_an_object_without_fields():
    facts = facts_from_model_info(object(), repo_id=OTHER, as_of="2026-12-01T00:00:00+00:00")
    assert facts.source == "hub" and all(getattr(facts, f) is None for f in ("pipeline_tag", "downloads", "likes", "license", "gated", "sha"))


# --- the main page --------------------------------------------------------------------------------


def _facts_markdown(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "model-facts" in m.value)


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_main_page_shows_the_seed_facts_offline():
    at = AppTest.from_file("../app.py", default_timeout=30).run()
    assert not at.exception
    assert "5.77B params · text-to-speech · higgs_audio_v2 · 161.6K downloads · 678 likes · updated May 31, 2026" in _facts_markdown(at)
    assert any("Bundled copy taken Nov 25, 2026" in c.value for c in at.caption)


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_main_page_hub_model_names_its_commit_in_facts_json_and_link(hub_standin: HubStandin, monkeypatch: pytest.MonkeyPatch):
    import ui.export

    exported: list[dict] = []
    real = ui.export.estimate_json
    # AppTest keeps the download button, not its file: record what the page hands to the JSON download.
    monkeypatch.setattr(ui.export, "estimate_json", lambda data: exported.append(data) or real(data))
    hub_standin.add(OTHER, llama_31_8b_repo(info=HUB_INFO))
    sha = hub_standin.sha_of(OTHER)
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params["model"] = OTHER
    at.run()
    assert not at.exception and not at.error
    assert "8.03B params · text-generation · llama · 161.6K downloads · 678 likes · updated May 31, 2026 · license llama3.1" in _facts_markdown(at)
    assert any(f"commit `{sha[:12]}`" in c.value for c in at.caption)
    # The JSON download names the checkpoint and carries the facts shown.
    data = json.loads(real(exported[-1]))
    assert (data["model_sha"], data["model_source"], data["model_facts"]["downloads"]) == (sha, "hub", 161_600)
    # The share link pins the model to that commit.
    link = next(c.value for c in at.code if "model=" in c.value)
    assert parse_qs(link.split("?", 1)[1])["model"] == [f"{OTHER}@{sha}"]



@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_main_page_without_hub_facts_says_so(hub_standin: HubStandin):
    # model_info answers something huggingface_hub cannot read: the estimate still comes (config + counts),
    # the facts line falls back to what the config says and tells why.
    hub_standin.add(OTHER, llama_31_8b_repo(info={"lastModified": "yesterday"}))
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params["model"] = OTHER
    at.run()
    assert not at.exception
    assert "8.03B params · llama" in _facts_markdown(at)
    assert any("Hub facts (downloads, likes, last update) are not available" in c.value for c in at.caption)
