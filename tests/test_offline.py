"""The app works offline: a real browser visiting every page requests nothing but the local
server (no font host, no CDN, no usage statistics)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.helpers_browser import CHROMIUM, chromium, serve_app

pytestmark = [
    pytest.mark.slow,   # a served app driven by a real chromium
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
]
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

PAGES = ["", "deploy", "compare", "profiles", "how_ofa_works", "building_blocks"]
LOCAL = {"127.0.0.1", "localhost"}


def test_no_page_requests_a_non_local_url(tmp_path):
    outside: list[str] = []

    def record(request) -> None:
        if not request.url.startswith(("data:", "blob:")) and urlparse(request.url).hostname not in LOCAL:
            outside.append(request.url)

    with serve_app(log_path=tmp_path / "streamlit.log") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", record)
        for path in PAGES:
            page.goto(f"{url}/{path}")
            # The page's own run state: 'notRunning' once the script has finished.
            page.wait_for_selector("[data-test-script-state='notRunning']", timeout=120_000)
            page.wait_for_load_state("networkidle")
    assert outside == []
