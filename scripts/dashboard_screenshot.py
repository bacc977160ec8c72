"""Save a screenshot of a running EdgeSync dashboard (how docs/dashboard.png is made).

    python scripts/dashboard_screenshot.py 'http://127.0.0.1:8080/#token=...' docs/dashboard.png

Drives Debian's chromium through Playwright (`make browser` installs it); waits until the first
edge's charts and uploads are drawn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the dashboard address the cloud printed, with #token=...")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": args.width, "height": 1200})
        page.goto(args.url)
        page.locator(".edge").first.wait_for(timeout=20_000)
        page.locator("#chart-accuracy svg").wait_for(state="attached", timeout=20_000)
        page.locator("#samples img").first.wait_for(timeout=20_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#samples img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
