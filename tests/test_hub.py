"""calculator.hub end to end against a local stand-in of the Hub (tests/hub_standin.py): real
huggingface_hub requests, real HTTP, no internet."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_standin import (
    FakeRepo,
    HubStandin,
    bert_base_repo,
    catalog_config_bytes,
    hub_standin_fixture,  # noqa: F401  (registers the `hub_standin` fixture)
    llama_31_8b_repo,
    safetensors_header,
)

from calculator.errors import CalculatorError, GatedModelError, HubUnavailableError, MalformedConfigError, ModelNotFoundError
from calculator.hub import HubModel, default_cache_dir, default_token, fetch_model, parse_model_ref
from calculator.spec import model_spec_from_config

LLAMA = "meta-llama/Llama-3.1-8B"
BERT = "google-bert/bert-base-uncased"
SECRET = "hf_standinSECRETtoken0123456789"
# 32 layers x (q 4096x4096 + k,v 2x1024x4096 + o 4096x4096 + gate,up,down 3x14336x4096 + 2 norms x 4096)
# + embed 128256x4096 + lm_head 128256x4096 + final norm 4096 (model.safetensors.index.json total_size / 2 bytes).
LLAMA_31_8B_PARAMS = 32 * (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 14336 * 4096 + 2 * 4096) + 2 * 128256 * 4096 + 4096
# BertModel with pooler: embeddings (30522 + 512 + 2) x 768 + LN 2x768, 12 layers x (4 x 768x768 + 768x3072 + 3072x768,
# their biases 4x768 + 3072 + 768, 2 LN x 2x768), pooler 768x768 + 768.
BERT_BASE_PARAMS = (
    (30522 + 512 + 2) * 768 + 2 * 768 + 12 * (4 * 768 * 768 + 2 * 768 * 3072 + 4 * 768 + 3072 + 768 + 4 * 768) + 768 * 768 + 768
)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "hub-cache"


def _fetch(hub: HubStandin, ref: str, cache_dir: Path, **kwargs) -> HubModel:
    kwargs.setdefault("timeout", 2.0)
    return fetch_model(ref, endpoint=hub.url, cache_dir=cache_dir, **kwargs)


def _dead_endpoint() -> str:
    """A local port nothing listens on: connection refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- success -------------------------------------------------------------------------------------


def test_sharded_checkpoint_gives_exact_counts_and_a_usable_config(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo())

    model = _fetch(hub_standin, LLAMA, cache_dir)

    assert LLAMA_31_8B_PARAMS == 8_030_261_248
    assert model.safetensors_param_counts == {"BF16": LLAMA_31_8B_PARAMS}
    assert model.safetensors_num_params == 8_030_261_248
    assert model.config == json.loads(catalog_config_bytes("meta-llama__Llama-3.1-8B"))
    assert (model.repo_id, model.revision, model.sha) == (LLAMA, None, hub_standin.sha_of(LLAMA))
    assert (model.source, model.gated, model.private) == ("hub", False, False)
    assert model.fetched_at.endswith("+00:00")
    spec = model_spec_from_config(model.repo_id, model.config)
    assert spec.config_num_params == model.safetensors_num_params
    # Only headers are read: every GET of a weights file is a range request, and config.json /
    # the index are pinned to the commit model_info returned.
    gets = [r for r in hub_standin.requests if r.method == "GET" and r.path.endswith(".safetensors")]
    assert len(gets) == 4 and all(r.headers.get("range", "").startswith("bytes=0-") for r in gets)
    assert all(f"/resolve/{model.sha}/" in r.path for r in hub_standin.requests if "/resolve/" in r.path)
    assert all("authorization" not in r.headers for r in hub_standin.requests)


def test_single_file_checkpoint_counts_every_dtype(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(BERT, bert_base_repo())

    model = _fetch(hub_standin, BERT, cache_dir)

    assert BERT_BASE_PARAMS == 109_482_240
    # The I64 position_ids buffer is stored in the checkpoint too (1 x 512).
    assert model.safetensors_param_counts == {"F32": BERT_BASE_PARAMS, "I64": 512}
    assert model_spec_from_config(BERT, model.config).model_type == "bert"


def test_header_larger_than_the_first_range_is_read_with_a_second_request(hub_standin: HubStandin, cache_dir: Path) -> None:
    # huggingface_hub reads the first 100,000 bytes, then the rest of a longer header.
    header = safetensors_header({"w": ("U8", [3, 5]), "s": ("F32", [7])}, metadata={"format": "pt", "pad": "x" * 150_000})
    hub_standin.add("org/big-header", FakeRepo(files={"config.json": catalog_config_bytes("meta-llama__Llama-3.2-3B"), "model.safetensors": header}))

    model = _fetch(hub_standin, "org/big-header", cache_dir)

    assert model.safetensors_param_counts == {"U8": 15, "F32": 7}
    assert sum(r.path.endswith("model.safetensors") and r.method == "GET" for r in hub_standin.requests) == 2


def test_revision_from_the_ref_or_the_argument(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo(branches=("main", "v1.0")))

    by_ref = _fetch(hub_standin, f"{LLAMA}@v1.0", cache_dir)
    by_arg = _fetch(hub_standin, LLAMA, cache_dir, revision="v1.0")

    assert by_ref.revision == by_arg.revision == "v1.0"
    assert by_ref.sha == by_arg.sha == hub_standin.sha_of(LLAMA)
    assert any(r.path == f"/api/models/{LLAMA}/revision/v1.0" for r in hub_standin.requests)
    with pytest.raises(ModelNotFoundError, match="Two revisions"):
        _fetch(hub_standin, f"{LLAMA}@v1.0", cache_dir, revision="main")


def test_gated_model_with_an_authorized_token(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo(behaviour="gated", authorized_tokens=frozenset({SECRET})))

    model = _fetch(hub_standin, LLAMA, cache_dir, token=SECRET)

    assert model.gated and not model.private
    assert model.safetensors_num_params == LLAMA_31_8B_PARAMS
    assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in hub_standin.requests)


def test_token_defaults_to_hf_token(hub_standin: HubStandin, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_standin.add("org/private", bert_base_repo(private=True, authorized_tokens=frozenset({SECRET})))
    monkeypatch.setenv("HF_TOKEN", SECRET)

    assert default_token() == SECRET
    assert _fetch(hub_standin, "org/private", cache_dir).private
    monkeypatch.setenv("HF_TOKEN", "  ")
    assert default_token() is None


def test_endpoint_defaults_to_hf_endpoint_at_call_time(hub_standin: HubStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture sets HF_ENDPOINT and VRAM_CALC_CACHE after huggingface_hub was imported.
    hub_standin.add(BERT, bert_base_repo())

    model = fetch_model(BERT, timeout=2.0)

    assert model.source == "hub"
    assert any((default_cache_dir() / "models").rglob("*.json"))


def test_repo_without_safetensors_gives_no_counts(hub_standin: HubStandin, cache_dir: Path) -> None:
    files = {"config.json": catalog_config_bytes("meta-llama__Llama-2-7b-hf"), "pytorch_model.bin": b"\x80\x02pickle"}
    hub_standin.add("org/old-llama", FakeRepo(files=files))

    model = _fetch(hub_standin, "org/old-llama", cache_dir)

    assert model.safetensors_param_counts is None and model.safetensors_num_params is None
    assert model_spec_from_config(model.repo_id, model.config).model_type == "llama"
    assert not any(r.path.endswith("pytorch_model.bin") for r in hub_standin.requests)


# --- errors --------------------------------------------------------------------------------------


def test_gated_without_token_says_how_to_get_access(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo(behaviour="gated"))

    with pytest.raises(GatedModelError) as caught:
        _fetch(hub_standin, LLAMA, cache_dir)

    message = str(caught.value)
    assert f"{LLAMA} is gated: accept its license on huggingface.co/{LLAMA}" in message
    assert "HF_TOKEN" in message
    assert isinstance(caught.value, PermissionError)


def test_gated_with_a_token_without_access(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo(behaviour="gated", authorized_tokens=frozenset({"hf_someone_else"})))

    with pytest.raises(GatedModelError, match="is gated: accept its license") as caught:
        _fetch(hub_standin, LLAMA, cache_dir, token=SECRET)

    assert "no access" in str(caught.value)
    # the 403 came from the resolve request, after model_info said the repo is gated
    assert any(r.path.endswith("/config.json") for r in hub_standin.requests)


def test_forbidden_403(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add("org/locked", bert_base_repo(behaviour="forbidden"))

    with pytest.raises(GatedModelError, match=r"refused access to org/locked \(HTTP 403\).*HF_TOKEN"):
        _fetch(hub_standin, "org/locked", cache_dir, token=SECRET)


@pytest.mark.parametrize("repo_id", ["org/deleted", "org/never-existed"])
def test_missing_repo_404(hub_standin: HubStandin, cache_dir: Path, repo_id: str) -> None:
    hub_standin.add("org/deleted", bert_base_repo(behaviour="missing"))

    with pytest.raises(ModelNotFoundError, match=f"{repo_id} was not found on the Hub: check the spelling") as caught:
        _fetch(hub_standin, repo_id, cache_dir)

    assert isinstance(caught.value, LookupError)


def test_private_repo_without_token_is_not_found_with_a_token_hint(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add("org/private", bert_base_repo(private=True, authorized_tokens=frozenset({SECRET})))

    with pytest.raises(ModelNotFoundError, match="set HF_TOKEN"):
        _fetch(hub_standin, "org/private", cache_dir)


def test_missing_revision_404(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo())

    with pytest.raises(ModelNotFoundError, match=f"{LLAMA} has no revision 'no-such-branch'"):
        _fetch(hub_standin, f"{LLAMA}@no-such-branch", cache_dir)


def test_repo_without_config_json(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add("org/gguf-only", FakeRepo(files={"README.md": b"# weights only", "model.gguf": b"GGUF"}))

    with pytest.raises(ModelNotFoundError, match=r"org/gguf-only has no config\.json"):
        _fetch(hub_standin, "org/gguf-only", cache_dir)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"model_type": "llama", "hidden_size": 4096,', "not valid JSON"),
        (b'["llama"]', "is a JSON list, not an object"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_malformed_config(hub_standin: HubStandin, cache_dir: Path, content: bytes, match: str) -> None:
    hub_standin.add("org/broken", FakeRepo(files={"config.json": content}))

    with pytest.raises(MalformedConfigError, match=match):
        _fetch(hub_standin, "org/broken", cache_dir)
    # a broken config is an answer, not an outage: nothing is cached
    assert not (cache_dir / "models").exists()


def test_slow_hub_times_out_quickly(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo(behaviour="slow", delay_s=3.0))

    started = time.monotonic()
    with pytest.raises(HubUnavailableError) as caught:
        _fetch(hub_standin, LLAMA, cache_dir, timeout=0.3)

    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert "The Hub could not be reached (no answer within 0.3 s)" in message
    assert "models in the bundled catalog still work offline" in message
    assert isinstance(caught.value, ConnectionError)


def test_server_error_500(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo(behaviour="error500"))

    started = time.monotonic()
    with pytest.raises(HubUnavailableError, match=r"could not be reached \(HTTP 500 from the Hub\)"):
        _fetch(hub_standin, LLAMA, cache_dir)
    assert time.monotonic() - started < 2.0  # no retry loop


# --- offline use of the cache --------------------------------------------------------------------


def test_cached_copy_is_served_when_the_hub_is_down(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo())
    online = _fetch(hub_standin, LLAMA, cache_dir)
    hub_standin.stop()

    offline = _fetch(hub_standin, LLAMA, cache_dir)  # same URL, nothing listening any more
    dead_port = fetch_model(LLAMA, endpoint=_dead_endpoint(), cache_dir=cache_dir, timeout=1.0)

    for cached in (offline, dead_port):
        assert cached.source == "cache"
        assert (cached.config, cached.safetensors_param_counts, cached.sha, cached.fetched_at) == (
            online.config,
            online.safetensors_param_counts,
            online.sha,
            online.fetched_at,
        )
    assert model_spec_from_config(offline.repo_id, offline.config).num_hidden_layers == 32


def test_cached_copy_is_served_on_500_and_in_offline_mode(hub_standin: HubStandin, cache_dir: Path) -> None:
    repo = hub_standin.add(BERT, bert_base_repo())
    _fetch(hub_standin, BERT, cache_dir)
    repo.behaviour = "error500"

    assert _fetch(hub_standin, BERT, cache_dir).source == "cache"
    n_requests = len(hub_standin.requests)
    assert _fetch(hub_standin, BERT, cache_dir, offline=True).source == "cache"
    assert len(hub_standin.requests) == n_requests  # offline=True sends nothing


def test_cache_is_per_revision(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(BERT, bert_base_repo(branches=("main", "v2")))
    _fetch(hub_standin, BERT, cache_dir)

    assert fetch_model(BERT, cache_dir=cache_dir, offline=True).source == "cache"
    with pytest.raises(HubUnavailableError, match=f"{BERT}@v2 has not been fetched before"):
        fetch_model(BERT, revision="v2", cache_dir=cache_dir, offline=True)


def test_offline_with_empty_cache(hub_standin: HubStandin, cache_dir: Path) -> None:
    with pytest.raises(HubUnavailableError, match=r"The Hub could not be reached.*models in the bundled catalog still work offline"):
        fetch_model(LLAMA, cache_dir=cache_dir, offline=True)
    with pytest.raises(HubUnavailableError, match=r"\(connection failed\)"):
        fetch_model(LLAMA, endpoint=_dead_endpoint(), cache_dir=cache_dir, timeout=1.0)
    assert hub_standin.requests == []


def test_private_cached_copy_needs_a_token(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add("org/private", bert_base_repo(private=True, authorized_tokens=frozenset({SECRET})))
    _fetch(hub_standin, "org/private", cache_dir, token=SECRET)

    assert fetch_model("org/private", cache_dir=cache_dir, offline=True, token=SECRET).private
    with pytest.raises(HubUnavailableError):
        fetch_model("org/private", cache_dir=cache_dir, offline=True)


def test_corrupt_cache_file_is_ignored(hub_standin: HubStandin, cache_dir: Path) -> None:
    hub_standin.add(BERT, bert_base_repo())
    _fetch(hub_standin, BERT, cache_dir)
    (cached,) = (cache_dir / "models").rglob("*.json")
    cached.write_text("{not json", encoding="utf-8")

    with pytest.raises(HubUnavailableError):
        fetch_model(BERT, cache_dir=cache_dir, offline=True)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VRAM_CALC_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("VRAM_CALC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "vram-calculator" / "hub"


# --- the token stays secret ----------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["gated", "forbidden", "missing", "slow", "error500"])
def test_token_never_appears_in_errors_or_logs(
    hub_standin: HubStandin, cache_dir: Path, caplog: pytest.LogCaptureFixture, behaviour: str
) -> None:
    hub_standin.add(LLAMA, llama_31_8b_repo(behaviour=behaviour, delay_s=1.0))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(CalculatorError) as caught:
        _fetch(hub_standin, LLAMA, cache_dir, token=SECRET, timeout=0.3)

    error: BaseException | None = caught.value
    while error is not None:  # the huggingface_hub errors kept as causes too
        assert SECRET not in str(error) and SECRET not in repr(error)
        error = error.__cause__ or error.__context__
    assert SECRET not in caplog.text
    assert any(r.headers.get("authorization") == f"Bearer {SECRET}" for r in hub_standin.requests)


# --- parse_model_ref -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("meta-llama/Llama-3.1-8B", ("meta-llama/Llama-3.1-8B", None)),
        ("  meta-llama/Llama-3.1-8B\n", ("meta-llama/Llama-3.1-8B", None)),
        ("meta-llama/Llama-3.1-8B@main", ("meta-llama/Llama-3.1-8B", "main")),
        ("Qwen/Qwen2.5-7B@refs/pr/12", ("Qwen/Qwen2.5-7B", "refs/pr/12")),
        ("org/name@0123456789abcdef0123456789abcdef01234567", ("org/name", "0123456789abcdef0123456789abcdef01234567")),
        ("gpt2", ("gpt2", None)),
        ("bert-base-uncased@v1.0", ("bert-base-uncased", "v1.0")),
        ("https://huggingface.co/meta-llama/Llama-3.1-8B", ("meta-llama/Llama-3.1-8B", None)),
        ("https://huggingface.co/meta-llama/Llama-3.1-8B/tree/v2", ("meta-llama/Llama-3.1-8B", "v2")),
        ("hf.co/openai/gpt-oss-20b/blob/main/config.json", ("openai/gpt-oss-20b", "main")),
    ],
)
def test_parse_model_ref(ref: str, expected: tuple[str, str | None]) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "   ",
        "../etc",
        "../../etc/passwd",
        "a b",
        "org/na me",
        "org/name/extra",
        "/org/name",
        "org/",
        "org--x/name",
        "org/name.git",
        "-org/name",
        "org/name-",
        "org/" + "x" * 97,
        "org/näme",
        "org/name@",
        "org/name@../../x",
        "org/name@-rf",
        "org/name@a b",
        "org/name@main@v2",
    ],
)
def test_parse_model_ref_rejects_garbage(ref: str) -> None:
    with pytest.raises(ModelNotFoundError, match=r"not a Hugging Face model id|not a valid revision|No model id given"):
        parse_model_ref(ref)


def test_fetch_model_rejects_garbage_before_any_request(hub_standin: HubStandin, cache_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"ids look like meta-llama/Llama-3\.1-8B"):
        _fetch(hub_standin, "../etc", cache_dir)
    with pytest.raises(ModelNotFoundError, match="not a valid revision"):
        _fetch(hub_standin, LLAMA, cache_dir, revision="../x")
    assert hub_standin.requests == []


def test_importing_the_module_does_not_import_huggingface_hub() -> None:
    code = "import sys, calculator.hub; sys.exit('huggingface_hub' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, check=False).returncode == 0
