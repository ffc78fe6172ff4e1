"""The app reaches a network family only through the family interface: its layer chart, tables
and summaries render `describe` rows, and family-specific page sections are registered
(`app.families.EXPLANATIONS`), not branched on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ofa_engine import SearchSpace, analyze
from ofa_engine.families import FAMILIES

APP_DIR = Path(__file__).resolve().parent.parent / "app"
SPACE = SearchSpace.preset("tiny-fmnist")
# ofa_engine's public aliases of one family's classes and functions (ofa_engine/__init__.py).
FAMILY_ALIASES = {"SearchSpace", "SubnetConfig", "list_presets", "analyze", "deployment_bytes", "Supernet",
                  "build_supernet", "import_official_ofa"}


def imported_family_names(path: Path) -> list[str]:
    """What `path` imports of a family's own modules (or of ofa_engine's aliases of them)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
            if node.module == "ofa_engine":
                found += [a.name for a in node.names if a.name in FAMILY_ALIASES]
            if node.module == "ofa_engine.families":
                modules += [f"ofa_engine.families.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        found += [m for m in modules for family in FAMILIES.names()
                  if m == f"ofa_engine.families.{family}" or m.startswith(f"ofa_engine.families.{family}.")]
    return found


def test_no_app_module_outside_a_families_folder_imports_a_family():
    offenders = {str(p.relative_to(APP_DIR)): names for p in APP_DIR.rglob("*.py")
                 if "families" not in p.relative_to(APP_DIR).parts and (names := imported_family_names(p))}
    assert not offenders, offenders
    # The check sees an import when there is one.
    assert imported_family_names(APP_DIR / "families" / "mbv3" / "how_ofa_works.py")


def test_explanations_are_registered_per_family_and_looked_up_by_name():
    from app.families import EXPLANATIONS, explanation
    assert "mbv3" in EXPLANATIONS and set(EXPLANATIONS.names()) <= set(FAMILIES.names())
    assert explanation("mbv3") is EXPLANATIONS.get("mbv3")
    assert explanation("no-such-family") is None
    with pytest.raises(ValueError, match="unknown family explanation 'x'; known: mbv3"):
        EXPLANATIONS.get("x")


# ------------------------------------------------------------------------------ describe rows
def test_subnet_and_space_summaries_come_from_the_rows():
    from app.layers import subnet_summary, space_summary
    cfg = {"wid": 1, "ks": [3] * 5 + [5] * 5 + [7] * 5, "e": [4] * 15, "d": [2, 3, 2, 2, 3], "image_size": 24}
    assert subnet_summary(SPACE, cfg) == "width 0.75, kernel 3-7, expand 4, 24 px, depths [2, 3, 2, 2, 3]"
    assert subnet_summary(SPACE, SPACE.validate(cfg)) == subnet_summary(SPACE, cfg)   # object or dict
    assert space_summary(SPACE) == "width 0.5-1.0, kernel 3-7, expand 3-6 and the depth of 5 groups"


def test_layer_chart_draws_the_elastic_layers_by_group_with_choice_colours_and_labels():
    from app import charts, layers
    cfg = SPACE.validate({"wid": 2, "ks": [5] * 15, "e": [4] * 15, "d": [2, 3, 2, 2, 2], "image_size": 28})
    rows = layers.chart_layers(layers.describe(SPACE, cfg))
    assert [r["layer"] for r in rows[:3]] == ["S1.B1", "S1.B2", "S2.B1"] and len(rows) == 11   # no stem / head
    spec = charts.config_picture(SPACE, cfg).to_dict()
    bars, text = spec["spec"]["layer"]
    assert spec["facet"]["column"]["field"] == "group"
    assert spec["facet"]["column"]["sort"] == [f"stage {i}" for i in range(1, 6)]
    assert bars["encoding"]["y"]["field"] == "width"
    colour = bars["encoding"]["color"]
    # The kernel, light to dark over the space's values: the old chart's palette for 3, 5 and 7.
    assert colour["field"] == "kernel" and colour["scale"] == {"domain": [3, 5, 7],
                                                               "range": ["#9ecae9", "#4c78a8", "#1f3f6e"]}
    data = next(iter(spec["datasets"].values()))
    assert {d["text"] for d in data} == {"k5\ne4"}
    assert [d["width"] for d in data] == [r["width"] for r in rows]
    # One bar height scale for every subnet of the space: the largest subnet's widest layer.
    widest = max(r["width"] for r in layers.chart_layers(layers.describe(SPACE, SPACE.largest())))
    assert bars["encoding"]["y"]["scale"]["domain"] == [0, widest]


def test_layer_table_lists_every_active_layer_with_its_choices():
    from app import charts
    cfg = SPACE.smallest()
    table = charts.config_table(SPACE, cfg)
    assert list(table.columns) == ["layer", "group", "kind", "choices", "in_shape", "out_shape", "width", "macs",
                                   "params"]
    assert table["layer"].iloc[0] == "stem" and table["layer"].iloc[-1] == "head"
    assert table["choices"].iloc[0] == "width 0.5" and table["choices"].iloc[2] == "kernel 3, expand 3"
    assert len(table) == 2 + sum(cfg.d) + 1
    assert table["macs"].sum() == analyze(SPACE, [cfg])["macs"][0]


def test_deploy_rows_name_the_subnet_by_its_choices():
    from app.deployment import result_rows
    report = {"config": SPACE.smallest().to_dict(),
              "measured": {"accuracy": 0.9, "latency_ms": None, "peak_memory_kb": 10, "flash_kb": 200, "macs": 1e6},
              "predicted": {}}
    entry = {"profile": "p", "device": "d", "precision": "int8", "budget_ms": None, "report": report,
             "onnx_bytes": b"x", "error": None}
    (row,) = result_rows([entry], SPACE)
    assert row["subnet"] == "width 0.5, kernel 3, expand 3, 20 px, depths [2, 2, 2, 2, 2]"


# ------------------------------------------------------------------------------ the page
def test_how_ofa_works_draws_the_registered_sections_of_the_family_and_the_neutral_ones_without():
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    from app.families import EXPLANATIONS

    def headers() -> list[str]:
        at = AppTest.from_file(str(APP_DIR / "streamlit_app.py"), default_timeout=300).run()
        at.switch_page("views/how_ofa_works.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return [h.value for h in at.header]

    assert headers() == ["1. Elastic kernel: centre crop + learned transform",
                         "2. Depth, expand ratio, width and resolution: build a subnet",
                         "3. Width: channels sorted by importance", "4. Elastic resolution",
                         "5. The landscape of random subnets"]
    render = EXPLANATIONS.unregister("mbv3")
    try:
        assert headers() == ["1. Elastic resolution", "2. The landscape of random subnets"]
    finally:
        EXPLANATIONS.register("mbv3", render)
