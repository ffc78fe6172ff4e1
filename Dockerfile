# The app on CPU: docker build -t ofa-specialize . && docker run -p 8501:8501 ofa-specialize
FROM python:3.11-slim

# One torch / OpenMP thread per request: several sessions share the container's cores.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    OFA_APP_TORCH_THREADS=1

WORKDIR /app

# CPU-only torch from the PyTorch index (the default wheel pulls in CUDA), at the versions
# requirements.txt pins; then the rest of the requirements.
COPY requirements.txt ./
RUN set -eux; \
    pip install --index-url https://download.pytorch.org/whl/cpu \
        "$(grep -E '^torch==' requirements.txt)" "$(grep -E '^torchvision==' requirements.txt)"; \
    grep -vE '^(torch|torchvision)==' requirements.txt > /tmp/requirements-rest.txt; \
    pip install -r /tmp/requirements-rest.txt; \
    rm /tmp/requirements-rest.txt

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
COPY --chown=app:app . .
USER app

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
# python -m app.serve = streamlit run app/streamlit_app.py, with the engine warming up (and this
# machine's latency profile measured, in the background) from the first moment (docs/app.md).
CMD ["python", "-m", "app.serve", "--server.port=8501", "--server.address=0.0.0.0", \
     "--server.headless=true", "--browser.gatherUsageStats=false"]
