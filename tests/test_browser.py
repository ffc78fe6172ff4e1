"""The served app in a real browser: open it, specialize, download the ONNX model, run it.

Starts `streamlit run` on a free port and drives Debian's chromium (headless) with Playwright;
skipped only when chromium or the playwright package is absent (CI installs both).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_browser import CHROMIUM, chromium, serve_app, wait_idle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def test_specialize_in_the_browser_and_run_the_downloaded_onnx(tmp_path):
    import onnxruntime as ort

    with serve_app(log_path=tmp_path / "streamlit.log") as url, chromium() as browser:
        context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(url)
        page.get_by_role("button", name="Specialize").wait_for(timeout=120_000)
        wait_idle(page)
        page.get_by_role("button", name="Specialize").click()
        download_button = page.get_by_role("button", name="Download ONNX")
        download_button.wait_for(timeout=240_000)
        for label in ("Accuracy", "Latency", "Peak memory", "Flash", "MACs"):
            assert page.get_by_test_id("stMetricLabel").filter(has_text=label).count() >= 1
        assert page.get_by_test_id("stException").count() == 0

        with page.expect_download(timeout=60_000) as info:
            download_button.click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        with page.expect_download(timeout=60_000) as info:
            page.get_by_role("button", name="Download report (JSON)").click()
        report = json.loads(Path(info.value.path()).read_text())
        context.close()

    assert path.suffix == ".onnx" and path.stat().st_size > 10_000
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    size = report["config"]["image_size"]
    assert model_input.shape[-2:] == [size, size]
    x = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    (logits,) = session.run(None, {model_input.name: x})
    assert logits.shape == (1, 10)
    assert np.isfinite(logits).all()
