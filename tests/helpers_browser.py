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
def serve_app(log_path: str | os.PathLike | None = None, timeout: float = 120.0,
              root: str | os.PathLike = ROOT) -> Iterator[str]:
    """`python -m app.serve` (`streamlit run app/streamlit_app.py` with the engine warming up) of
    the checkout at `root` (this one by default; benchmarks/bench_app.py --before serves another)
    on a free local port; yields the base URL once /_stcore/health answers; stops the server
    afterwards."""
    port = free_port()
    env = {**os.environ, "OFA_APP_TORCH_THREADS": os.environ.get("OFA_APP_TORCH_THREADS", "1")}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
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


def wait_idle(page, timeout_ms: float = 180_000) -> None:
    """Until the page's script run is over: Streamlit 1.67 marks the app's container with
    `data-test-script-state`, "notRunning" once a run has finished ("initial" before the first,
    "running" or "rerunRequested" meanwhile); its status widget never shows in headless runs.

    Reliable only once the run that matters has begun on the page: just after `goto`, or once an
    element that only that run draws is visible (a result, an alert, a button it enables). Right
    after a click the state still reads "notRunning" from the run before, until the server's
    answer arrives: wait for such an element first, or use `ScriptRuns.one_run`."""
    page.wait_for_selector("[data-test-script-state='notRunning']", state="attached", timeout=timeout_ms)


def _finished_run(payload) -> bool:
    """Whether a websocket frame from the server says that a script run finished (not one
    stopped early for another rerun)."""
    if not isinstance(payload, (bytes, bytearray)):
        return False
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    try:
        message = ForwardMsg.FromString(bytes(payload))
    except Exception:  # noqa: BLE001 - not a ForwardMsg: not what we wait for
        return False
    return message.WhichOneof("type") == "script_finished" and \
        message.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY


class ScriptRuns:
    """The script runs the server finishes for one page, read from the page's websocket.

    For an action whose rerun draws nothing new (a tab click: the page looks the same before and
    after), so that no element can say that the run is over: `with runs.one_run(): tab.click()`
    returns once the server has finished that run. Create it before the page's first `goto`."""

    def __init__(self, page):
        self.page = page
        self.socket = None
        page.on("websocket", self._opened)

    def _opened(self, socket) -> None:
        if socket.url.endswith("/_stcore/stream"):
            self.socket = socket

    @contextlib.contextmanager
    def one_run(self, timeout_ms: float = 180_000) -> Iterator[None]:
        """Around one action on an idle page (its last run over, nothing else asked) that
        reruns the script once: the first run the server finishes after it is that action's."""
        assert self.socket is not None, "ScriptRuns: the page has no Streamlit websocket (created after goto?)"
        with self.socket.expect_event("framereceived", predicate=_finished_run, timeout=timeout_ms):
            yield
        wait_idle(self.page, timeout_ms)
