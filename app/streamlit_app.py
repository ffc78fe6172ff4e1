"""Entry point of the Streamlit app: `streamlit run app/streamlit_app.py` (or `make run`).

The pages live in app/views/; everything they compute comes from the engine's public API
(`ofa_engine`), and every heavy object is loaded once per process (see app/resources.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repository root
    sys.path.insert(0, str(ROOT))

from app.resources import start_warmup  # noqa: E402

# The package (without its weights), the predictor, the budget ranges, onnx and the chart
# libraries load in the background while the server starts; torch, the supernet and the rest of
# what a specialization needs after the first page (the home page needs no torch).
start_warmup()

import streamlit as st  # noqa: E402

from app.resources import configure_threads  # noqa: E402
from app.sidebar import describe_package, machine_status, supernet_picker  # noqa: E402

configure_threads()   # once torch is loaded: one thread per request
# An emoji favicon is drawn in the page; a ":material/...:" one would be fetched from a public font
# host, and the app must work offline.
st.set_page_config(page_title="OFA specialize", page_icon="🧩", layout="wide")

VIEWS = Path(__file__).resolve().parent / "views"
pages = {
    "Specialize": [
        st.Page(VIEWS / "specialize.py", title="Specialize", icon=":material/tune:", default=True),
        st.Page(VIEWS / "deploy.py", title="Deploy everywhere", icon=":material/devices:"),
        st.Page(VIEWS / "compare.py", title="Compare strategies", icon=":material/leaderboard:"),
        st.Page(VIEWS / "families.py", title="CNN or Transformer?", icon=":material/compare_arrows:"),
        st.Page(VIEWS / "profiles.py", title="Device profiles", icon=":material/developer_board:"),
    ],
    "Learn": [
        st.Page(VIEWS / "how_ofa_works.py", title="How OFA works", icon=":material/school:"),
        st.Page(VIEWS / "building_blocks.py", title="Building blocks", icon=":material/view_in_ar:"),
    ],
}

from app.resources import first_page_done  # noqa: E402

try:
    supernet_picker()
    describe_package()
    machine_status()
    st.navigation(pages).run()
finally:
    first_page_done()   # the warm-up imports torch only now: it does not slow the first page
