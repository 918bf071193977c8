"""Helpers of the hostile-input suite (tests/test_hostile_*.py): run the CLI in a child process and
measure it (exit code, stderr lines, wall time, peak RSS of the CLI process alone, via `os.wait4` in a small launcher)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "calculator" / "data" / "models"

# What one CLI run on hostile input may cost. Peak RSS: the interpreter with the calculator, numpy
# and huggingface_hub imported is ~150 MiB here; a run that allocates per layer of a 10^9-layer
# config went to ~10 GB before the fix. Wall time: the CLI starts in ~1-2 s on this 2-core machine.
MAX_CHILD_RSS_BYTES = 600 * 2**20
MAX_CLI_SECONDS = 30.0


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_bytes: int

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


# Linux starts a child's peak RSS at its parent's high-water mark (exec records the old address
# space's peak in `signal->maxrss`), so a CLI spawned straight from a pytest process that has
# imported torch would "peak" at pytest's ~800 MiB. A small launcher runs the CLI as its own child
# instead and reports that grandchild's `ru_maxrss`, which then counts the CLI alone.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_cli(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 120.0) -> CliRun:
    """`python -m calculator ARGS` offline (unless env_extra says otherwise), measured."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONWARNINGS": "ignore"}
    env.pop("HF_TOKEN", None)
    env.pop("TRANSFORMERS_VERBOSITY", None)
    env.update(env_extra or {})
    env.setdefault("VRAM_CALC_CACHE", tempfile.mkdtemp(prefix="hostile-cache-"))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, tempfile.NamedTemporaryFile("r") as rss:
        started = time.monotonic()
        command = [sys.executable, "-c", _LAUNCHER, rss.name, sys.executable, "-m", "calculator", *args]
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            returncode = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the launcher and the CLI share this session
            returncode = child.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        # ru_maxrss is in KiB on Linux; an empty file means the run was killed before it ended.
        peak_kib = int(rss.read() or 0)
        return CliRun(returncode, out.read(), err.read(), seconds, peak_kib * 1024)


def assert_one_line_error(run: CliRun) -> str:
    """Exit code 2, exactly one stderr line starting with "error:", no traceback, no result."""
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert len(run.stderr_lines) == 1, run.stderr[-2000:]
    assert run.stderr_lines[0].startswith("error: ")
    assert "Traceback" not in run.stderr and 'File "' not in run.stderr
    assert run.stdout == ""
    return run.stderr_lines[0]


def catalog_config(dir_name: str = "meta-llama__Llama-3.2-3B") -> dict[str, Any]:
    return json.loads((MODELS_DIR / dir_name / "config.json").read_text())


def model_dir(tmp: Path, config: Any, *, raw: bytes | None = None, files: dict[str, bytes] | None = None) -> Path:
    """A local model folder holding `config` (or the exact bytes `raw`) as config.json, plus `files`."""
    folder = tmp / "model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_bytes(raw if raw is not None else json.dumps(config).encode())
    for name, content in (files or {}).items():
        (folder / name).write_bytes(content)
    return folder
