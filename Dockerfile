# bilstm-toolkit image: `bilstm serve` (the BentoML API) and `bilstm label` (batch jobs). Used by docker-compose.yml.
#
#   docker build -t bilstm-toolkit .                                   # torch from PyPI: the CUDA build (GPU or CPU)
#   docker build -t bilstm-toolkit --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # CPU only, ~1.5 GB smaller
#
# Models are not baked in: mount model directories (see docker-compose.yml) or build a bento
# (serving/bentofile.yaml). Nothing is downloaded at run time (HF_HUB_OFFLINE=1).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    BENTOML_DO_NOT_TRACK=True \
    BENTOML_HOME=/var/lib/bentoml \
    OMP_NUM_THREADS=1

WORKDIR /app
COPY requirements.txt constraints.txt ./
# torch first, from the chosen index; the constraints file then keeps every other install on that exact build.
# uvloop + httptools: uvicorn's fast event loop and HTTP parser (measured in docs/serving.md).
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
 && pip install -c constraints.txt -r requirements.txt uvloop httptools

COPY pyproject.toml README.md ./
COPY toolkit ./toolkit
COPY serving ./serving
COPY pipelines ./pipelines
RUN pip install -c constraints.txt --no-deps . \
 && useradd --create-home --uid 1000 bilstm \
 && mkdir -p /var/lib/bentoml /models /data \
 && chown bilstm /var/lib/bentoml /data
USER bilstm

EXPOSE 3000
# /readyz answers 200 only once every model is loaded (503 before, and if loading failed).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]
ENTRYPOINT ["bilstm"]
CMD ["--help"]
