"""A local stand-in for the Hugging Face Hub HTTP API, so Hub code is tested end to end offline.

A threaded `http.server` on 127.0.0.1 (random port) that answers the requests huggingface_hub 2.x
makes for `model_info`, `hf_hub_download` and `get_safetensors_metadata`, with the headers and
error codes the real Hub sends:

    GET  /api/models/{repo}                      model_info JSON (id, sha, private, gated, siblings, downloads, likes, ...)
    GET  /api/models/{repo}/revision/{rev}
    HEAD /{repo}/resolve/{rev}/{file}            ETag, X-Repo-Commit, Content-Length (hf_hub_download, file_exists)
    GET  /{repo}/resolve/{rev}/{file}            the bytes; `Range: bytes=a-b` gives 206 (safetensors headers)

Errors: 404 + `X-Error-Code: RepoNotFound` / `RevisionNotFound` / `EntryNotFound`; gated repos 401
(no token) or 403 (token without access) + `X-Error-Code: GatedRepo`; private repos 401 +
`RepoNotFound` without an authorized token, as the Hub hides them.

Safetensors "files" are only their header (8-byte little-endian length + JSON): the calculator
reads headers by range request and never the tensor data, so none is served.

Use the `hub_standin` fixture (`from hub_standin import hub_standin_fixture` in a test module
registers it) or `HubStandin` as a context manager.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import pytest

MODELS_DIR = Path(__file__).resolve().parent.parent / "calculator" / "data" / "models"

Behaviour = Literal["normal", "gated", "forbidden", "missing", "slow", "error500"]

# Faults a request can be answered with (FakeRepo.faults), as a hostile or broken server would:
FAULTS = {
    "stall": "accept the request and say nothing for delay_s, then close",
    "trickle": "200 with a large Content-Length, then one byte every 0.1 s for delay_s",
    "redirect_loop": "302 to the same URL, forever",
    "redirect_offsite": "302 to another host (a CDN): the token must not follow",
    "huge": "200 and an endless JSON string, 1 MiB at a time, until the client hangs up",
    "deep": "200 and a 200,000-deep nested JSON array",
    "garbage": "200 and an HTML page (not the Hub: a captive portal)",
    "reset": "half a status line, then the connection is closed",
    "bad_length": "200 with a Content-Length larger than the body, then close",
    "status400": "HTTP 400 Bad Request",
    "status410": "HTTP 410 Gone",
    "status502": "HTTP 502 Bad Gateway",
}

# safetensors dtype -> bytes per element (safetensors format spec).
DTYPE_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "F8_E4M3": 1, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass
class FakeRepo:
    """One model repository: its files and how the stand-in treats requests for it."""

    files: dict[str, bytes]
    behaviour: Behaviour = "normal"
    # Commit every branch resolves to; derived from the repo id when not given.
    sha: str | None = None
    branches: tuple[str, ...] = ("main",)
    private: bool = False
    # Tokens that may read a gated or private repo ("Authorization: Bearer <token>").
    authorized_tokens: frozenset[str] = frozenset()
    # "slow": seconds to wait before answering.
    delay_s: float = 2.0
    # Branches with files of their own (e.g. a branch whose config.json adds `sliding_window`);
    # each has its own commit. Other branches in `branches` serve `files` at the main commit.
    branch_files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    # Fault injection: "api" (model_info) or a file name -> how that request is answered instead
    # (see `FAULTS`); `delay_s` is how long a stall or trickle lasts.
    faults: dict[str, str] = field(default_factory=dict)
    # "redirect_offsite": the other server (scheme://host:port) the request is sent to.
    redirect_to: str = "http://localhost:9"
    # model_info fields answered as given, over the defaults below (downloads, likes, pipeline_tag,
    # lastModified, cardData, tags, ...), as the Hub's /api/models/{repo} JSON spells them.
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def gated(self) -> bool:
        return self.behaviour == "gated"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HubStandin:
    """The server; `repos` maps repo id -> FakeRepo and may be changed while it runs."""

    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubStandin:
        standin = self

        class Handler(_HubHandler):
            hub = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, repo_id: str, repo: FakeRepo) -> FakeRepo:
        self.repos[repo_id] = repo
        return repo

    def sha_of(self, repo_id: str, branch: str | None = None) -> str:
        repo = self.repos[repo_id]
        if branch is not None and branch in repo.branch_files:
            return hashlib.sha1(f"{repo_id}@{branch}".encode()).hexdigest()
        return repo.sha or hashlib.sha1(repo_id.encode()).hexdigest()

    def commit(self, repo_id: str, revision: str | None) -> tuple[str, dict[str, bytes]] | None:
        """(commit, files) a branch or commit of `repo_id` resolves to; None for an unknown revision."""
        repo = self.repos[repo_id]
        revision = revision or "main"
        for branch, files in repo.branch_files.items():
            if revision in (branch, self.sha_of(repo_id, branch)):
                return self.sha_of(repo_id, branch), files
        if revision in (*repo.branches, self.sha_of(repo_id)):
            return self.sha_of(repo_id), repo.files
        return None

    def find(self, repo_id: str) -> tuple[str, FakeRepo] | None:
        for known_id, repo in self.repos.items():
            if known_id.lower() == repo_id.lower():
                return known_id, repo
        return None


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubStandin
    server_version = "hub-standin/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures anyway
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # --- routing ---

    def _dispatch(self, *, head: bool) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append(Request(self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        try:
            fault = self._fault_for(path)
            if fault is not None:
                self._inject(fault[0], fault[1], head=head)
            elif path.startswith("/api/models/"):
                self._model_info(path.removeprefix("/api/models/"), head=head)
            elif "/resolve/" in path:
                repo_id, _, rest = path.lstrip("/").partition("/resolve/")
                revision, _, filename = rest.partition("/")
                self._resolve(unquote(repo_id), unquote(revision), unquote(filename), head=head)
            else:
                self._send(404, b"Not Found", head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def _fault_for(self, path: str) -> tuple[str, FakeRepo] | None:
        if path.startswith("/api/models/"):
            repo_id, target = path.removeprefix("/api/models/").partition("/revision/")[0], "api"
        elif "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            target = rest.partition("/")[2]
        else:
            return None
        found = self.hub.find(unquote(repo_id))
        if found is None or unquote(target) not in found[1].faults:
            return None
        return found[1].faults[unquote(target)], found[1]

    def _inject(self, fault: str, repo: FakeRepo, *, head: bool) -> None:
        if fault == "stall":
            time.sleep(repo.delay_s)
            self.close_connection = True
        elif fault == "trickle":
            self.send_response(200)
            self.send_header("Content-Length", str(10**6))
            self.end_headers()
            until = time.monotonic() + repo.delay_s
            while time.monotonic() < until:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
            self.close_connection = True
        elif fault in ("redirect_loop", "redirect_offsite"):
            target = self.path if fault == "redirect_loop" else f"{repo.redirect_to}{self.path}"
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif fault == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"model_type": "llama", "pad": "')
            chunk = b"x" * 2**20
            for _ in range(4096):  # up to 4 GiB, never held in memory
                self.wfile.write(chunk)
            self.close_connection = True
        elif fault == "deep":
            self._send(200, b"[" * 200_000 + b"]" * 200_000, head=head, content_type="application/json")
        elif fault == "garbage":
            self._send(200, b"<html><body>Please log in to the hotel Wi-Fi</body></html>", head=head, content_type="text/html")
        elif fault == "reset":
            self.wfile.write(b"HTTP/1.1 2")
            self.wfile.flush()
            self.close_connection = True
        elif fault == "bad_length":
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b'{"model_type"')
            self.close_connection = True
        elif fault.startswith("status"):
            code = int(fault.removeprefix("status"))
            self._send(code, json.dumps({"error": f"standin fault {code}"}).encode(), head=head, content_type="application/json")
        else:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")

    def _repo_or_error(self, repo_id: str, *, head: bool, api: bool) -> tuple[str, FakeRepo] | None:
        found = self.hub.find(repo_id)
        if found is None:
            self._error(404, "RepoNotFound", "Repository not found", head=head)
            return None
        known_id, repo = found
        if repo.behaviour == "slow":
            time.sleep(repo.delay_s)
        token = self._token()
        if repo.behaviour == "missing":
            self._error(404, "RepoNotFound", "Repository not found", head=head)
        elif repo.behaviour == "error500":
            self._send(500, b'{"error":"Internal Error - We\'re working hard to fix this as soon as possible!"}', head=head, content_type="application/json")
        elif repo.behaviour == "forbidden":
            self._send(403, b'{"error":"This token does not have the read permission on this repository."}', head=head, content_type="application/json")
        elif repo.private and token not in repo.authorized_tokens:
            self._error(401, "RepoNotFound", "Invalid username or password.", head=head)
        elif repo.gated and not api and token not in repo.authorized_tokens:
            # The Hub's wording: 401 asks to log in, 403 says the account is not on the list.
            if token is None:
                message = f"Access to model {known_id} is restricted. You must have access to it and be authenticated to access it. Please log in."
                self._error(401, "GatedRepo", message, head=head)
            else:
                message = (
                    f"Access to model {known_id} is restricted and you are not in the authorized list. "
                    f"Visit https://huggingface.co/{known_id} to ask for access."
                )
                self._error(403, "GatedRepo", message, head=head)
        else:
            return known_id, repo
        return None

    def _model_info(self, rest: str, *, head: bool) -> None:
        repo_part, _, revision = rest.partition("/revision/")
        found = self._repo_or_error(unquote(repo_part), head=head, api=True)
        if found is None:
            return
        repo_id, repo = found
        resolved = self.hub.commit(repo_id, unquote(revision) if revision else None)
        if resolved is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}", head=head)
            return
        sha, files = resolved
        config = json.loads(files["config.json"]) if _is_json_object(files.get("config.json")) else {}
        info = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": sha,
            "lastModified": "2024-09-25T14:34:27.000Z",
            "createdAt": "2024-07-14T22:20:15.000Z",
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "library_name": "transformers",
            "tags": ["transformers", "safetensors"] if any(f.endswith(".safetensors") for f in files) else ["transformers"],
            "pipeline_tag": "text-generation",
            "config": {k: config[k] for k in ("architectures", "model_type") if k in config},
            "siblings": [{"rfilename": name} for name in sorted(files)],
        } | repo.info
        self._send(200, json.dumps(info).encode(), head=head, content_type="application/json; charset=utf-8")

    def _resolve(self, repo_id: str, revision: str, filename: str, *, head: bool) -> None:
        found = self._repo_or_error(repo_id, head=head, api=False)
        if found is None:
            return
        known_id, _repo = found
        resolved = self.hub.commit(known_id, revision)
        if resolved is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
            return
        sha, files = resolved
        content = files.get(filename)
        if content is None:
            self._error(404, "EntryNotFound", "Entry not found", head=head, extra={"X-Repo-Commit": sha})
            return
        headers = {
            "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
        }
        status, body = 200, content
        byte_range = self.headers.get("Range")
        if byte_range and byte_range.startswith("bytes="):
            first_text, _, last_text = byte_range.removeprefix("bytes=").partition("-")
            first = int(first_text)
            last = min(int(last_text) if last_text else len(content) - 1, len(content) - 1)
            if first >= len(content):
                self._send(416, b"Requested Range Not Satisfiable", head=head, extra={"Content-Range": f"bytes */{len(content)}"})
                return
            status, body = 206, content[first : last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(content)}"
        self._send(status, body, head=head, extra=headers, content_type="application/octet-stream")

    # --- responses ---

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return auth.removeprefix("Bearer ").strip() or None

    def _error(self, status: int, code: str, message: str, *, head: bool, extra: Mapping[str, str] | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}
        self._send(status, json.dumps({"error": message}).encode(), head=head, extra=headers, content_type="application/json")

    def _send(self, status: int, body: bytes, *, head: bool, extra: Mapping[str, str] | None = None, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", f"Root=1-standin-{len(self.hub.requests)}")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _is_json_object(content: bytes | None) -> bool:
    try:
        return isinstance(json.loads(content or b""), dict)
    except ValueError:
        return False


# --- payload builders ----------------------------------------------------------------------------


def catalog_config_bytes(dir_name: str) -> bytes:
    """The bundled `config.json` of a catalog model, byte for byte (e.g. "meta-llama__Llama-3.1-8B")."""
    return (MODELS_DIR / dir_name / "config.json").read_bytes()


TensorShapes = dict[str, tuple[str, list[int]]]


def safetensors_header(tensors: TensorShapes, *, metadata: Mapping[str, str] | None = None) -> bytes:
    """A safetensors file without its tensor data: 8-byte little-endian header length + JSON header."""
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to a multiple of 8 bytes
    return struct.pack("<Q", len(raw)) + raw


def tensor_bytes(tensors: TensorShapes) -> int:
    return sum(math.prod(shape) * DTYPE_BYTES[dtype] for dtype, shape in tensors.values())


def sharded_files(tensors: TensorShapes, *, num_shards: int) -> dict[str, bytes]:
    """Shards `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`, as transformers writes them."""
    names = list(tensors)
    per_shard = math.ceil(len(names) / num_shards)
    files: dict[str, bytes] = {}
    weight_map: dict[str, str] = {}
    for i in range(num_shards):
        shard = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        chunk = {name: tensors[name] for name in names[i * per_shard : (i + 1) * per_shard]}
        files[shard] = safetensors_header(chunk)
        weight_map.update(dict.fromkeys(chunk, shard))
    index = {"metadata": {"total_size": tensor_bytes(tensors)}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    return files


def llama_tensors(config: Mapping[str, Any], *, dtype: str = "BF16") -> TensorShapes:
    """Tensor names and shapes of a `LlamaForCausalLM` checkpoint, from its config."""
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or hidden // heads
    tensors: TensorShapes = {"model.embed_tokens.weight": (dtype, [vocab, hidden])}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": (dtype, [hidden]),
            p + "mlp.down_proj.weight": (dtype, [hidden, inter]),
            p + "mlp.gate_proj.weight": (dtype, [inter, hidden]),
            p + "mlp.up_proj.weight": (dtype, [inter, hidden]),
            p + "post_attention_layernorm.weight": (dtype, [hidden]),
            p + "self_attn.k_proj.weight": (dtype, [kv_heads * head_dim, hidden]),
            p + "self_attn.o_proj.weight": (dtype, [hidden, heads * head_dim]),
            p + "self_attn.q_proj.weight": (dtype, [heads * head_dim, hidden]),
            p + "self_attn.v_proj.weight": (dtype, [kv_heads * head_dim, hidden]),
        }
    tensors["model.norm.weight"] = (dtype, [hidden])
    if not config.get("tie_word_embeddings", False):
        tensors["lm_head.weight"] = (dtype, [vocab, hidden])
    return tensors


def bert_tensors(config: Mapping[str, Any]) -> TensorShapes:
    """`BertModel` (with pooler) in F32, plus the I64 `position_ids` buffer old checkpoints saved."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    f32 = "F32"
    tensors: TensorShapes = {
        "bert.embeddings.position_ids": ("I64", [1, config["max_position_embeddings"]]),
        "bert.embeddings.word_embeddings.weight": (f32, [config["vocab_size"], hidden]),
        "bert.embeddings.position_embeddings.weight": (f32, [config["max_position_embeddings"], hidden]),
        "bert.embeddings.token_type_embeddings.weight": (f32, [config["type_vocab_size"], hidden]),
        "bert.embeddings.LayerNorm.weight": (f32, [hidden]),
        "bert.embeddings.LayerNorm.bias": (f32, [hidden]),
    }
    linears = {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden), "attention.self.value": (hidden, hidden)}
    linears |= {"attention.output.dense": (hidden, hidden), "intermediate.dense": (inter, hidden), "output.dense": (hidden, inter)}
    for i in range(config["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}."
        for name, (out_f, in_f) in linears.items():
            tensors[p + name + ".weight"] = (f32, [out_f, in_f])
            tensors[p + name + ".bias"] = (f32, [out_f])
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[p + norm + ".weight"] = (f32, [hidden])
            tensors[p + norm + ".bias"] = (f32, [hidden])
    tensors["bert.pooler.dense.weight"] = (f32, [hidden, hidden])
    tensors["bert.pooler.dense.bias"] = (f32, [hidden])
    return tensors


def llama_31_8b_repo(**kwargs: Any) -> FakeRepo:
    """meta-llama/Llama-3.1-8B: the bundled config and 4 BF16 shards with 8,030,261,248 parameters."""
    config_bytes = catalog_config_bytes("meta-llama__Llama-3.1-8B")
    files = {"config.json": config_bytes, "generation_config.json": b'{"bos_token_id": 128000}'}
    files |= sharded_files(llama_tensors(json.loads(config_bytes)), num_shards=4)
    return FakeRepo(files=files, **kwargs)


def bert_base_repo(**kwargs: Any) -> FakeRepo:
    """google-bert/bert-base-uncased: the bundled config and one `model.safetensors`."""
    config_bytes = catalog_config_bytes("google-bert__bert-base-uncased")
    files = {"config.json": config_bytes, "model.safetensors": safetensors_header(bert_tensors(json.loads(config_bytes)))}
    return FakeRepo(files=files, **kwargs)


# --- pytest fixture ------------------------------------------------------------------------------


@pytest.fixture(name="hub_standin")
def hub_standin_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandin]:
    """A running stand-in with no repos yet (`hub_standin.add(...)`), isolated from the real Hub:
    HF_ENDPOINT points to it, huggingface_hub's file cache and VRAM_CALC_CACHE are under tmp_path,
    and no token from the environment or a login file is used."""
    from huggingface_hub import constants

    standin = HubStandin().start()
    monkeypatch.setenv("HF_ENDPOINT", standin.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("VRAM_CALC_CACHE", str(tmp_path / "vram-calc-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    try:
        yield standin
    finally:
        standin.stop()
