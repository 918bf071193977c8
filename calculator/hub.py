"""Read a model's `config.json` and exact parameter counts from the Hugging Face Hub.

The only module of the library that talks to the network. It imports `huggingface_hub` inside its
functions, so `import calculator` stays free of it. Plain GET requests through huggingface_hub's
HTTP session (its headers, proxies and error types via `hf_raise_for_status`), none downloads weights:

1. `api/models/{repo}[/revision/{rev}]` (model_info): gated / private flags, the commit the
   revision resolves to and the file list.
2. `{repo}/resolve/{commit}/config.json`, pinned to that commit. The config is data: it is parsed
   as JSON and never executed (no `trust_remote_code`).
3. The safetensors headers: range requests of the first bytes of `model.safetensors`, or of every
   shard `model.safetensors.index.json` names (8 at a time).

Untrusted answers are bounded (`calculator.bounds`): every body has a size cap (config 8 MiB,
index 64 MiB, header 25 MB each and 256 MiB together, model_info 32 MiB, error bodies 64 KiB),
at most 5 redirects per request (the token is dropped on a redirect to another host), `timeout`
on each connect and read, and one `deadline` (30 s) on the whole lookup: it runs in a worker
thread, so a request that never answers or a body trickled byte by byte cannot hold the caller.
There are no retries (huggingface_hub's `hf_hub_download` retries a failed HEAD for up to 60 s).

`huggingface_hub` exceptions become `calculator.errors` with a next step in the message. Every
successful fetch is also written as JSON under the cache directory (`cache_dir/models/`), so a
model looked at once still works when the Hub cannot be reached (`source="cache"`, the reason in
`stale_reason`). Gated and private entries are filed per token fingerprint and served only to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, urljoin, urlsplit

from . import bounds, checkpoint
from .bounds import MAX_CONFIG_BYTES, MAX_INDEX_BYTES, MAX_TOTAL_HEADER_BYTES
from .errors import CalculatorError, GatedModelError, HubUnavailableError, MalformedConfigError, ModelNotFoundError

if TYPE_CHECKING:
    from .facts import ModelFacts

logger = logging.getLogger(__name__)

HubSource = Literal["hub", "cache"]
_T = TypeVar("_T")

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
    # source="cache": why the Hub was not used ("offline mode is on", "no answer within 10 s", ...).
    stale_reason: str = ""

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
    deadline: float | None = None,
) -> HubModel:
    """Read `config.json`, exact parameter counts and access flags of a model repository.

    `repo_id` may carry "@revision". `token` defaults to `HF_TOKEN` (no other token is read, so the
    result never depends on a login file of whoever runs the server). `endpoint` defaults to
    `HF_ENDPOINT` as set at call time, else https://huggingface.co. `cache_dir` defaults to
    `default_cache_dir()`. `timeout` bounds each request's connect and each read; `deadline` bounds
    the whole lookup (every request together, no retries; default `bounds.HUB_DEADLINE_S`). With `offline=True`, or when the Hub
    cannot be used (connection error, timeout, deadline, HTTP 5xx, redirect loop, an answer that is
    not the Hub's), the last successful fetch of this repo and revision that this token may see is
    returned with `source="cache"` and the reason in `stale_reason`; without one, `HubUnavailableError`.
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

    quiet_huggingface_hub()
    if offline or constants.is_offline_mode():
        return _serve_cached(cache_root, repo_id, revision, token=token, reason="offline mode is on")

    # HF_ENDPOINT is read now, not when huggingface_hub was imported (constants.ENDPOINT).
    base = (endpoint or os.environ.get("HF_ENDPOINT", "").strip() or constants.ENDPOINT).rstrip("/")
    try:
        model = _with_deadline(
            lambda stop_at: _fetch_from_hub(repo_id, revision=revision, token=token, endpoint=base, timeout=timeout, stop_at=stop_at),
            bounds.HUB_DEADLINE_S if deadline is None else deadline,
        )
    except _HubUnreachable as unreachable:
        return _serve_cached(cache_root, repo_id, revision, token=token, reason=unreachable.reason)
    _write_cache(cache_root, model, token=token)
    return model


def quiet_huggingface_hub() -> None:
    """Keep huggingface_hub's progress bars and log lines (retry and warning headers) off stderr:
    the CLI's contract is one error line, and the app shows our own messages. An operator who sets
    HF_HUB_VERBOSITY keeps what they asked for."""
    if os.environ.get("HF_HUB_VERBOSITY"):
        return
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    logging.getLogger("huggingface_hub").setLevel(logging.CRITICAL + 1)


# --- talking to the Hub ------------------------------------------------------------------------

# Redirects followed per request: the Hub answers a file with at most one (an LFS file to its CDN);
# 5 leaves room for a mirror and stops a loop at once.
MAX_REDIRECTS = 5
# model_info JSON: the siblings list of a repo with ~100k files is a few MB; 32 MiB is far beyond.
MAX_MODEL_INFO_BYTES = 32 * 2**20
# The first range request of a safetensors file: huggingface_hub 2.4 `parse_safetensors_file_metadata`
# reads bytes 0-100000 first, so a typical header costs one request.
FIRST_HEADER_RANGE = 100_001
# Shard headers fetched at once (huggingface_hub's get_safetensors_metadata also uses a pool).
HEADER_WORKERS = 8
# An error body is read only for its message.
MAX_ERROR_BODY_BYTES = 64 * 2**10


class _HubUnreachable(Exception):
    """Internal: the Hub did not answer usefully (network, timeout, 5xx); the cache may serve."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _with_deadline(work: Callable[[float], _T], seconds: float) -> _T:
    """`work(stop_at)` in a worker thread, given up after `seconds`: one deadline on the whole
    lookup whatever the Hub does (a HEAD that never answers, a body trickled one byte at a time).
    The worker checks `stop_at` between reads and stops soon after."""
    stop_at = time.monotonic() + seconds
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work(stop_at)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=run, name="hub-lookup", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _HubUnreachable(f"no complete answer within the {seconds:g} s deadline")
    if "error" in box:
        raise box["error"]
    return box["value"]


class _HubHttp:
    """GET requests to one Hub endpoint with the caps and the deadline of one lookup. Errors come
    out as huggingface_hub's (from its `hf_raise_for_status`), so `_translate` reads them."""

    def __init__(self, *, endpoint: str, token: str | None, timeout: float, stop_at: float) -> None:
        from huggingface_hub.utils import build_hf_headers, get_session

        self.endpoint = endpoint
        # token=False stops huggingface_hub from reading a token file on its own.
        self.headers = build_hf_headers(token=token or False, library_name=_LIBRARY_NAME)
        self.session = get_session()
        self.timeout = timeout
        self.stop_at = stop_at

    def check_time(self) -> None:
        if time.monotonic() > self.stop_at:
            raise _HubUnreachable("no complete answer before the deadline")

    def get(self, path: str, *, cap: int, what: str, byte_range: tuple[int, int] | None = None) -> tuple[bytes, Mapping[str, str]]:
        """The body (at most `cap` bytes) and headers of GET endpoint/path. A range request reads at
        most the range even if the server ignores it; anything else larger than `cap` is refused."""
        import httpx2
        from huggingface_hub.utils import hf_raise_for_status

        url = f"{self.endpoint}/{path}"
        headers = dict(self.headers)
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        for _ in range(MAX_REDIRECTS + 1):
            self.check_time()
            timeout = max(0.05, min(self.timeout, self.stop_at - time.monotonic()))
            with self.session.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=False) as response:
                location = response.headers.get("location")
                if response.status_code in (301, 302, 303, 307, 308) and location:
                    target = urljoin(url, location)
                    if _origin(target) != _origin(url):  # the token never leaves the Hub's host
                        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                    url = target
                    continue
                failed = response.status_code >= 400
                limit = MAX_ERROR_BODY_BYTES if failed else cap
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        if failed or byte_range is not None:
                            del body[limit:]
                            break
                        raise MalformedConfigError(f"{what} is larger than {_size(cap)}: no real file of its kind is; try another model.")
                    self.check_time()
                if failed:
                    hf_raise_for_status(httpx2.Response(response.status_code, headers=response.headers, content=bytes(body), request=response.request))
                    raise _HubUnreachable(f"HTTP {response.status_code} from the Hub")
                return bytes(body), response.headers
        raise _HubUnreachable(f"the Hub redirected more than {MAX_REDIRECTS} times")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


def _fetch_from_hub(repo_id: str, *, revision: str | None, token: str | None, endpoint: str, timeout: float, stop_at: float) -> HubModel:
    """model_info, config.json pinned to the commit, then the safetensors headers (via the index for
    a sharded checkpoint). Every failure is a CalculatorError or `_HubUnreachable`."""
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        http = _HubHttp(endpoint=endpoint, token=token, timeout=timeout, stop_at=stop_at)
        fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
        info = _model_info(http, repo_id, revision=revision, token=token)
        sha = info.get("sha")
        pinned = quote(sha or revision or DEFAULT_REVISION, safe="")
        resolve = f"{repo_id}/resolve/{pinned}"
        raw, headers = _get_file(http, f"{resolve}/config.json", "config.json", repo_id=repo_id, revision=revision, token=token,
                                 cap=MAX_CONFIG_BYTES + 1)
        config = checkpoint.parse_config(raw, where=f"config.json of {where}")
        commit = headers.get("x-repo-commit")
        sha = sha or (commit if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit) else None)
        counts = _safetensors_counts(http, resolve, info.get("siblings"), repo_id=repo_id, revision=revision, token=token)
    except (CalculatorError, _HubUnreachable):
        raise
    except Exception as err:  # an answer no Hub gives (malformed headers, a broken redirect): not the model's fault
        logger.info("Hub lookup of %s failed: %s", repo_id, type(err).__name__)
        raise _HubUnreachable(_reason(err, timeout)) from err
    return HubModel(
        repo_id=info.get("id") or repo_id,
        revision=revision,
        sha=sha,
        config=config,
        safetensors_param_counts=counts,
        gated=bool(info.get("gated")),
        private=bool(info.get("private")),
        source="hub",
        fetched_at=fetched_at,
    )


def _model_info(http: _HubHttp, repo_id: str, *, revision: str | None, token: str | None) -> dict[str, Any]:
    """id, sha, gated, private and siblings (file names) from the model API, type-checked. A mirror
    without the API, or a payload that is not the Hub's: {} (the file requests still answer)."""
    path = f"api/models/{repo_id}" + (f"/revision/{quote(revision, safe='')}" if revision else "")
    try:
        raw, _ = http.get(path, cap=MAX_MODEL_INFO_BYTES, what="the model_info answer")
        data = json.loads(raw)
    except (CalculatorError, _HubUnreachable):
        raise
    except Exception as err:
        _raise_known(err, repo_id=repo_id, revision=revision, token=token, timeout=http.timeout)
        logger.info("model_info of %s failed (%s); continuing without access flags", repo_id, type(err).__name__)
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(data.get("sha"), str) and re.fullmatch(r"[0-9a-f]{40}", data["sha"]):
        out["sha"] = data["sha"]
    if isinstance(data.get("id"), str) and data["id"].lower() == repo_id.lower():
        out["id"] = data["id"]
    out["gated"] = data.get("gated") in (True, "auto", "manual")
    out["private"] = data.get("private") is True
    siblings = data.get("siblings")
    if isinstance(siblings, list):
        out["siblings"] = {s["rfilename"] for s in siblings if isinstance(s, dict) and isinstance(s.get("rfilename"), str)}
    return out


def _get_file(http: _HubHttp, path: str, filename: str, *, repo_id: str, revision: str | None, token: str | None, cap: int,
              byte_range: tuple[int, int] | None = None) -> tuple[bytes, Mapping[str, str]]:
    """One file of the repository; huggingface_hub errors become ours, naming `filename`."""
    try:
        return http.get(path, cap=cap, what=f"{filename} of {repo_id}", byte_range=byte_range)
    except (CalculatorError, _HubUnreachable):
        raise
    except Exception as err:
        _raise_known(err, repo_id=repo_id, revision=revision, token=token, timeout=http.timeout, filename=filename)
        raise


def _safetensors_counts(http: _HubHttp, resolve: str, siblings: set[str] | None, *, repo_id: str, revision: str | None,
                        token: str | None) -> dict[str, int] | None:
    """Parameters per dtype from every safetensors header, or None when the repository has no
    safetensors weights (the caller falls back to config arithmetic)."""
    from huggingface_hub.errors import HfHubHTTPError

    index_name, single_name = "model.safetensors.index.json", "model.safetensors"

    def absent(name: str) -> bool:
        return siblings is not None and name not in siblings

    shards: list[str] | None = None
    if not absent(index_name):
        try:
            raw, _ = _get_file(http, f"{resolve}/{index_name}", index_name, repo_id=repo_id, revision=revision, token=token,
                               cap=MAX_INDEX_BYTES + 1)
            shards, _total = checkpoint.parse_index(raw, what=f"{index_name} of {repo_id}")
        except ModelNotFoundError as err:
            if siblings is not None or not isinstance(err.__cause__, HfHubHTTPError):
                raise
    if shards is None:
        if absent(single_name):
            return None
        shards = [single_name]
    total_header_bytes = [0]
    lock = threading.Lock()

    def one(name: str) -> dict[str, int]:
        return _header_counts(http, resolve, name, repo_id=repo_id, revision=revision, token=token, budget=(total_header_bytes, lock),
                              probing=siblings is None and name == single_name and len(shards) == 1)

    try:
        if len(shards) == 1:
            per_shard = [one(shards[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(HEADER_WORKERS, len(shards)), thread_name_prefix="hub-header") as pool:
                per_shard = list(pool.map(one, shards))
    except _NoSuchFile:
        return None
    counts: dict[str, int] = {}
    for shard_counts in per_shard:
        for dtype, n in shard_counts.items():
            counts[dtype] = counts.get(dtype, 0) + n
    return checkpoint.checked_counts(counts, what=f"the safetensors checkpoint of {repo_id}")


class _NoSuchFile(Exception):
    """Internal: probing for model.safetensors (no file list) found none."""


def _header_counts(http: _HubHttp, resolve: str, name: str, *, repo_id: str, revision: str | None, token: str | None,
                   budget: tuple[list[int], threading.Lock], probing: bool) -> dict[str, int]:
    what = f"{name} of {repo_id}"
    path = f"{resolve}/{quote(name, safe='/')}"
    try:
        first, _ = _get_file(http, path, name, repo_id=repo_id, revision=revision, token=token, cap=FIRST_HEADER_RANGE,
                             byte_range=(0, FIRST_HEADER_RANGE - 1))
    except ModelNotFoundError:
        if probing:
            raise _NoSuchFile from None
        raise
    length = checkpoint.header_length(first[:8], what=what)
    with budget[1]:
        budget[0][0] += length
        if budget[0][0] > MAX_TOTAL_HEADER_BYTES:
            raise MalformedConfigError(f"The safetensors headers of {repo_id} total more than {_size(MAX_TOTAL_HEADER_BYTES)}: no real checkpoint's do.")
    raw = first[8 : 8 + length]
    if len(raw) < length and len(first) == FIRST_HEADER_RANGE:
        rest, _ = _get_file(http, path, name, repo_id=repo_id, revision=revision, token=token, cap=length - len(raw),
                            byte_range=(FIRST_HEADER_RANGE, 8 + length - 1))
        raw += rest
    if len(raw) != length:
        raise MalformedConfigError(f"{what} is cut short: its header claims {length:,} bytes, the file has {len(raw):,}.")
    return checkpoint.parse_header(raw, what=what)


def _raise_known(err: Exception, *, repo_id: str, revision: str | None, token: str | None, timeout: float, filename: str = "config.json") -> None:
    """Re-raise a huggingface_hub error the user can act on as a CalculatorError, or an unreachable
    Hub as `_HubUnreachable` (served from the cache by the caller); return for anything else."""
    translated = _translate(err, repo_id=repo_id, revision=revision, token=token, filename=filename)
    if translated is not None:
        raise translated from err
    if _is_unreachable(err):
        raise _HubUnreachable(_reason(err, timeout)) from err


def _error_chain(err: BaseException) -> list[BaseException]:
    """`err` and its causes."""
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
    """Connection refused, DNS, timeout, proxy trouble, HTTP 408/429/5xx or another status the model
    id cannot explain, offline mode: nothing the user can fix in the model id."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    for item in _error_chain(err):
        if isinstance(item, httpx2.HTTPError | httpx2.InvalidURL | OfflineModeIsEnabled | ConnectionError | TimeoutError):
            return True
        status = _http_status(item)
        if status is not None and status >= 400:
            return True
    return False


def _reason(err: BaseException, timeout: float) -> str:
    """A short, token-free description of why the Hub could not be used, in words (no class names)."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    for item in _error_chain(err):
        if isinstance(item, httpx2.TimeoutException | TimeoutError):
            return f"no answer within {timeout:g} s"
        if isinstance(item, httpx2.ConnectError | ConnectionRefusedError):
            return "connection failed"
        if isinstance(item, httpx2.RemoteProtocolError | httpx2.ReadError):
            return "the connection broke off mid-answer"
        if isinstance(item, httpx2.DecodingError):
            return "the answer could not be decoded"
        if isinstance(item, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
            return "the Hub redirected to an address that is not a web address"
        if isinstance(item, httpx2.ProxyError):
            return "the proxy refused the connection"
        if isinstance(item, OfflineModeIsEnabled):
            return "HF_HUB_OFFLINE is set"
        status = _http_status(item)
        if status is not None:
            return f"HTTP {status} from the Hub"
    return "the answer was not one the Hub gives"


def _translate(err: BaseException, *, repo_id: str, revision: str | None, token: str | None, filename: str = "config.json") -> CalculatorError | None:
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
    ref = f"{repo_id}@{revision}" if revision else repo_id
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
        if isinstance(item, RemoteEntryNotFoundError) or (status == 404 and filename != "config.json"):
            if filename == "config.json":
                return ModelNotFoundError(
                    f"{repo_id} has no config.json{f' at revision {revision}' if revision else ''}, so it is not a transformers model the "
                    "calculator can read: pick the base model it was made from, or a repository that has a config.json."
                )
            return ModelNotFoundError(
                f"{ref}: the checkpoint file {filename} is missing from the repository (its index or file list names it), so the "
                "checkpoint is incomplete: try another revision, or the repository it was copied from."
            )
        if isinstance(item, DisabledRepoError):
            return ModelNotFoundError(f"{repo_id} has been disabled on the Hub: pick another model.")
        if isinstance(item, HFValidationError):
            return ModelNotFoundError(f"{repo_id!r} is not a valid Hugging Face model id.")
        if status == 404:
            return ModelNotFoundError(f"{repo_id} was not found on the Hub (HTTP 404): check the model id and revision.")
        if status == 410:
            if filename != "config.json":
                return ModelNotFoundError(f"{ref}: the checkpoint file {filename} is gone from the Hub (HTTP 410): try another revision.")
            return ModelNotFoundError(f"{repo_id} is gone from the Hub (HTTP 410: deleted or moved): pick another model.")
        if status == 400:
            return ModelNotFoundError(f"The Hub rejected the request for {ref} (HTTP 400): check the model id and revision.")
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
        return replace(cached, stale_reason=reason)
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
    from huggingface_hub import ModelInfo, constants

    from .facts import facts_from_model_info

    try:
        repo_id, ref_revision = parse_model_ref(repo_id)
    except CalculatorError:
        return None
    revision = revision or ref_revision
    if constants.is_offline_mode() or (revision is not None and not _is_valid_revision(revision)):
        return None
    token = token if token is not None else default_token()
    base = (endpoint or os.environ.get("HF_ENDPOINT", "").strip() or constants.ENDPOINT).rstrip("/")
    as_of = datetime.now(UTC).isoformat(timespec="seconds")
    quiet_huggingface_hub()
    path = f"api/models/{repo_id}" + (f"/revision/{quote(revision, safe='')}" if revision else "")

    def read(stop_at: float) -> Any:
        # The same capped GET and deadline as `fetch_model` (a huge or trickled answer costs nothing).
        raw, _ = _HubHttp(endpoint=base, token=token, timeout=timeout, stop_at=stop_at).get(path, cap=MAX_MODEL_INFO_BYTES, what="model_info")
        return ModelInfo(**json.loads(raw))

    try:
        info = _with_deadline(read, min(bounds.HUB_DEADLINE_S, 3 * timeout))
    except Exception as err:
        logger.info("model_info of %s for its facts failed (%s)", repo_id, type(err).__name__)
        return None
    return facts_from_model_info(info, repo_id=repo_id, as_of=as_of)
