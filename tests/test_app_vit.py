"""The app with a ViT package (issue 35, items 6 and 7): "How OFA works" draws the Transformer's
sections from the chosen package's supernet (its `importance()`, `describe` rows and
`block_terms`), and "CNN or Transformer?" puts the best subnet of each installed family side by
side, saying plainly when the profile cannot predict a family's latency.

The ViT package of most tests is written by the engine's package writer into a temporary folder
from a seeded, freshly initialised supernet sorted by importance, with images of the bundled
tiny-fmnist package; the app finds it through $OFA_SUPERNETS, as a user's. The bundled trained
`vit-fmnist` package serves the tests of what the pages say about a Transformer (its weights and
predictor may change: they assert no accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ofa_engine.families import family_of, family_named  # noqa: E402
from ofa_engine.packages import ENV_VAR, clear_package_cache, load_package  # noqa: E402
from ofa_engine.packages.build import write_package  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
TIMEOUT = 300
NAME = "vit-test"


@pytest.fixture(scope="module")
def vit_package(tmp_path_factory):
    """(folder of packages, the ViT package's path, the supernet written into it)."""
    torch.manual_seed(0)
    space = family_named("vit").preset("vit-fmnist")
    supernet = family_of(space).build_supernet().eval()
    supernet.sort_by_importance()
    bundled = load_package("tiny-fmnist", weights=False)
    root = tmp_path_factory.mktemp("supernets")
    path = write_package(root / NAME, supernet, bundled.calibration.subset(np.arange(64)),
                         bundled.evaluation.subset(np.arange(64)), name=NAME,
                         provenance={"dataset": "Fashion-MNIST (tiny-fmnist's subsets)",
                                     "commands": ["tests/test_app_vit.py (untrained, seeded)"]})
    yield root, str(path), supernet
    clear_package_cache()


def open_app(monkeypatch, folder: Path | None) -> AppTest:
    from app.resources import package_entries
    if folder is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, str(folder))
    package_entries.clear()            # listed again with this folder
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def relisted():
    """The app's package list read again after the test (it caches it for 30 s)."""
    yield
    from app.resources import package_entries
    package_entries.clear()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


# ------------------------------------------------------------------------------ How OFA works
def test_the_vit_explanation_is_registered():
    from app.families import EXPLANATIONS, explanation
    assert {"mbv3", "vit"} <= set(EXPLANATIONS.names())
    assert explanation("vit") is EXPLANATIONS.get("vit")


def test_macs_parts_add_up_to_each_blocks_macs_and_attention_is_quadratic():
    from app.families.vit.how_ofa_works import PARTS, macs_parts
    space = family_named("vit").preset("vit-fmnist")
    fam = family_of(space)
    for cfg in (space.largest(), space.smallest(), space.sample(0)):
        parts = macs_parts(space, cfg)
        rows = [r for r in fam.describe(cfg) if r["active"] and r["group"] == "encoder"]
        assert len(parts) == len(PARTS) * cfg.depth
        for slot, row in enumerate(rows):
            mine = {p["part"]: p["macs"] for p in parts if p["block"] == row["layer"]}
            assert sum(mine.values()) == row["macs"]
            heads = cfg.num_heads[slot]
            assert mine[PARTS[1]] == 2 * heads * space.num_patches ** 2 * space.head_dim
            assert mine[PARTS[2]] == 2 * space.num_patches * cfg.embed_dim * space.mlp_hidden(cfg.embed_dim,
                                                                                               cfg.mlp_ratio[slot])


def test_how_ofa_works_explains_the_transformer_from_the_packages_supernet(vit_package, monkeypatch, relisted):
    from app.families.vit.how_ofa_works import importance_vectors, kept_shares
    root, path, supernet = vit_package
    at = open_app(monkeypatch, root)
    at.sidebar.selectbox(key="supernet_choice").set_value(path).run()
    at.switch_page("views/how_ofa_works.py").run()
    ok(at)
    headers = [h.value for h in at.header]
    assert headers[:3] == ["1. What is elastic in a Transformer: build a subnet",
                           "2. Where the MACs go: projections, attention, MLP",
                           "3. Width, heads and MLP units sorted by importance"]
    assert "Elastic kernel: centre crop + learned transform" not in " ".join(headers)   # the CNN's section

    space = load_package(path, weights=False).space
    # The largest and smallest subnets' rows are the family's `describe` rows.
    extremes = next(d.value for d in at.dataframe if "subnet" in d.value.columns)
    for name, cfg in (("largest", space.largest()), ("smallest", space.smallest())):
        rows = [r for r in family_of(space).describe(cfg) if r["active"]]
        mine = extremes[extremes["subnet"] == name]
        assert list(mine["layer"]) == [r["layer"] for r in rows]
        assert list(mine["MACs"]) == [r["macs"] for r in rows]

    # The importance table is the supernet's `importance()` (block L1 by default), and the sorted
    # first units hold more than their share of it.
    table = next(d.value for d in at.dataframe if "share of total importance" in d.value.columns)
    imp = {k: (v if k == "embed" else v[0]) for k, v in importance_vectors(supernet).items()}
    torch.testing.assert_close(imp["embed"], supernet.importance()["embed"].numpy())
    widest = max(space.embed_dims)
    expected = (kept_shares(imp["embed"], [(f"width {c}", c) for c in space.embed_dims])
                + kept_shares(imp["heads"], [(f"{h} heads", h) for h in space.num_heads])
                + kept_shares(imp["mlp"], [(f"ratio {r:g}", space.mlp_hidden(widest, r)) for r in space.mlp_ratios]))
    assert list(table["choice"]) == [e["choice"] for e in expected]
    assert list(table["units kept"]) == [e["units kept"] for e in expected]
    np.testing.assert_allclose(table["share of total importance"], [e["share of total importance"] for e in expected],
                               rtol=1e-6)
    assert (table["share of total importance"] >= table["share if unsorted (expected)"] - 1e-9).all()
    partial = table[table["share if unsorted (expected)"] < 1]
    assert (partial["share of total importance"] > partial["share if unsorted (expected)"]).all()
    assert any("in order of non-increasing importance" in c.value for c in at.caption)


# ------------------------------------------------------------------------------ CNN or Transformer?
def test_the_comparison_page_says_how_to_get_a_second_family(monkeypatch, relisted):
    """With the packages of one family only listed (the bundled ViT package left out)."""
    import app.resources
    at = open_app(monkeypatch, None)
    listed = app.resources.package_entries

    def cnn_only():
        return tuple(e for e in listed() if e.error is not None or e.manifest.family != "vit")
    cnn_only.clear = listed.clear
    monkeypatch.setattr(app.resources, "package_entries", cnn_only)
    at.switch_page("views/families.py").run()
    ok(at)
    assert any("Only one network family is installed" in i.value for i in at.info)
    assert "python -m ofa_engine train --space vit-fmnist" in at.code[0].value
    assert not at.dataframe


def test_the_comparison_puts_one_subnet_of_each_family_side_by_side(vit_package, monkeypatch, relisted):
    """cpu-ort-1t's latency model is of tiny-fmnist's space: under a latency budget the page says
    so and does not specialize the ViT; under a MACs budget both families get a subnet, the ViT's
    without a latency."""
    root, path, _ = vit_package
    at = open_app(monkeypatch, root)
    at.switch_page("views/families.py").run()
    at.selectbox(key="fam_pkg_vit").set_value(path).run()     # not the bundled vit-fmnist
    at.selectbox(key="fam_profile").set_value("cpu-ort-1t").run()
    at.radio(key="fam_field").set_value("latency_ms").run()
    ok(at)
    (warning,) = [w.value for w in at.warning]
    assert "cannot predict the latency of `vit-test` (family `vit`)" in warning
    assert "is for space 'tiny-fmnist', not 'vit-fmnist'" in warning
    assert "a latency budget cannot be applied to it" in warning
    assert any("`vit-test` (family `vit`) has no accuracy predictor" in i.value for i in at.info)

    at.button(key="fam_run").click().run()
    ok(at)
    table = at.dataframe[0].value
    assert sorted(table["family"]) == ["mbv3", "vit"] and len(table) == 2
    cnn, vit = (table[table["family"] == f].iloc[0] for f in ("mbv3", "vit"))
    assert vit["note"].startswith("not specialized: profile 'cpu-ort-1t' is for space 'tiny-fmnist'")
    assert cnn["package"] == "tiny-fmnist" and cnn["latency predicted (ms)"] > 0 and cnn["accuracy measured"] > 0.5

    at.radio(key="fam_field").set_value("macs_m").run()
    (slider,) = at.slider
    slider.set_value(4.0).run()
    assert "it is specialized under this budget with no latency figure" in at.warning[0].value
    at.button(key="fam_run").click().run()
    ok(at)
    table = at.dataframe[0].value
    assert sorted(table["family"]) == ["mbv3", "vit"] and len(table) == 2
    assert (table["MACs (M)"] <= 4.0).all()
    vit = table[table["family"] == "vit"].iloc[0]
    assert vit["package"] == NAME and vit["ranked by"] == "MACs (proxy)"
    assert pd.isna(vit["latency predicted (ms)"]) and pd.isna(vit["latency measured here (ms)"])
    assert "no latency model for this space" in vit["note"]
    cnn = table[table["family"] == "mbv3"].iloc[0]
    assert cnn["ranked by"] == "accuracy predictor" and cnn["latency predicted (ms)"] > 0


# ------------------------------------------------------------------------------ the bundled ViT on every page
BUNDLED_VIT = "vit-fmnist"


def bundled_vit_path() -> str:
    from ofa_engine.packages.package import bundled_packages
    return str(bundled_packages()[BUNDLED_VIT])


def test_a_transformers_depth_is_one_number_not_a_list_of_groups():
    """The ViT's encoder is its one group with elastic depth: "depth 3-5" and "depth 3", not
    "the depth of 1 group" and "depths [3]" (MobileNetV3's stages keep their list)."""
    from app.layers import space_summary, subnet_summary
    space = load_package(BUNDLED_VIT, weights=False).space
    assert space_summary(space) == "embed_dim 48-80, heads 2-4, mlp_ratio 1.0-2.0 and depth 3-5"
    cfg = {"embed_dim": 64, "depth": 3, "num_heads": [3, 4, 4, 2, 3], "mlp_ratio": [2.0, 1.5, 1.0, 1.5, 1.5],
           "image_size": 28}
    assert subnet_summary(space, cfg) == "embed_dim 64, heads 3-4, mlp_ratio 1.0-2.0, 28 px, depth 3"
    cnn = load_package("tiny-fmnist", weights=False).space
    assert space_summary(cnn).endswith("and the depth of 5 groups")
    assert subnet_summary(cnn, cnn.smallest()).endswith("depths [2, 2, 2, 2, 2]")


def proxy_report() -> dict:
    """A specialize report of a package without an accuracy predictor (the engine's fields)."""
    return {"config": {}, "predicted": {"accuracy": None, "accuracy_proxy_score": 0.38, "accuracy_source": "proxy: MACs",
                                        "latency_ms": 0.3, "peak_memory_kb": 71.0, "flash_kb": 372.6, "macs": 4866304},
            "measured": {"accuracy": 0.8812, "latency_ms": 0.301, "latency_iqr_ms": 0.016, "peak_memory_kb": 71.0,
                         "flash_kb": 372.6, "macs": 4866304}}


def test_the_accuracy_card_of_a_package_ranked_by_macs_names_no_source_for_an_accuracy_nobody_predicted():
    from app.widgets import card_values
    card = card_values(proxy_report(), {"latency_ms": 0.383}, profile_kind="measured")[0]
    assert (card["field"], card["value"], card["delta"]) == ("accuracy", "n/a", "measured 88.1 %")
    assert card["source"] == ""    # was "computed analytically", under "n/a"
    assert card["note"] == "not predicted: no accuracy predictor, the search ranked by MACs"
    with_predictor = proxy_report()
    with_predictor["predicted"].update(accuracy=0.9, accuracy_source="predictor")
    card = card_values(with_predictor, {}, profile_kind="measured")[0]
    assert (card["source"], card["note"]) == ("predicted by a learned model", None)


def test_the_candidates_chart_calls_the_macs_proxy_a_score_not_an_accuracy():
    from types import SimpleNamespace

    from app.widgets import candidates_chart
    history = {"iteration": [0, 0, 1], "accuracy": [0.3, 0.5, 0.4], "macs": [3e6, 5e6, 4e6],
               "latency_ms": [0.25, 0.35, 0.3], "feasible": [True, False, True]}
    result = SimpleNamespace(history=history, predicted={"accuracy": 0.4, "macs": 4e6, "latency_ms": 0.3})

    def y_titles(source: str) -> set[str]:
        spec = candidates_chart(result, {"latency_ms": 0.32}, "latency_ms", source).to_dict()
        return {layer["encoding"]["y"].get("title") for layer in spec["layer"] if "y" in layer.get("encoding", {})} - {None}

    assert y_titles("proxy: MACs") == {"MACs, % of the largest subnet (proxy)"}
    assert y_titles("predictor") == {"predicted accuracy (%)"}


def test_how_ofa_works_says_how_a_transformer_is_trained_and_that_its_resolution_is_fixed(monkeypatch, relisted):
    """The bundled ViT: one input resolution, its family's recipe (the full network, then every
    elastic choice at once), not "an input resolution" and progressive shrinking only."""
    at = open_app(monkeypatch, None)
    at.sidebar.selectbox(key="supernet_choice").set_value(bundled_vit_path()).run()
    at.switch_page("views/how_ofa_works.py").run()
    ok(at)
    intro = next(m.value for m in at.markdown if "One **supernet** is trained once" in m.value)
    assert "and depth 3-5), at its one input resolution (28 px)." in intro
    assert "an input resolution" not in intro
    assert "The default recipe of this family (`vit`) has the phases full → elastic." in intro
    assert "the sandwich rule" in intro and "progressive shrinking" in intro
    assert at.header[0].value == "1. What is elastic in a Transformer: build a subnet"
    assert "Elastic resolution" not in " ".join(h.value for h in at.header)


def test_the_vit_package_is_offered_only_the_profiles_that_predict_its_latency(monkeypatch, relisted):
    """Specialize, Compare and Deploy list its own CPU profile and the analytical MCU ones; the
    CNN's CPU profiles are named as not offered in the sidebar."""
    at = open_app(monkeypatch, None)
    at.sidebar.selectbox(key="supernet_choice").set_value(bundled_vit_path()).run()
    ok(at)
    offered = at.selectbox(key="spec_profile").options
    assert "cpu-ort-1t-vit-fmnist" in " ".join(offered) and not any("[cpu-ort-1t]" in o for o in offered)
    assert any("depth 3-5" in c.value for c in at.sidebar.caption)
    (refused,) = [c.value for c in at.sidebar.caption if c.value.startswith("Not offered for")]
    assert "vit-fmnist" in refused and "cpu-ort-1t," in refused and "cpu-ort-2t" in refused
