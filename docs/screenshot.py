"""The README's screenshot of the app, taken in headless Chromium (Debian's `chromium` + Playwright).

    python app.py &                                    # the demo, on http://127.0.0.1:7860/
    python docs/screenshot.py http://127.0.0.1:7860/ docs/app.png --query "how many keys does a piano have" --hybrid
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_app import open_page, run_query  # noqa: E402 - the browser helpers the tests use


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("out")
    p.add_argument("--query", default="why is the sky blue")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--hybrid", action="store_true", help="switch to hybrid mode first (shows all three scores)")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser, page = open_page(pw, args.url, 1100, 900)
        if args.hybrid:
            page.get_by_label("hybrid", exact=True).check()
        run_query(page, args.query, args.k)
        page.locator("#tt-results .tt-hit").first.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
