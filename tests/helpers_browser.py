"""Serve the Streamlit app on a free port and drive it with Playwright + Debian's chromium.

Used by tests/test_browser.py and benchmarks/bench_app.py. Nothing is downloaded: Playwright
launches the system chromium (`CHROMIUM`, default /usr/bin/chromium) instead of its own build.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def serve_app(log_path: str | os.PathLike | None = None, timeout: float = 120.0) -> Iterator[str]:
    """`python -m app.serve` (`streamlit run app/streamlit_app.py` with the engine warming up) on a
    free local port; yields the base URL once
    /_stcore/health answers; stops the server afterwards."""
    port = free_port()
    env = {**os.environ, "OFA_APP_TORCH_THREADS": os.environ.get("OFA_APP_TORCH_THREADS", "1")}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()


@contextlib.contextmanager
def chromium() -> Iterator["object"]:
    """A headless Playwright browser on the system chromium."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_idle(page, timeout_ms: float = 120_000) -> None:
    """Until the script run is over. Streamlit 1.67 marks the app's container with
    `data-test-script-state` ("running" while a script runs); its status widget never shows
    in headless runs, so waiting for that widget to go away returned at once."""
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-test-script-state]');"
        " return el !== null && el.getAttribute('data-test-script-state') !== 'running'; }",
        timeout=timeout_ms)
