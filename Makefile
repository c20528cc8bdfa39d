# The README's commands. Each target bootstraps .venv first (offline-safe pins; torch from the local wheel).
VENV ?= .venv
PY := $(VENV)/bin/python
BILSTM := $(VENV)/bin/bilstm
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench install clean browser container-check

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -r requirements-dev.txt
	$(PY) -m pip install -q -c constraints.txt --no-deps -e .
	touch $@

# Main job: train a small sentiment classifier on the bundled sample, evaluate it, label a few texts.
demo: $(STAMP)
	$(BILSTM) fit --config configs/textcat_sample.yaml
	$(BILSTM) evaluate runs/textcat_sample/model samples/textcat/dev.jsonl
	$(BILSTM) label runs/textcat_sample/model samples/textcat/unlabelled.txt runs/textcat_sample/labels.jsonl
	@echo "--- first labelled texts (runs/textcat_sample/labels.jsonl) ---"
	@head -n 5 runs/textcat_sample/labels.jsonl | $(PY) -c 'import json,sys; [print("%3s %.2f  %s" % (r["label"], r["score"], r["text"][:90])) for r in map(json.loads, sys.stdin)]'
	@echo "model directory: runs/textcat_sample/model"

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# Headless Chromium for the /ui browser test (Debian packages; the test skips and says why when they are missing).
browser:
	@command -v chromium >/dev/null && test -x /usr/bin/chromedriver || { \
	  test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "note: no Chromium (apt-get install chromium chromium-driver as root): the /ui browser test will skip"

lint: $(STAMP)
	$(VENV)/bin/ruff check toolkit pipelines serving benchmarks tests

# The Docker image and compose profiles for real (slow, not in CI): serving/container/check.sh says what it checks.
container-check: $(STAMP)
	bash serving/container/check.sh

bench: $(STAMP)
	$(PY) benchmarks/predict_speed.py

clean:
	rm -rf runs .pytest_cache
