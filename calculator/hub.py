"""Read a model's `config.json` and exact parameter counts from the Hugging Face Hub.

The only module of the library that talks to the network. It imports `huggingface_hub` inside its
functions, so `import calculator` stays free of it. Three calls per model, none downloads weights:

1. `HfApi.model_info`: gated / private flags and the commit the revision resolves to. One request,
   no retries, so a dead or slow Hub is noticed within `timeout` seconds.
2. `hf_hub_download("config.json")` pinned to that commit. The config is data: it is parsed as JSON
   and never executed (no `trust_remote_code`).
3. `HfApi.get_safetensors_metadata`: exact parameter counts per dtype from the safetensors headers
   (HTTP range requests of the first bytes of `model.safetensors`, or of every shard listed in
   `model.safetensors.index.json`).

`huggingface_hub` exceptions become `calculator.errors` with a next step in the message. Every
successful fetch is also written as JSON under the cache directory, so a model looked at once still
works when the Hub cannot be reached (`source="cache"`).

Timeouts: `timeout` bounds the `model_info` request, the HEAD request of `hf_hub_download`
(`etag_timeout`) and each safetensors header request. Two requests inside `huggingface_hub` only
follow its environment knobs, read when it is imported: `HF_HUB_DOWNLOAD_TIMEOUT` (the GET of
config.json) and `HF_HUB_ETAG_TIMEOUT` (the HEAD requests `get_safetensors_metadata` makes to see
which safetensors files exist; it also overrides `etag_timeout` when set). Both default to 10 s.
If the Hub fails only after `model_info` answered (a 5xx or timeout on config.json itself),
`hf_hub_download` retries with its own longer timeout and backoff before we fall back to the cache.

Files on disk: our JSON cache under `cache_dir/models/`, config.json in huggingface_hub's layout
under `cache_dir/files/`; `get_safetensors_metadata` puts `model.safetensors.index.json` in
huggingface_hub's default cache (`HF_HUB_CACHE`), as it takes no cache_dir.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from . import checkpoint
from .bounds import MAX_CONFIG_BYTES
from .errors import CalculatorError, GatedModelError, HubUnavailableError, ModelNotFoundError

if TYPE_CHECKING:
    from .facts import ModelFacts

logger = logging.getLogger(__name__)

HubSource = Literal["hub", "cache"]

CACHE_ENV_VAR = "VRAM_CALC_CACHE"
TOKEN_ENV_VAR = "HF_TOKEN"
DEFAULT_REVISION = "main"
# Bumped when the JSON written by `_write_cache` changes shape or place; other versions are ignored.
# 2: gated and private entries are filed under a fingerprint of the token that read them (format 1
# filed them where any caller would find them).
_CACHE_FORMAT = 2
_LIBRARY_NAME = "vram-calculator"

# Repository ids as the Hub accepts them (huggingface_hub `validate_repo_id`, ASCII only here):
# "name" or "namespace/name", each 1-96 of [A-Za-z0-9._-], not starting or ending with "-" or ".".
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID_RE = re.compile(rf"(?:{_NAME}/)?{_NAME}")
# Branch, tag or commit: git ref characters, no "..", no leading "/" or "-", at most 255.
_REVISION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,254}")
_URL_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/")
_EXAMPLE_ID = "meta-llama/Llama-3.1-8B"
# A cache file is our own JSON of one config plus counts; anything larger was not written by us.
MAX_CACHE_FILE_BYTES = 64 * 2**20


@dataclass(frozen=True, slots=True, kw_only=True)
class HubModel:
    """What the Hub says about one model at one revision."""

    repo_id: str
    # The revision that was asked for (None = the default branch).
    revision: str | None
    # The commit it resolved to, when the Hub said so.
    sha: str | None
    config: dict[str, Any]
    # safetensors dtype name ("BF16", "U8", "F32", ...) -> number of parameters stored in it; None
    # when the repository has no safetensors weights (callers fall back to config arithmetic).
    safetensors_param_counts: dict[str, int] | None
    gated: bool
    private: bool
    source: HubSource
    # When the Hub was read (ISO 8601, UTC); for source="cache", when the cached copy was fetched.
    fetched_at: str

    @property
    def safetensors_num_params(self) -> int | None:
        """Total parameters over all dtypes of the safetensors checkpoint, if there is one."""
        return None if self.safetensors_param_counts is None else sum(self.safetensors_param_counts.values())


def default_token() -> str | None:
    """The token in `HF_TOKEN`, or None. Never log or print it."""
    token = os.environ.get(TOKEN_ENV_VAR, "").strip()
    return token or None


def default_cache_dir() -> Path:
    """`$VRAM_CALC_CACHE`, else `~/.cache/vram-calculator/hub`."""
    configured = os.environ.get(CACHE_ENV_VAR, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "vram-calculator" / "hub"


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """Split "org/name@revision" into ("org/name", "revision"); a bare id gives revision None.

    Also accepts a pasted Hub URL ("https://huggingface.co/org/name", ".../tree/<revision>").
    Raises `ModelNotFoundError` on anything that cannot be a Hub repository id ("../etc", "a b").
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ModelNotFoundError(f"No model id given: type a Hugging Face model id such as {_EXAMPLE_ID}.")
    text = ref.strip()
    for prefix in _URL_PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix) :].strip("/")
            text = _split_url_revision(text)
            break
    repo_id, sep, revision = text.partition("@")
    if not _is_valid_repo_id(repo_id):
        raise ModelNotFoundError(
            f"{ref!r} is not a Hugging Face model id: ids look like {_EXAMPLE_ID} (a namespace, '/', a name; letters, digits, "
            "'-', '_' and '.'), optionally followed by @revision."
        )
    if not sep:
        return repo_id, None
    if not _is_valid_revision(revision):
        raise ModelNotFoundError(
            f"{revision!r} in {ref!r} is not a valid revision: after '@' give a branch, tag or commit hash, e.g. {_EXAMPLE_ID}@main."
        )
    return repo_id, revision


def fetch_model(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    offline: bool = False,
) -> HubModel:
    """Read `config.json`, exact parameter counts and access flags of a model repository.

    `repo_id` may carry "@revision". `token` defaults to `HF_TOKEN` (no other token is read, so the
    result never depends on a login file of whoever runs the server). `endpoint` defaults to
    `HF_ENDPOINT` as set at call time, else https://huggingface.co. `cache_dir` defaults to
    `default_cache_dir()`. With `offline=True`, or when the Hub cannot be reached (connection
    error, timeout, HTTP 5xx), the last successful fetch of this repo and revision stored under
    `cache_dir` is returned with `source="cache"`; without one, `HubUnavailableError`.
    """
    repo_id, ref_revision = parse_model_ref(repo_id)
    if revision is not None and not _is_valid_revision(revision):
        raise ModelNotFoundError(f"{revision!r} is not a valid revision: give a branch, tag or commit hash, e.g. main.")
    if revision is not None and ref_revision is not None and revision != ref_revision:
        raise ModelNotFoundError(f"Two revisions given for {repo_id} ({ref_revision!r} and {revision!r}): give only one.")
    revision = revision if revision is not None else ref_revision
    token = token if token is not None else default_token()
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    from huggingface_hub import constants

    if offline or constants.is_offline_mode():
        return _serve_cached(cache_root, repo_id, revision, token=token, reason="offline mode is on")

    try:
        model = _fetch_from_hub(
            repo_id,
            revision=revision,
            token=token,
            files_dir=cache_root / "files",
            # HF_ENDPOINT is read now, not when huggingface_hub was imported (constants.ENDPOINT).
            endpoint=(endpoint or os.environ.get("HF_ENDPOINT", "").strip() or constants.ENDPOINT).rstrip("/"),
            timeout=timeout,
        )
    except _HubUnreachable as unreachable:
        return _serve_cached(cache_root, repo_id, revision, token=token, reason=unreachable.reason)
    _write_cache(cache_root, model, token=token)
    return model


# --- talking to the Hub ------------------------------------------------------------------------


def _raise_known(err: Exception, *, repo_id: str, revision: str | None, token: str | None, timeout: float) -> None:
    """Re-raise a huggingface_hub error the user can act on as a CalculatorError, or an unreachable
    Hub as `_HubUnreachable` (served from the cache by the caller); return for anything else."""
    translated = _translate(err, repo_id=repo_id, revision=revision, token=token)
    if translated is not None:
        raise translated from err
    if _is_unreachable(err):
        raise _HubUnreachable(_reason(err, timeout)) from err


class _HubUnreachable(Exception):
    """Internal: the Hub did not answer usefully (network, timeout, 5xx); the cache may serve."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fetch_from_hub(repo_id: str, *, revision: str | None, token: str | None, files_dir: Path, endpoint: str, timeout: float) -> HubModel:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import NotASafetensorsRepoError, SafetensorsParsingError

    # token=False stops huggingface_hub from reading a token file on its own.
    api = HfApi(endpoint=endpoint, token=token or False, library_name=_LIBRARY_NAME)
    fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
    canonical_id, sha, gated, private = repo_id, None, False, False

    try:
        info = api.model_info(repo_id, revision=revision, timeout=timeout)
    except Exception as err:
        _raise_known(err, repo_id=repo_id, revision=revision, token=token, timeout=timeout)
        # A mirror without the model API, or a payload ModelInfo cannot read: the file calls below
        # still give the config and counts; only the gated/private flags stay unknown (False).
        logger.info("model_info of %s failed (%s); continuing without access flags", repo_id, type(err).__name__)
    else:
        sha = info.sha
        gated = bool(info.gated)  # False, or "auto" / "manual"
        private = bool(info.private)
        if isinstance(info.id, str) and info.id.lower() == repo_id.lower():
            canonical_id = info.id

    pinned = sha or revision
    try:
        config_path = api.hf_hub_download(repo_id, "config.json", revision=pinned, cache_dir=files_dir, etag_timeout=timeout)
        config = _read_config(Path(config_path), repo_id=repo_id, revision=revision)
        sha = sha or _snapshot_commit(Path(config_path))
        try:
            counts = dict(api.get_safetensors_metadata(repo_id, revision=pinned, timeout=timeout).parameter_count)
        except NotASafetensorsRepoError:
            counts = None
        except SafetensorsParsingError as err:
            logger.warning("safetensors headers of %s could not be parsed (%s); using config arithmetic", repo_id, err)
            counts = None
    except CalculatorError:
        raise
    except Exception as err:
        _raise_known(err, repo_id=repo_id, revision=revision, token=token, timeout=timeout)
        raise

    return HubModel(
        repo_id=canonical_id,
        revision=revision,
        sha=sha,
        config=config,
        safetensors_param_counts={str(k): int(v) for k, v in counts.items()} if counts is not None else None,
        gated=gated,
        private=private,
        source="hub",
        fetched_at=fetched_at,
    )


def _read_config(path: Path, *, repo_id: str, revision: str | None) -> dict[str, Any]:
    where = f"config.json of {repo_id}@{revision}" if revision else f"config.json of {repo_id}"
    return checkpoint.parse_config(checkpoint.read_capped(path, MAX_CONFIG_BYTES, what=where), where=where)


def _snapshot_commit(config_path: Path) -> str | None:
    """hf_hub_download stores files as .../snapshots/<commit>/config.json."""
    parent = config_path.parent
    return parent.name if parent.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", parent.name) else None


def _error_chain(err: BaseException) -> list[BaseException]:
    """`err` and its causes: hf_hub_download wraps HEAD failures in LocalEntryNotFoundError."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _http_status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_unreachable(err: BaseException) -> bool:
    """Connection refused, DNS, timeout, proxy trouble, HTTP 408/429/5xx, offline mode, or a server
    that is not a Hub (no X-Repo-Commit): nothing the user can fix in the model id."""
    import httpx2
    from huggingface_hub.errors import FileMetadataError, LocalEntryNotFoundError, OfflineModeIsEnabled

    for item in _error_chain(err):
        if isinstance(item, httpx2.TransportError | OfflineModeIsEnabled | FileMetadataError | ConnectionError | TimeoutError):
            return True
        status = _http_status(item)
        if status is not None and (status >= 500 or status in (408, 429)):
            return True
    # hf_hub_download says "check your connection" with no cause when it had no HEAD answer.
    return isinstance(err, LocalEntryNotFoundError)


def _reason(err: BaseException, timeout: float) -> str:
    """A short, token-free description of why the Hub could not be used."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    for item in _error_chain(err):
        if isinstance(item, httpx2.TimeoutException | TimeoutError):
            return f"no answer within {timeout:g} s"
        if isinstance(item, httpx2.ConnectError | ConnectionRefusedError):
            return "connection failed"
        if isinstance(item, OfflineModeIsEnabled):
            return "HF_HUB_OFFLINE is set"
        status = _http_status(item)
        if status is not None:
            return f"HTTP {status} from the Hub"
    return type(err).__name__


def _translate(err: BaseException, *, repo_id: str, revision: str | None, token: str | None) -> CalculatorError | None:
    """The user-facing error for a Hub answer about this model, or None when the Hub was merely
    unreachable (the caller may then serve the cache)."""
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HFValidationError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url = f"huggingface.co/{repo_id}"
    for item in _error_chain(err):
        status = _http_status(item)
        if isinstance(item, GatedRepoError) or (status in (401, 403) and not isinstance(item, RepositoryNotFoundError)):
            if isinstance(item, GatedRepoError):
                detail = "the token in use has no access yet" if token else "no token was given"
                return GatedModelError(
                    f"{repo_id} is gated: accept its license on {url} and set HF_TOKEN to a read token of that account ({detail}). "
                    "Models in the bundled catalog work without a token."
                )
            if status == 401:
                return GatedModelError(
                    f"The Hub rejected the token for {repo_id} (HTTP 401): create a new read token at huggingface.co/settings/tokens "
                    "and set HF_TOKEN to it."
                )
            return GatedModelError(
                f"The Hub refused access to {repo_id} (HTTP 403): if it is gated, accept its license on {url}; "
                "make sure HF_TOKEN is a token with read access to this repository."
            )
        if isinstance(item, RevisionNotFoundError):
            return ModelNotFoundError(
                f"{repo_id} has no revision {revision or DEFAULT_REVISION!r}: check the branch, tag or commit on {url}/tree/main, "
                "or leave the revision out to use the default branch."
            )
        if isinstance(item, RepositoryNotFoundError):
            hint = "if it is private, check that HF_TOKEN can read it" if token else "if it is private, set HF_TOKEN to a token that can read it"
            return ModelNotFoundError(f"{repo_id} was not found on the Hub: check the spelling (ids look like {_EXAMPLE_ID}); {hint}.")
        if isinstance(item, RemoteEntryNotFoundError):
            return ModelNotFoundError(
                f"{repo_id} has no config.json{f' at revision {revision}' if revision else ''}, so it is not a transformers model the "
                "calculator can read: pick the base model it was made from, or a repository that has a config.json."
            )
        if isinstance(item, DisabledRepoError):
            return ModelNotFoundError(f"{repo_id} has been disabled on the Hub: pick another model.")
        if isinstance(item, HFValidationError):
            return ModelNotFoundError(f"{repo_id!r} is not a valid Hugging Face model id ({item}).")
        if status is not None and status == 404:
            return ModelNotFoundError(f"{repo_id} was not found on the Hub (HTTP 404): check the model id and revision.")
    return None


# --- the on-disk cache -------------------------------------------------------------------------


def token_fingerprint(token: str | None) -> str | None:
    """A stable, non-reversible name for a token (SHA-256 of a salted string, 32 hex digits), so a
    cache can be keyed per token without storing it. None for no token."""
    if not token:
        return None
    return hashlib.sha256(f"vram-calculator token fingerprint\0{token}".encode()).hexdigest()[:32]


def _cache_path(cache_root: Path, repo_id: str, revision: str | None, *, token: str | None = None) -> Path:
    """Where one fetch is stored. Public repos: `<revision>.json`, shared by every caller. Gated or
    private repos: `<revision>.<token fingerprint>.json`, found again only by the same token."""
    # Valid repo ids contain no "--", so this folder name is unambiguous (the Hub cache's scheme);
    # lower-cased because the Hub treats ids case-insensitively.
    folder = "models--" + repo_id.lower().replace("/", "--")
    fingerprint = token_fingerprint(token)
    name = quote(revision or DEFAULT_REVISION, safe="") + (f".{fingerprint}" if fingerprint else "")
    return cache_root / "models" / folder / f"{name}.json"


def _write_cache(cache_root: Path, model: HubModel, *, token: str | None) -> None:
    """Best effort: a read-only or full disk only costs the offline fallback."""
    restricted = model.gated or model.private
    if restricted and not token:
        return  # cannot happen (the Hub needs a token for those); never file one where anyone finds it
    path = _cache_path(cache_root, model.repo_id, model.revision, token=token if restricted else None)
    payload = {
        "format": _CACHE_FORMAT,
        "repo_id": model.repo_id,
        "revision": model.revision,
        "sha": model.sha,
        "config": model.config,
        "safetensors_param_counts": model.safetensors_param_counts,
        "gated": model.gated,
        "private": model.private,
        "fetched_at": model.fetched_at,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            json.dump(payload, tmp)
        os.replace(tmp.name, path)
    except (OSError, ValueError) as err:
        logger.warning("could not cache %s under %s: %s", model.repo_id, cache_root, err)


def _read_cache(cache_root: Path, repo_id: str, revision: str | None, *, token: str | None) -> HubModel | None:
    """The entry this token may see: its own gated/private entry first, then the public one. An
    entry marked gated or private is never taken from the public file."""
    candidates = [(_cache_path(cache_root, repo_id, revision, token=token), True)] if token else []
    candidates.append((_cache_path(cache_root, repo_id, revision), False))
    for path, own in candidates:
        model = _load_cache_file(path, repo_id, revision)
        if model is not None and (own or not (model.gated or model.private)):
            return model
    return None


def _load_cache_file(path: Path, repo_id: str, revision: str | None) -> HubModel | None:
    try:
        if path.stat().st_size > MAX_CACHE_FILE_BYTES:
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(raw, Mapping) or raw.get("format") != _CACHE_FORMAT or not isinstance(raw.get("config"), dict):
        return None
    counts = raw.get("safetensors_param_counts")
    if isinstance(counts, dict) and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        return None
    return HubModel(
        repo_id=str(raw.get("repo_id") or repo_id),
        revision=revision,
        sha=raw.get("sha") if isinstance(raw.get("sha"), str) else None,
        config=raw["config"],
        safetensors_param_counts={str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else None,
        gated=bool(raw.get("gated")),
        private=bool(raw.get("private")),
        source="cache",
        fetched_at=str(raw.get("fetched_at", "")),
    )


def _serve_cached(cache_root: Path, repo_id: str, revision: str | None, *, token: str | None, reason: str) -> HubModel:
    # The cache may be shared by every user of one server: a gated or private repo's entry is only
    # handed out to the token that fetched it (see `_read_cache`).
    cached = _read_cache(cache_root, repo_id, revision, token=token)
    if cached is not None:
        logger.info("serving %s from the local cache (%s)", repo_id, reason)
        return cached
    ref = f"{repo_id}@{revision}" if revision else repo_id
    raise HubUnavailableError(
        f"The Hub could not be reached ({reason}) and {ref} has not been fetched before on this machine: check the network "
        "connection, proxy or HF_ENDPOINT and retry; models in the bundled catalog still work offline."
    )


# --- parsing helpers ---------------------------------------------------------------------------


def _is_valid_repo_id(repo_id: str) -> bool:
    return bool(_REPO_ID_RE.fullmatch(repo_id)) and "--" not in repo_id and ".." not in repo_id and not repo_id.endswith(".git")


def _is_valid_revision(revision: str) -> bool:
    return bool(_REVISION_RE.fullmatch(revision)) and ".." not in revision and "//" not in revision and not revision.endswith(("/", ".lock"))


def _split_url_revision(path: str) -> str:
    """"org/name/tree/rev" or "org/name/blob/rev/file" (a pasted URL) -> "org/name@rev"."""
    parts = path.split("/")
    for marker in ("tree", "blob", "resolve"):
        if marker in parts[1:3]:
            at = parts.index(marker, 1)
            repo = "/".join(parts[:at])
            return f"{repo}@{parts[at + 1]}" if len(parts) > at + 1 and parts[at + 1] else repo
    return path


# --- model facts (task, downloads, likes, ...) ---------------------------------------------------


def fetch_model_facts(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    timeout: float = 5.0,
) -> ModelFacts | None:
    """The facts a model page shows (`calculator.facts.ModelFacts`), from one `model_info` request.

    Facts are decoration next to the estimate, never a reason to fail: any error (unreachable Hub,
    unknown repo, malformed answer) gives None, and the caller falls back to the catalog's dated
    copy. `revision` should be the commit the estimate's config was read at, so the facts name it.
    """
    from huggingface_hub import HfApi, constants

    from .facts import facts_from_model_info

    try:
        repo_id, ref_revision = parse_model_ref(repo_id)
    except CalculatorError:
        return None
    revision = revision or ref_revision
    if constants.is_offline_mode() or (revision is not None and not _is_valid_revision(revision)):
        return None
    token = token if token is not None else default_token()
    api = HfApi(endpoint=(endpoint or os.environ.get("HF_ENDPOINT", "").strip() or constants.ENDPOINT).rstrip("/"),
                token=token or False, library_name=_LIBRARY_NAME)
    as_of = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        info = api.model_info(repo_id, revision=revision, timeout=timeout)
    except Exception as err:
        logger.info("model_info of %s for its facts failed (%s)", repo_id, type(err).__name__)
        return None
    return facts_from_model_info(info, repo_id=repo_id, as_of=as_of)
