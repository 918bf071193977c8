"""Reusable pieces for driving the Streamlit app in a real browser: start and stop the server,
launch Debian's Chromium through Playwright, wait for reruns the way Streamlit's own e2e suite
does, and save screenshots.

Nothing here is a test. `tests/test_browser.py` wires these into fixtures; other browser tests
(or `benchmarks/screenshots.py`) can reuse them the same way:

    with StreamlitServer(REPO_ROOT / "app.py") as server, chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        open_page(page, server.url("/"))
        save_screenshot(page, "main")
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # playwright is a dev dependency; import it only where a browser is launched
    from playwright.sync_api import Browser, Page

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"
CHROMIUM_PATH = Path("/usr/bin/chromium")  # Debian's package; Playwright's own download does not work here
# Flags for a headless run in a container with no network: no sandbox (root in a container), no GPU,
# and none of Chromium's background traffic (QUIC probes, component updates, sync, first-run pages).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Wide enough for the sidebar plus the main column at Streamlit's "wide" layout; the README screenshot
# is taken at this width.
VIEWPORT = {"width": 1500, "height": 1000}
# Streamlit reruns asynchronously; a cold first run imports plotly/pandas and builds the GPU ranking.
RERUN_TIMEOUT_MS = 60_000  # 30 s timed out on cold starts with the machine at load 12-18 (2 cores, 8 agents)

# Streamlit's markers (frontend/lib/src/...; the same selectors its e2e_playwright suite waits on).
APP = "[data-testid='stApp']"
APP_IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
APP_CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"
SKELETON = "[data-testid='stSkeleton']"
STALE = "[data-stale='true']"
EXCEPTION = "[data-testid='stException']"


def browser_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM_PATH.exists():
        return f"{CHROMIUM_PATH} not found: install Debian's chromium (apt-get install -y chromium), as the README's test command does"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -r requirements-dev.txt"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM_PATH), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it; a race with another process is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(extra: Mapping[str, str] | None = None, *, hf_home: Path | None = None) -> dict[str, str]:
    """The current environment with the Hugging Face Hub blocked: offline mode, and an endpoint on the
    discard port in case something ignores offline mode, so nothing leaves the machine."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    if hf_home is not None:  # an empty cache, so results do not depend on what this machine downloaded before
        env["HF_HOME"] = str(hf_home)
    env.pop("HF_TOKEN", None)
    if extra:
        env.update(extra)
    return env


class StreamlitServer:
    """`python -m streamlit run <script>` on 127.0.0.1 in its own process group.

    Use as a context manager; `start()` returns once `/_stcore/health` answers 200, `stop()` ends
    the whole process group (Streamlit may start helpers). Output goes to `log_path` so a failing
    test can show the server's traceback.
    """

    def __init__(self, script: Path, *, cwd: Path = REPO_ROOT, port: int | None = None, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None, health_timeout_s: float = 60.0) -> None:
        self.script = script
        self.cwd = cwd
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="streamlit-browser-")
        self.env = dict(env) if env is not None else offline_env(hf_home=Path(self._tmp.name) / "hf")
        self.log_path = log_path or Path(self._tmp.name) / "streamlit.log"
        self.health_timeout_s = health_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/", query: str = "") -> str:
        path = "/" + path.lstrip("/")
        return f"{self.base_url}{path}{'?' + query.lstrip('?') if query else ''}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "streamlit", "run", str(self.script),
            "--server.headless", "true",
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false",
            # No reruns because a file changed under the test (the app is being edited while tests run).
            "--server.fileWatcherType", "none",
        ]

    def start(self) -> StreamlitServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(), cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so stop() can end it and anything it started
        )
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.health_timeout_s
        health = f"{self.base_url}/_stcore/health"
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with status {self.process.returncode} before it was healthy:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{health} did not answer 200 within {self.health_timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, num_chars: int = 4000) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-num_chars:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._tmp.cleanup()

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_app(page: Page, *, timeout_ms: int = RERUN_TIMEOUT_MS, settle_ms: int = 150) -> None:
    """Wait until the script run is over and its output is on screen: connected, script state
    notRunning, no skeleton placeholders and no stale (greyed-out) elements of the previous run.

    Right after a click the frontend may not have flipped to `running` yet, so `settle_ms` gives it a
    moment first; callers then wait for the text they expect (`expect(...).to_contain_text`), which is
    what really proves the rerun happened.
    """
    if settle_ms:
        page.wait_for_timeout(settle_ms)
    page.wait_for_selector(APP_CONNECTED, state="attached", timeout=timeout_ms)
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout_ms)
    page.wait_for_function(
        f"() => !document.querySelector(\"{SKELETON}\") && !document.querySelector(\"{STALE}\")",
        timeout=timeout_ms,
    )


def open_page(page: Page, url: str, *, timeout_ms: int = RERUN_TIMEOUT_MS) -> None:
    """Navigate and wait for the first script run to finish."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
    page.wait_for_selector(APP, state="attached", timeout=timeout_ms)
    wait_for_app(page, timeout_ms=timeout_ms)


def main_text(page: Page) -> str:
    """The visible text of the main column (not the sidebar), whitespace collapsed."""
    main = page.locator("[data-testid='stMain']")
    text = main.inner_text() if main.count() else page.locator(APP).inner_text()
    return re.sub(r"\s+", " ", text)


def save_screenshot(page: Page, name: str, *, full_page: bool = True, directory: Path = ARTIFACTS_DIR) -> Path:
    """Save `<directory>/<name>.png` and return its path.

    Streamlit scrolls inside its main container, not the document, so Playwright's `full_page` would
    only capture the viewport; the viewport is stretched to the content's height for the shot instead.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    size = page.viewport_size
    if full_page and size:
        height = page.evaluate(
            """() => Math.max(document.documentElement.scrollHeight,
                ...[...document.querySelectorAll("[data-testid='stMain'], [data-testid='stAppViewContainer'], section.main")]
                    .map(e => e.scrollHeight))"""
        )
        page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), 8000)})
        page.wait_for_timeout(300)  # Plotly redraws on resize
        try:
            page.screenshot(path=str(path), full_page=True)
        finally:
            page.set_viewport_size(size)
    else:
        page.screenshot(path=str(path))
    return path


def copy_file(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst
