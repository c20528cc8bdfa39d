#!/usr/bin/env bash
# Issue 13 on a lent GPU: the two IMDB language models of configs/lm_imdb_long.yaml and
# configs/lm_imdb_long_backward.yaml (3 full epochs each, ~1.7 h per direction on one CPU thread), as written but
# for two additions that change no result: data.corpus_cache (the corpus tokenised here by
# benchmarks/gpu/lm_prep.sh: the IMDB text and spaCy do not fit the call together) and trainer.max_time (a guard
# so both directions fit the device time; the log says if it stopped one early). Both model directories, their
# metrics.csv and the console logs come back as lm_imdb_long.tar.gz in 15 MiB parts (a returned file is ≤ 16 MiB):
#
#   bash benchmarks/gpu/wheels.sh && bash benchmarks/gpu/lm_prep.sh
#   device run: command "bash benchmarks/gpu/lm_imdb.sh", carry [".whl_lm", ".gpu_data"], timeout_s 420
#   here: cat FILES_AT/lm_imdb_long.tar.gz.part-* | tar xz      # → runs/lm_imdb_long{,_backward}/
#   LM_MAX_TIME=00:00:00:20 PY=.venv/bin/python bash benchmarks/gpu/lm_imdb.sh   # the same steps on this CPU
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu_lm}
MAX_TIME=${LM_MAX_TIME:-00:00:02:40}
PY=${PY:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/lm_imdb.log") 2>&1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
if [ -d .whl_lm ] && [ "$PY" = python3 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl_lm/*.whl \
    || { echo "FAILED: installing the carried wheels"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch, pytorch_lightning as pl; print("torch", torch.__version__, "lightning", pl.__version__,
"cuda", torch.cuda.is_available())'
failed=0
for config in lm_imdb_long lm_imdb_long_backward; do
  started=$(date +%s)
  echo "== $config (max_time $MAX_TIME)"
  rm -rf "runs/$config"
  mkdir -p "runs/$config"
  if "$PY" -m toolkit.cli fit --config "configs/$config.yaml" --data.init_args.corpus_cache .gpu_data/imdb_lm_corpus \
      --trainer.enable_progress_bar false --trainer.max_time "$MAX_TIME" > "runs/$config/fit.log" 2>&1; then
    grep '^{"model_dir"' "runs/$config/fit.log"
  else
    failed=1; tail -n 30 "runs/$config/fit.log"
  fi
  grep -E "max_time|Time limit reached" "runs/$config/fit.log" | head -2
  "$PY" - "runs/$config" <<'PY'
import csv, glob, json, sys
run = sys.argv[1]
for path in sorted(glob.glob(f"{run}/lightning_logs/*/metrics.csv")):
    rows = list(csv.DictReader(open(path)))
    steps = max((int(r["step"]) for r in rows if r.get("step")), default=0)
    ppl = [float(r["val_ppl"]) for r in rows if r.get("val_ppl")]
    print(json.dumps({"run": run, "steps": steps, "val_ppl": ppl}))
PY
  echo "-- $config: $(( $(date +%s) - started )) s"
done
tar czf "$OUT/lm_imdb_long.tar.gz" --exclude='*.ckpt' runs/lm_imdb_long runs/lm_imdb_long_backward
split -b 15M -d "$OUT/lm_imdb_long.tar.gz" "$OUT/lm_imdb_long.tar.gz.part-" && rm "$OUT/lm_imdb_long.tar.gz"
ls -la "$OUT"
exit $failed
