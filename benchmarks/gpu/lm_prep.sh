#!/usr/bin/env bash
# Prepare benchmarks/gpu/lm_imdb.sh's carry (issue 13: the IMDB language models for 3 full epochs on a lent GPU).
# The IMDB text (38 MB) and spaCy's wheels (24 MB) together do not fit the call's 64 MiB, so the corpus is tokenised
# here, once, into the corpus cache both configs read (toolkit/data/lm_cache.py; the same data settings as
# configs/lm_imdb_long.yaml, so the GPU run finds it and tokenises nothing): .gpu_data/imdb_lm_corpus/ (~40 MB).
# .whl_lm/ = the part of .whl/ (benchmarks/gpu/wheels.sh, run first) that LM training needs there: jsonargparse's
# "signatures" extra for LightningCLI.
#
#   bash benchmarks/gpu/wheels.sh && bash benchmarks/gpu/lm_prep.sh
#   device run: command "bash benchmarks/gpu/lm_imdb.sh", carry [".whl_lm", ".gpu_data"], timeout_s ≤ 450
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl_lm/' .git/info/exclude 2>/dev/null || echo '/.whl_lm/' >> .git/info/exclude
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
rm -rf .whl_lm && mkdir -p .whl_lm .gpu_data
cp .whl/*.whl .whl_lm/
# check_wheels drops every wheel the roots do not need, then checks that nothing they need is missing
.venv/bin/python benchmarks/gpu/check_wheels.py .whl_lm benchmarks/gpu/present.txt "jsonargparse[signatures]"
rm -f .gpu_data/eng.*.gz  # the GPU check's CoNLL files are not needed here (wheels.sh copies them again)
# python -c, not a heredoc: spawned tokenising workers re-import a main script, and "<stdin>" is none
.venv/bin/python -c '
import yaml
from toolkit.data.lm import LMData
settings = yaml.safe_load(open("configs/lm_imdb_long.yaml"))["data"]["init_args"]
data = LMData(**settings, corpus_cache=".gpu_data/imdb_lm_corpus", tokenize_workers=2)
data.setup("fit")
print({"vocab": len(data.vocab), **{f"{name}_tokens": int(stream.numel()) for name, stream in data.streams.items()},
       "lines": data.lines, "excluded": data.excluded, "sha256": data.data_sha256})
'
du -sh .whl_lm .gpu_data
