#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on the lent GPU machine (Python 3.12, torch 2.11, Lightning 2.6.6,
# transformers, onnxruntime, torchmetrics, sacrebleu… already there; no spaCy, no BentoML, no index reachable):
# downloaded here for CPython 3.12 manylinux x86-64 into .whl/ (git-excluded), without the packages that machine
# already has (benchmarks/gpu/present.txt), then checked: every requirement of every carried wheel is met by a
# carried wheel or a present package. Also copies the CoNLL-2003 files the check trains on into .gpu_data/.
#
#   bash benchmarks/gpu/wheels.sh          # then: device run with carry [".whl", ".gpu_data"]
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl .gpu_data
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
  PLATFORMS+=(--platform "$tag")
done
# What the toolkit needs beyond the device image, at this repository's pins (requirements.txt), with their deps.
# jsonargparse's "signatures" extra is named by hand: pip download skipped its two needs, and LightningCLI checks them
NEEDED=(spacy==3.8.18 bentoml==1.4.40 "jsonargparse[signatures]==4.53.0" docstring-parser==0.18.0 typeshed-client==2.15.0
        uvloop==0.23.0 httptools==0.9.0)
.venv/bin/python -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d .whl "${NEEDED[@]}" 2>&1 | grep -v "^WARNING: Location" || true
# seqeval is an sdist: a pure-Python wheel built here installs there
.venv/bin/python -m pip wheel -q --no-deps seqeval==1.2.2 -w .whl 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python benchmarks/gpu/strip_wheels.py .whl/*.whl   # debug symbols out: spaCy 34 → ~8 MB
.venv/bin/python benchmarks/gpu/check_wheels.py .whl benchmarks/gpu/present.txt "${NEEDED[@]}" seqeval
cp ../shared/data/conll2003/eng.train.gz ../shared/data/conll2003/eng.testa.gz .gpu_data/
du -sh .whl .gpu_data
