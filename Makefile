PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test test-fast bench

# Everything the engine and its tests need (idempotent; torch comes from the local wheel cache).
install:
	$(PIP) install -q -r requirements-test.txt
	$(PIP) install -q --no-deps ofa==0.1.0.post202307202001

# The README's test command: set up, then run the whole suite; the 25 slowest tests are listed
# at the end, so a test that grows slow is seen in CI.
test: install
	$(PYTHON) -m pytest -q --durations=25

# Without the few slow tests (marked slow).
test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

bench:
	$(PYTHON) benchmarks/bench_core.py --threads 1
	$(PYTHON) benchmarks/bench_blocks.py --runs 50 --warmup 5

# Serve the app at http://localhost:$(PORT) with the bundled supernet, predictors and profiles
# (installs the requirements first; nothing is downloaded at run time). app/serve.py is
# `streamlit run app/streamlit_app.py` with the engine loading in the background from the start.
PORT ?= 8501
.PHONY: run
run:
	$(PIP) install -q -r requirements.txt
	OPENBLAS_NUM_THREADS=1 $(PYTHON) -m app.serve --server.port $(PORT) --server.headless true
