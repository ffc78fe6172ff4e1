"""Serve the app with the engine warming up from the first moment:

    python -m app.serve [streamlit options, e.g. --server.port 8501]

the same as `streamlit run app/streamlit_app.py [options]`, except that what the first
specialization needs (the package, its budget ranges, onnx and the chart libraries while the
server starts and the browser loads the page; torch, ONNX Runtime, the supernet's weights and a
throwaway first export once the first page is drawn) loads in a background thread
(`app.resources.start_warmup`), instead of when the first visitor's script run asks for it; a
Specialize clicked meanwhile waits for it, saying which step is running. After it, this
machine's latency profile is measured in a background process unless cached
(`start_this_machine`; OFA_APP_PROFILE_AT_START=0: not). `make run` and the Dockerfile use it.
The server log has each warm-up step's time.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app" / "streamlit_app.py"


def main(argv: list[str] | None = None) -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import logging
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logging.getLogger("ofa_app").addHandler(handler)
    logging.getLogger("ofa_app").setLevel(logging.INFO)   # the warm-up's timings go to the server log
    from app.resources import start_warmup
    start_warmup()   # the script run imports the same module and finds the thread started
    from streamlit.web import cli
    return cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit",
                    standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main())
