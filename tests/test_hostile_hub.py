"""A hostile or broken Hub (issue 8, defects 4, 5, 7, 8): the fault-injecting stand-in on 127.0.0.1
(tests/hub_standin.py `FAULTS`) answers with stalls, trickles, redirect loops, huge and deep bodies,
resets and odd statuses. Every lookup ends within its deadline with either the model, the cached
copy (with the reason), or one CalculatorError line that says what happened in words.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from hostile_support import MAX_CHILD_RSS_BYTES, assert_one_line_error, run_cli
from hub_standin import (
    FAULTS,
    FakeRepo,
    HubStandin,
    bert_base_repo,
    catalog_config_bytes,
    hub_standin_fixture,  # noqa: F401  (registers the `hub_standin` fixture)
    llama_31_8b_repo,
    safetensors_header,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calculator.errors import CalculatorError, HubUnavailableError, MalformedConfigError, ModelNotFoundError
from calculator.hub import fetch_model, fetch_model_facts
from calculator.resolve import resolve_model

REPO = "org/model"
# The deadline these tests give a lookup, and the slack for thread start-up on a loaded 2-core box.
DEADLINE_S = 1.5
SLACK_S = 1.0
# Faults after which the Hub is "unusable": a cached copy is served, else HubUnavailableError.
UNREACHABLE = ["stall", "trickle", "redirect_loop", "redirect_offsite", "reset", "bad_length", "status502"]
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]+(Error|Exception)\b")


def _fetch(hub: HubStandin, cache: Path, **kwargs):
    kwargs.setdefault("timeout", 0.5)
    kwargs.setdefault("deadline", DEADLINE_S)
    started = time.monotonic()
    try:
        return fetch_model(REPO, endpoint=hub.url, cache_dir=cache, **kwargs), time.monotonic() - started
    finally:
        assert time.monotonic() - started < kwargs["deadline"] + SLACK_S


def _assert_honest(message: str) -> None:
    assert "\n" not in message and len(message) < 600
    assert not CLASS_NAME.search(message), message  # "(RemoteProtocolError)" is not a reason


def test_every_fault_kind_is_exercised() -> None:
    tested = set(UNREACHABLE) | {"huge", "deep", "garbage", "status400", "status410"}
    assert tested == set(FAULTS)


@pytest.mark.parametrize("fault", UNREACHABLE)
@pytest.mark.parametrize("target", ["api", "config.json"])
def test_unusable_hub_serves_the_cache_with_a_note_within_the_deadline(hub_standin: HubStandin, tmp_path: Path, fault: str,
                                                                         target: str) -> None:
    repo = hub_standin.add(REPO, bert_base_repo(delay_s=3.0))
    online, _ = _fetch(hub_standin, tmp_path)
    repo.faults[target] = fault

    cached, _ = _fetch(hub_standin, tmp_path)
    assert cached.source == "cache" and cached.config == online.config
    assert cached.stale_reason
    _assert_honest(cached.stale_reason)


@pytest.mark.parametrize("fault", UNREACHABLE)
def test_unusable_hub_without_a_cache_is_one_error_within_the_deadline(hub_standin: HubStandin, tmp_path: Path, fault: str) -> None:
    hub_standin.add(REPO, bert_base_repo(delay_s=3.0, faults={"config.json": fault}))

    with pytest.raises(HubUnavailableError) as caught:
        _fetch(hub_standin, tmp_path)
    _assert_honest(str(caught.value))


def test_a_model_api_that_is_not_the_hubs_only_costs_the_access_flags(hub_standin: HubStandin, tmp_path: Path) -> None:
    # A mirror that serves files but answers the model API with a web page: config and counts still come.
    hub_standin.add(REPO, bert_base_repo(faults={"api": "garbage"}))
    model, _ = _fetch(hub_standin, tmp_path)
    assert model.source == "hub" and model.safetensors_num_params == 109_482_240 + 512
    assert model.sha == hub_standin.sha_of(REPO)  # from the X-Repo-Commit header of config.json


def test_a_stalled_hub_is_bounded_by_one_deadline_not_per_request_timeouts(hub_standin: HubStandin, tmp_path: Path) -> None:
    # Per-read timeout 10 s, deadline 1.5 s: a trickle of one byte per 0.1 s never trips the read
    # timeout, only the deadline does.
    hub_standin.add(REPO, bert_base_repo(delay_s=5.0, faults={"config.json": "trickle"}))
    with pytest.raises(HubUnavailableError, match=r"no complete answer within the 1\.5 s deadline"):
        _fetch(hub_standin, tmp_path, timeout=10.0)


def test_token_does_not_follow_a_redirect_to_another_host(hub_standin: HubStandin, tmp_path: Path) -> None:
    token = "hf_standinSECRETtoken0123456789"
    with HubStandin() as cdn:
        cdn.add(REPO, bert_base_repo())
        hub_standin.add(REPO, bert_base_repo(faults={"config.json": "redirect_offsite"}, redirect_to=cdn.url))
        model, _ = _fetch(hub_standin, tmp_path, token=token)
        assert model.source == "hub"
        assert [r.path for r in cdn.requests] == [f"/{REPO}/resolve/{hub_standin.sha_of(REPO)}/config.json"]
        assert all("authorization" not in r.headers for r in cdn.requests)
    assert all(r.headers.get("authorization") == f"Bearer {token}" for r in hub_standin.requests)


def test_redirect_loop_says_so(hub_standin: HubStandin, tmp_path: Path) -> None:
    hub_standin.add(REPO, bert_base_repo(faults={"config.json": "redirect_loop"}))
    with pytest.raises(HubUnavailableError, match="redirected more than 5 times"):
        _fetch(hub_standin, tmp_path)


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        ("huge", MalformedConfigError, "larger than 8 MiB"),
        ("deep", MalformedConfigError, "nested too deeply"),
        ("garbage", MalformedConfigError, "not valid JSON"),
        ("status400", ModelNotFoundError, r"rejected the request for org/model \(HTTP 400\)"),
        ("status410", ModelNotFoundError, r"gone from the Hub \(HTTP 410"),
    ],
)
def test_hostile_config_answer_is_one_clear_error(hub_standin: HubStandin, tmp_path: Path, fault: str, error: type, match: str) -> None:
    hub_standin.add(REPO, bert_base_repo(faults={"config.json": fault}))
    with pytest.raises(error, match=match) as caught:
        _fetch(hub_standin, tmp_path, timeout=5.0, deadline=10.0)
    _assert_honest(str(caught.value))
    assert not (tmp_path / "models").exists()  # an answer, not an outage: nothing cached


def test_missing_shard_is_not_called_a_missing_config(hub_standin: HubStandin, tmp_path: Path) -> None:
    repo = llama_31_8b_repo()
    del repo.files["model-00003-of-00004.safetensors"]
    hub_standin.add(REPO, repo)

    with pytest.raises(ModelNotFoundError, match=r"checkpoint file model-00003-of-00004\.safetensors is missing") as caught:
        _fetch(hub_standin, tmp_path, timeout=5.0, deadline=10.0)
    assert "config.json" not in str(caught.value)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"model.safetensors.index.json": b'[{"total_size": 10}]'}, "not an object"),
        ({"model.safetensors.index.json": json.dumps({"weight_map": {"w": "../x.safetensors"}}).encode()}, "not a .safetensors file"),
        ({"model.safetensors": safetensors_header({"w": ("BF16", [-1000, 4096])})}, "shape"),
        ({"model.safetensors": b"\xff" * 8 + b"{}"}, "header claims"),
    ],
)
def test_hostile_checkpoint_metadata_is_one_error(hub_standin: HubStandin, tmp_path: Path, files: dict, match: str) -> None:
    hub_standin.add(REPO, FakeRepo(files={"config.json": catalog_config_bytes("meta-llama__Llama-3.2-3B"), **files}))
    with pytest.raises(MalformedConfigError, match=match) as caught:
        _fetch(hub_standin, tmp_path, timeout=5.0, deadline=10.0)
    _assert_honest(str(caught.value))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    header=st.dictionaries(
        st.text(min_size=1, max_size=4),
        st.fixed_dictionaries({"dtype": st.sampled_from(["BF16", "F32", "X"]),
                               "shape": st.lists(st.one_of(st.integers(-3, 2**20), st.floats(), st.none()), max_size=4)}),
        max_size=3,
    ),
    as_index=st.booleans(),
)
def test_any_served_header_gives_counts_or_one_error(hub_standin: HubStandin, tmp_path_factory: pytest.TempPathFactory, header: dict,
                                                     as_index: bool) -> None:
    raw = json.dumps(header).encode()
    blob = len(raw).to_bytes(8, "little") + raw
    files = {"config.json": catalog_config_bytes("meta-llama__Llama-3.2-3B")}
    if as_index:
        files |= {"model-1.safetensors": blob, "model.safetensors.index.json": json.dumps({"weight_map": {"w": "model-1.safetensors"}}).encode()}
    else:
        files["model.safetensors"] = blob
    hub_standin.repos[REPO] = FakeRepo(files=files)
    try:
        model, _ = _fetch(hub_standin, tmp_path_factory.mktemp("c"), timeout=5.0, deadline=10.0)
    except CalculatorError as exc:
        _assert_honest(str(exc))
        return
    assert model.safetensors_param_counts and all(n > 0 for n in model.safetensors_param_counts.values())


@pytest.mark.parametrize("fault", ["huge", "trickle", "redirect_loop", "deep"])
def test_model_facts_from_a_hostile_api_are_none_within_the_deadline(hub_standin: HubStandin, fault: str) -> None:
    hub_standin.add(REPO, bert_base_repo(delay_s=5.0, faults={"api": fault}))
    started = time.monotonic()
    assert fetch_model_facts(REPO, endpoint=hub_standin.url, timeout=0.5) is None
    assert time.monotonic() - started < 3 * 0.5 + SLACK_S


def test_resolved_model_from_the_cache_says_why(hub_standin: HubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRAM_CALC_CACHE", str(tmp_path))
    repo = hub_standin.add(REPO, bert_base_repo())
    assert resolve_model(REPO).source == "hub"
    repo.faults["config.json"] = "status502"

    cached = resolve_model(REPO)
    assert cached.source == "cache" and "HTTP 502 from the Hub" in cached.detail


# --- the CLI against the stand-in: one stderr line, bounded memory ---------------------------------


@pytest.mark.parametrize(
    ("repo", "match"),
    [
        (bert_base_repo(faults={"config.json": "redirect_loop"}), "redirected more than 5 times"),
        (bert_base_repo(faults={"config.json": "huge"}), "larger than 8 MiB"),
        (llama_31_8b_repo(behaviour="gated"), "is gated"),
    ],
)
def test_cli_prints_one_line_for_a_hostile_hub(hub_standin: HubStandin, tmp_path: Path, repo: FakeRepo, match: str) -> None:
    hub_standin.add(REPO, repo)
    run = run_cli("estimate", REPO, env_extra={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub_standin.url, "VRAM_CALC_CACHE": str(tmp_path)})
    line = assert_one_line_error(run)
    assert re.search(match, line), line
    _assert_honest(line.removeprefix("error: "))
    assert run.peak_rss_bytes < MAX_CHILD_RSS_BYTES, run.peak_rss_bytes


def test_cli_success_against_the_hub_prints_nothing_on_stderr(hub_standin: HubStandin, tmp_path: Path) -> None:
    hub_standin.add(REPO, bert_base_repo())
    # A cache that cannot be written (its parent is a file) is logged, not printed.
    (tmp_path / "not-a-dir").write_text("")
    run = run_cli("estimate", REPO, "--json", env_extra={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub_standin.url,
                                                         "VRAM_CALC_CACHE": str(tmp_path / "not-a-dir" / "cache")})
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert json.loads(run.stdout)["model_source"] == "hub"
