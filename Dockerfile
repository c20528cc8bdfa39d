# bilstm-toolkit image: `bilstm serve` (the BentoML API) and `bilstm label` (batch jobs). Used by docker-compose.yml.
#
#   docker build -t bilstm-toolkit .                                   # torch from PyPI: the CUDA build (GPU or CPU)
#   docker build -t bilstm-toolkit --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # CPU only, ~1.5 GB smaller
#   docker build --network host --build-arg BASE_IMAGE=bilstm-base:bookworm -t bilstm-toolkit .   # no image registry:
#       a base image built locally (serving/container/base_image.sh); `make container-check` does the whole round
#
# serving/container/local/ (git-ignored) may hold wheels preferred over the indexes (e.g. a local CPU torch wheel) and
# ca-bundle.crt, the CA bundle for pip behind an HTTPS-intercepting proxy; neither stays in the image.
# Models are not baked in: mount model directories (see docker-compose.yml) or build a bento
# (serving/bentofile.yaml). Nothing is downloaded at run time (HF_HUB_OFFLINE=1).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG PIP_INDEX_URL=https://pypi.org/simple
# A virtual environment: Debian's own Python (a locally built base image) refuses system-wide pip installs (PEP 668).
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_FIND_LINKS=/wheels \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    BENTOML_DO_NOT_TRACK=True \
    BENTOML_HOME=/var/lib/bentoml \
    OMP_NUM_THREADS=1

WORKDIR /app
COPY serving/container/local/ /wheels/
COPY requirements.txt constraints.txt ./
# torch first, from the chosen index; the constraints file then keeps every other install on that exact build.
# uvloop + httptools: uvicorn's fast event loop and HTTP parser (measured in docs/serving.md). seqeval is an sdist whose
# setup_requires fetches today's setuptools-scm egg, which fails to import (no vcs_versioning): it is built without
# isolation against a setuptools-scm that works.
RUN if [ -f /wheels/ca-bundle.crt ]; then export PIP_CERT=/wheels/ca-bundle.crt; fi \
 && pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
 && pip install wheel "setuptools-scm<9" \
 && pip install --no-build-isolation --no-deps seqeval==1.2.2 \
 && pip install -c constraints.txt -r requirements.txt uvloop httptools \
 && rm -rf /wheels

COPY pyproject.toml README.md ./
COPY toolkit ./toolkit
COPY serving ./serving
COPY pipelines ./pipelines
RUN pip install -c constraints.txt --no-deps --no-build-isolation . \
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
