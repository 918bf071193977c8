"""Regenerate the README screenshot, docs/screenshot-main.png, from the running app.

    python benchmarks/screenshots.py            # docs/screenshot-main.png
    python benchmarks/screenshots.py --out x.png --height 1300

Starts the app offline (Hub blocked, so the default catalog model is shown exactly as a fresh
visitor sees it), opens the main page in Debian's Chromium at 1500 px wide, and keeps the top of
the page: inputs, headline numbers and the breakdown chart. The PNG is reduced to a 256-colour
palette when it would exceed --max-kb, so the repository stays small. Uses the browser test's
helpers (tests/browser_support.py); run it by hand when the page's look changes, then commit the PNG.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from browser_support import (  # noqa: E402  (tests/ is not a package)
    EXCEPTION,
    StreamlitServer,
    browser_unavailable_reason,
    chromium,
    open_page,
)


def shrink_png(data: bytes, max_bytes: int) -> bytes:
    """`data` as is when small enough, else quantized to a 256-colour palette (Pillow ships with Streamlit)."""
    if len(data) <= max_bytes:
        return data
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshot-main.png")
    parser.add_argument("--width", type=int, default=1500, help="viewport width in CSS pixels (default 1500)")
    parser.add_argument("--height", type=int, default=1350, help="height of the kept top of the page (default 1350)")
    parser.add_argument("--query", default="", help="query string of the view to show (default: the app's default view)")
    parser.add_argument("--max-kb", type=int, default=400, help="quantize the PNG when it is larger than this (default 400)")
    args = parser.parse_args(argv)

    reason = browser_unavailable_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    with StreamlitServer(REPO_ROOT / "app.py") as server, chromium() as browser:
        page = browser.new_page(viewport={"width": args.width, "height": args.height}, device_scale_factor=1)
        open_page(page, server.url("/", args.query))
        page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stPlotlyChart'] svg\").length > 0")
        page.wait_for_timeout(500)  # let Plotly finish its transition
        if page.locator(EXCEPTION).count():
            print("error: the page shows an exception; not taking a screenshot", file=sys.stderr)
            return 1
        data = shrink_png(page.screenshot(), args.max_kb * 1024)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"{args.out} ({len(data) / 1024:.0f} KB, {args.width}x{args.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
