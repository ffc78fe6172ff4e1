"""The served app in a real browser: one smoke test per page that needs a browser.

Starts `python -m app.serve` on a free port once and drives Debian's chromium (headless) with
Playwright; skipped only when chromium or the playwright package is absent (CI installs both,
and `.ci/run` turns a skip into a failure). What needs no browser (refusals, error messages,
the impossible profile's reason, hostile uploads) is tested below it with Streamlit's AppTest
(tests/test_app.py, tests/test_hostile_inputs.py).

Every step waits on what the app does, never on a clock: an element that only the rerun that
matters draws (a result, an alert, a button it enables), then the page's run state
(`wait_idle`); a rerun that draws nothing new (a tab click) is waited for on the page's
websocket (`ScriptRuns.one_run`). Timeouts are generous: a loaded 2-core machine is slow, not
failing. How long things take is benchmarks/bench_app.py's business.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_browser import CHROMIUM, ScriptRuns, chromium, serve_app, wait_idle

pytestmark = [
    pytest.mark.slow,   # a served app driven by a real chromium
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = playwright.expect

ROOT = Path(__file__).resolve().parents[1]
RUN_MS = 180_000            # a script run: a page, a rerun after a click or an upload
SPECIALIZE_MS = 300_000     # a run that specializes (one subnet, or one per device on Deploy)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, new_page) for one server; every page of these tests requests only localhost."""
    from urllib.parse import urlparse

    outside: list[str] = []
    log = tmp_path_factory.mktemp("served") / "streamlit.log"
    with serve_app(log_path=log) as url, chromium() as browser:
        def new_page(**kwargs):
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, **kwargs)
            page = context.new_page()
            page.on("request", lambda r: None if r.url.startswith(("data:", "blob:")) or
                    urlparse(r.url).hostname in ("127.0.0.1", "localhost") else outside.append(r.url))
            return page
        yield url, new_page
    assert outside == [], outside   # no request left localhost


def open_app(page, url: str, path: str = "") -> None:
    """A fresh session on `path`, its first run over (the run state reads "initial" until then)."""
    page.goto(f"{url}/{path}")
    page.get_by_role("heading").first.wait_for(timeout=RUN_MS)
    wait_idle(page, RUN_MS)


def assert_no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0


def specialize_and_download(page, tmp_path: Path) -> tuple[Path, dict]:
    """Click Specialize, wait for its result, download the ONNX file (saved in `tmp_path`) and
    the JSON report; (the file's path, the report)."""
    page.get_by_role("button", name="Specialize", exact=True).click()
    # The result's last element: drawn only by the run that specialized, at its end.
    expect(page.get_by_text("Layer table, config and report").first).to_be_visible(timeout=SPECIALIZE_MS)
    wait_idle(page, RUN_MS)
    assert_no_exception(page)
    with page.expect_download(timeout=RUN_MS) as info:
        page.get_by_role("button", name="Download ONNX").click()
    onnx_path = tmp_path / info.value.suggested_filename
    info.value.save_as(onnx_path)
    with page.expect_download(timeout=RUN_MS) as info:
        page.get_by_role("button", name="Download report (JSON)").click()
    return onnx_path, json.loads(Path(info.value.path()).read_text())


# ------------------------------------------------------------------------------ Specialize
def test_specialize_page_specializes_downloads_an_onnx_that_runs_and_cuts_no_card_text(served, tmp_path):
    """The latency slider moved to its left end with the keyboard; Specialize then gives a
    subnet within it; the downloaded ONNX file runs in ONNX Runtime with the input size of its
    report; every card shows its formatted value in full (nothing cut off); the prediction
    panel labels the evaluation images."""
    import onnxruntime as ort

    from app.widgets import card_values
    from ofa_engine.families.mbv3.space import FASHION_MNIST_LABELS

    url, new_page = served
    page = new_page(accept_downloads=True)
    open_app(page, url)
    thumb = page.get_by_test_id("stSlider").first.locator("input[type=range]")
    thumb.focus()
    thumb.press("Home")   # inside the budget form: no rerun until Specialize submits it
    minimum = float(thumb.get_attribute("min"))
    expect(thumb).to_have_value(thumb.get_attribute("min"))
    onnx_path, report = specialize_and_download(page, tmp_path)
    assert report["constraints"]["latency_ms"] == pytest.approx(minimum)
    assert report["predicted"]["latency_ms"] <= minimum + 1e-9

    cards = page.get_by_test_id("stMetric")
    expected = card_values(report, report["constraints"])
    assert len(expected) == 5
    expect(cards).to_have_count(len(expected))
    for i, card in enumerate(expected):
        value = cards.nth(i).get_by_test_id("stMetricValue")
        label = cards.nth(i).get_by_test_id("stMetricLabel")
        assert value.inner_text().strip() == card["value"]
        assert label.inner_text().strip() == card["label"]
        for element in (value, label):   # the text fits its box: nothing is cut off with an ellipsis
            assert element.evaluate("e => [e, ...e.querySelectorAll('*')].every("
                                    "n => n.scrollWidth <= n.clientWidth + 1)"), (card, element.inner_text())
    panel = page.get_by_test_id("stMarkdownContainer")
    for name in FASHION_MNIST_LABELS[:8]:
        assert panel.filter(has_text=f"true: {name}").count() >= 1, name
    assert panel.filter(has_text="predicted: ").count() >= 8
    page.context.close()

    assert onnx_path.suffix == ".onnx" and onnx_path.stat().st_size > 10_000
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    size = report["config"]["image_size"]
    assert model_input.shape[-2:] == [size, size]
    x = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    (logits,) = session.run(None, {model_input.name: x})
    assert logits.shape == (1, 10)
    assert np.isfinite(logits).all()


# ------------------------------------------------------------------------------ Specialize: the ViT package
VIT_PACKAGE, VIT_PROFILE = "vit-fmnist", "cpu-ort-1t-vit-fmnist"


def preprocess_as_metadata(images: np.ndarray, spec: dict) -> np.ndarray:
    """uint8 (N,H,W) images as the ONNX file's `preprocessing` metadata says, in numpy: scale,
    resize (bilinear, no antialias: torch's, the only resize it names), then (x - mean) / std."""
    assert spec["layout"] == "NCHW" and spec["dtype"] == "float32" and spec["channels"] == 1
    assert spec["order"] == "scale to [0,1], resize, then (x - mean) / std per channel"
    x = images[:, None].astype(np.float32) * np.float32(spec["scale"])
    if list(x.shape[-2:]) != list(spec["resize"]):
        import torch
        x = torch.nn.functional.interpolate(torch.from_numpy(x), size=tuple(spec["resize"]), mode=spec["interpolation"],
                                            align_corners=spec["align_corners"], antialias=spec["antialias"]).numpy()
    mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def test_the_vit_package_specializes_under_a_latency_budget_and_its_onnx_has_the_accuracy_the_app_showed(served, tmp_path):
    """Issue 35: the sidebar's picker chooses the ViT package; the device list offers only
    profiles that can predict its latency, and its own CPU profile is chosen; a latency budget
    set with the keyboard; Specialize. The layer chart draws each encoder layer with its heads and
    MLP width. The downloaded ONNX file, run in ONNX Runtime on the package's evaluation images
    (real Fashion-MNIST test images) preprocessed as its metadata says, has the accuracy the page
    showed and the report states, within 0.5 points."""
    import onnx
    import onnxruntime as ort

    from app import format as fmt
    from app.widgets import card_values
    from ofa_engine.packages import load_package

    url, new_page = served
    page = new_page(accept_downloads=True)
    open_app(page, url)
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=f"{VIT_PACKAGE} (bundled)").click()
    profiles = page.get_by_role("combobox", name="Device profile")
    # Drawn only by the run after the pick: the ViT's own profile is the first it offers.
    expect(profiles).to_have_value(re.compile(re.escape(f"[{VIT_PROFILE}]")), timeout=RUN_MS)
    wait_idle(page, RUN_MS)
    assert_no_exception(page)
    expect(page.get_by_test_id("stSidebar")).to_contain_text("depth 3-5")   # not "the depth of 1 group"
    profiles.click()
    offered = [o.inner_text() for o in page.get_by_role("option").all()]
    assert any(f"[{VIT_PROFILE}]" in o for o in offered), offered
    # cpu-ort-1t/2t predict the CNN's space only: not offered for the ViT (analytical MCU profiles are).
    assert not any(re.search(r"\[cpu-ort-[12]t(-w1\.0)?\]", o) for o in offered), offered
    assert any("[stm32f746]" in o for o in offered), offered
    page.keyboard.press("Escape")

    thumb = page.get_by_test_id("stSlider").first.locator("input[type=range]")
    low, high, step = (float(thumb.get_attribute(a)) for a in ("min", "max", "step"))
    thumb.focus()
    thumb.press("Home")   # inside the budget form: no rerun until Specialize submits it
    for _ in range(round(0.3 * (high - low) / step)):   # a budget a third of the way up its range
        thumb.press("ArrowRight")
    budget = float(thumb.get_attribute("value"))
    assert low < budget < high
    onnx_path, report = specialize_and_download(page, tmp_path)
    assert report["profile"] == VIT_PROFILE and report["supernet"] == VIT_PACKAGE and report["space"] == "vit-fmnist"
    # Searched with the measured profile's safety margin below the budget (the card says both).
    assert report["constraints"]["latency_ms"] <= budget + 1e-9
    assert report["predicted"]["latency_ms"] <= report["constraints"]["latency_ms"] + 1e-9
    latency_card = page.get_by_test_id("stMetric").nth(1).get_by_test_id("stMetricLabel")
    expect(latency_card).to_have_text(card_values(report, {"latency_ms": budget})[1]["label"])
    expect(latency_card).to_contain_text(fmt.budget(budget, "ms"))

    # The accuracy the page showed: the Accuracy card's measured figure and the caption above the downloads.
    shown = fmt.percent(report["measured"]["accuracy"])
    accuracy_card = page.get_by_test_id("stMetric").first
    expect(accuracy_card.get_by_test_id("stMetricLabel")).to_have_text("Accuracy")
    expect(accuracy_card.get_by_test_id("stMetricDelta")).to_have_text(card_values(report, report["constraints"])[0]["delta"])
    expect(accuracy_card.get_by_test_id("stMetricDelta")).to_contain_text(shown)
    expect(page.get_by_text(f"measured accuracy fp32 {shown}").first).to_be_visible()
    shown_accuracy = float(re.fullmatch(r"([\d.]+) %", shown)[1]) / 100

    # The layer chart: one bar per active encoder layer, its height the MLP's width, its colour the heads.
    space, cfg = load_package(VIT_PACKAGE, weights=False).space, report["config"]
    bars = [e.get_attribute("aria-label") for e in
            page.get_by_test_id("stVegaLiteChart").first.locator("[aria-label^='layer: L']").all()]
    for slot in range(cfg["depth"]):
        hidden = space.mlp_hidden(cfg["embed_dim"], cfg["mlp_ratio"][slot])
        assert any(b.startswith(f"layer: L{slot + 1}; width (widest inner dimension): {hidden}; "
                                f"heads: {cfg['num_heads'][slot]};") for b in bars), (slot, bars)
    assert not any(b.startswith(f"layer: L{cfg['depth'] + 1};") for b in bars), bars   # inactive layers: not drawn
    # What the page says of a Transformer: its encoder's depth is one number, not a list of stages.
    chosen = page.get_by_test_id("stMarkdownContainer").filter(has_text="Chosen subnet")
    expect(chosen).to_contain_text(f", depth {cfg['depth']}")
    expect(chosen).not_to_contain_text("depths [")
    if report["predicted"]["accuracy_source"] != "predictor":   # ranked by the MACs proxy: said so, not "accuracy"
        card_column = page.get_by_test_id("stColumn").filter(has=accuracy_card).first
        expect(card_column).to_contain_text("not predicted: no accuracy predictor, the search ranked by MACs")
        expect(card_column).not_to_contain_text("computed analytically")
        expect(page.locator("[aria-label^=\"Y-axis titled 'MACs, % of the largest subnet\"]")).to_have_count(1)
        expect(page.locator("[aria-label*='predicted accuracy']")).to_have_count(0)
    page.context.close()

    # The file on the package's evaluation images, preprocessed as its own metadata says.
    package = load_package(VIT_PACKAGE, weights=False)
    images, labels = package.evaluation.images, package.evaluation.labels
    assert f"{len(labels)} evaluation images" in report["measured_sources"]["accuracy"]
    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(onnx_path)).metadata_props
                if p.key in ("preprocessing", "config")}
    assert metadata["config"] == cfg
    x = preprocess_as_metadata(images, metadata["preprocessing"])
    from ofa_engine.runtime.preprocess import preprocess
    np.testing.assert_allclose(x, preprocess(images, space, cfg["image_size"]).numpy(), atol=1e-6)   # the engine's own
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    assert logits.shape == (len(labels), package.num_classes) and np.isfinite(logits).all()
    accuracy = float((logits.argmax(1) == labels).mean())
    assert abs(accuracy - report["measured"]["accuracy"]) <= 0.005, (accuracy, report["measured"]["accuracy"])
    assert abs(accuracy - shown_accuracy) <= 0.005, (accuracy, shown)


# ------------------------------------------------------------------------------ Device profiles
def test_profiles_page_keeps_the_json_tab_and_an_impossible_profile_shows_its_reason_without_a_click(served, tmp_path):
    """A latency CSV first, then a profile JSON: the JSON tab stays open across the reruns (its
    Add button visible). The profile's SRAM fits no subnet: the Specialize page of the same
    session says so as soon as it is chosen, and shows its display name as written (not as
    Markdown). The refusals and the reason's wording are tested in tests/test_app.py."""
    base = json.loads((ROOT / "assets" / "profiles" / "stm32f746.json").read_text())
    data = {**base, "name": "tiny-board", "display_name": "Tiny __import__ board",
            "memory": {**base["memory"], "sram_kb": 1.0}}
    profile = tmp_path / "tiny-board.json"
    profile.write_text(json.dumps(data))
    csv = tmp_path / "results.csv"
    csv.write_text("file,config\nm.onnx,{}\n")

    url, new_page = served
    page = new_page()
    runs = ScriptRuns(page)
    open_app(page, url, "profiles")
    csv_tab = page.get_by_role("tab", name="2. Upload measured latencies (CSV)")
    json_tab = page.get_by_role("tab", name="Upload a profile (JSON)")
    create = page.get_by_role("button", name="Create profile")
    add = page.get_by_role("button", name="Add profile")

    with runs.one_run(RUN_MS):    # a tab click reruns the page (the open tab is kept by key)
        csv_tab.click()
    expect(create).to_be_disabled()                 # no file yet
    page.locator("input[type=file]").first.set_input_files(str(csv))
    expect(create).to_be_enabled(timeout=RUN_MS)    # only the upload's rerun enables it
    wait_idle(page, RUN_MS)

    with runs.one_run(RUN_MS):
        json_tab.click()
    expect(add).to_be_disabled()
    page.locator("input[type=file]").last.set_input_files(str(profile))
    expect(add).to_be_enabled(timeout=RUN_MS)       # only the upload's rerun enables it
    wait_idle(page, RUN_MS)
    expect(json_tab).to_have_attribute("aria-selected", "true")
    expect(add).to_be_visible()                     # a hidden tab's button is never visible
    add.click()
    # The flash is drawn only by the rerun after the profile was added.
    flash = page.get_by_test_id("stAlert").filter(has_text="Profile 'tiny-board' added").first
    expect(flash).to_be_visible(timeout=RUN_MS)
    wait_idle(page, RUN_MS)
    expect(json_tab).to_have_attribute("aria-selected", "true")
    assert_no_exception(page)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Specialize").click()   # same session
    expect(page.get_by_role("button", name="Specialize", exact=True)).to_be_visible(timeout=RUN_MS)
    wait_idle(page, RUN_MS)
    page.get_by_test_id("stMain").get_by_test_id("stSelectbox").first.click()   # the sidebar has the supernet picker
    page.get_by_role("option", name="tiny-board (this session)").click()
    alert = page.get_by_test_id("stAlert").filter(has_text="No subnet fits this device").first
    expect(alert).to_be_visible(timeout=RUN_MS)      # drawn only for this profile
    wait_idle(page, RUN_MS)
    expect(alert).to_contain_text("smallest achievable")
    assert_no_exception(page)
    # User text is shown as written, not as Markdown.
    expect(page.get_by_text("Tiny __import__ board").first).to_be_visible()


# ------------------------------------------------------------------------------ Deploy everywhere
def test_deploy_everywhere_downloads_a_zip_whose_every_onnx_loads_and_matches_its_row(served, tmp_path):
    import zipfile

    import onnxruntime as ort

    from app import format as fmt
    from ofa_engine import SearchSpace
    from ofa_engine.datasets.images import load_split
    from ofa_engine.runtime.preprocess import preprocess

    url, new_page = served
    page = new_page(accept_downloads=True)
    runs = ScriptRuns(page)
    open_app(page, url, "deploy")
    devices = page.get_by_test_id("stMultiSelect").first
    for name in ("cpu-ort-2t", "stm32f746", "stm32h743"):   # every profile is chosen; keep two (time)
        with runs.one_run(RUN_MS):
            devices.locator(f'[aria-label="Remove {name}"]').first.click()
    # A chip is the profile's name, in full (the table names the device and whose latency it is).
    chips = [t.strip() for t in devices.get_by_test_id("stMultiSelectTagsContainer").inner_text().splitlines()]
    assert [t for t in chips if t] == ["cpu-ort-1t", "stm32f412"]
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=RUN_MS)
    page.get_by_role("button", name="Specialize for every device").click()
    download = page.get_by_role("button", name=re.compile(r"Download all \(2 ONNX files"))
    # The page's last element, drawn only once the devices are specialized.
    expect(page.get_by_text("Invert (Fashion-MNIST garments").first).to_be_visible(timeout=SPECIALIZE_MS)
    wait_idle(page, RUN_MS)
    expect(download).to_be_visible()
    assert_no_exception(page)
    with page.expect_download(timeout=RUN_MS) as info:
        download.click()
    rows = {r.locator("th").first.inner_text().strip(): [c.inner_text().strip() for c in r.locator("td").all()]
            for r in page.get_by_test_id("stTable").locator("tbody tr").all()}
    header = [h.inner_text().strip() for h in page.get_by_test_id("stTable").locator("thead th").all()][1:]
    assert page.get_by_test_id("stMarkdownContainer").filter(has_text="true: Trouser").count() >= 1

    space = SearchSpace.preset("tiny-fmnist")
    test = load_split("test2k")
    with zipfile.ZipFile(info.value.path()) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert [d["profile"] for d in manifest["devices"]] == ["cpu-ort-1t", "stm32f412"]
        for device in manifest["devices"]:
            row = dict(zip(header, rows[device["profile"]]))   # the table's rows are named by profile
            assert row["file"].startswith(device["file"]) and row["device"] in device["device"]
            assert row["accuracy"] == fmt.percent(device["measured"]["accuracy"])
            session = ort.InferenceSession(z.read(device["file"]), providers=["CPUExecutionProvider"])
            size = device["config"]["image_size"]
            assert f"{size} px" in row["subnet"] and session.get_inputs()[0].shape[-2:] == [size, size]
            x = preprocess(test.images[:200], space, size).numpy()
            name = session.get_inputs()[0].name
            logits = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
            assert logits.shape == (200, 10) and np.isfinite(logits).all()
            # The file is the one the row measured: its accuracy on these images is close to the row's.
            assert abs((logits.argmax(1) == test.labels[:200]).mean() - device["measured"]["accuracy"]) < 0.1
