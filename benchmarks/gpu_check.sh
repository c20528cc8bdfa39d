#!/usr/bin/env bash
# The GPU check (issue 14, item 6), one short script for the lent device machine: under 5 minutes on an H200, so a
# rerun fits the session's 15 minutes of device time. Prepare here, then run there:
#
#   bash benchmarks/gpu/wheels.sh                      # .whl/ (spaCy, BentoML, jsonargparse… for Python 3.12, 28 MiB)
#                                                      # and .gpu_data/ (CoNLL-2003 train + dev), both git-excluded
#   device run: command "bash benchmarks/gpu_check.sh", carry [".whl", ".gpu_data"], timeout_s 420
#   GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh  # the same steps on this CPU, tiny, to test the script
#
# Steps (each timed; a failing step is reported and the next one still runs):
#  1. CUDA training: one CoNLL-2003 epoch of configs/ner_conll03_nopretrain.yaml with bf16 autocast (bf16-mixed);
#  2. predict tokens/s on the dev sentences, fp32 against bf16 autocast, and how many tags agree;
#  3. the BentoML service (`bilstm serve --gpus 1`): /readyz, /tag answered, the worker's model on cuda;
#  4. DDP labelling on the GPUs (`bilstm label --devices N --accelerator gpu --strategy ddp`, N = GPUs ≥ 2; a
#     one-GPU machine skips it and says so) = the one-process labels.
# Everything it prints goes to $OUT/gpu_check.log as well, and the figures to $OUT/gpu_check.json.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT=${OUT:-runs/gpu_check}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export HF_HUB_OFFLINE=1 BENTOML_DO_NOT_TRACK=True PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then
  PY=${PY:-python3}
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "FAILED: installing the carried wheels"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
  fi
  ACCEL=(--trainer.accelerator gpu --trainer.precision bf16-mixed)
  EPOCH=(--trainer.max_epochs 1)
else
  PY=${PY:-.venv/bin/python}
  export OMP_NUM_THREADS=1
  ACCEL=(--trainer.accelerator cpu)
  EPOCH=(--trainer.max_epochs 1 --trainer.limit_train_batches 20 --trainer.limit_val_batches 5)
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
DATA=.gpu_data
[ -f "$DATA/eng.train.gz" ] || DATA=../shared/data/conll2003
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
record() { printf '%s\n' "$1" >> "$RESULTS"; }
step() {  # name, command...: run, time, report
  local name=$1; shift
  local started; started=$(date +%s%N)
  echo "== $name"
  if "$@"; then status=ok; else status=FAILED; fi
  local ms=$(( ($(date +%s%N) - started) / 1000000 ))
  local seconds; seconds=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  echo "-- $name: $status in ${seconds} s"
  record "{\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $seconds}"
}

environment() {
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" - <<'EOF'
import platform, torch, pytorch_lightning, spacy, bentoml
print(f"python {platform.python_version()}, torch {torch.__version__}, lightning {pytorch_lightning.__version__}, "
      f"spacy {spacy.__version__}, bentoml {bentoml.__version__}, cuda available {torch.cuda.is_available()}")
EOF
}

train() {
  "$PY" -m toolkit.cli fit --config configs/ner_conll03_nopretrain.yaml "${ACCEL[@]}" "${EPOCH[@]}" \
    --trainer.devices 1 --trainer.enable_progress_bar false --trainer.default_root_dir "$WORK/ner" \
    --data.init_args.train_file "$DATA/eng.train.gz" --data.init_args.dev_file "$DATA/eng.testa.gz" \
    > "$WORK/fit.log" 2>&1 || { tail -n 30 "$WORK/fit.log"; return 1; }
  grep '^{"model_dir"' "$WORK/fit.log"
  record "$(grep '^{"model_dir"' "$WORK/fit.log" | sed 's/^{/{"step": "train_metrics", /')"
}

predict_speed() {
  "$PY" - "$WORK/ner/model" "$DATA/eng.testa.gz" "$DEVICE" "$RESULTS" <<'EOF'
import json, sys, time
import torch
from toolkit.data.conll import read_conll
from toolkit.predict import Predictor
model, data, device, results = sys.argv[1:5]
sentences = [s.tokens for s in read_conll(data)]
predictor = Predictor.load(model, device=device)
tokens = sum(map(len, sentences))
def timed(autocast):
    context = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with context:
        predictor.tag_tokens(sentences[:256], 256)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        tags = [r.tags for r in predictor.tag_tokens(sentences, 256)]
        if device == "cuda":
            torch.cuda.synchronize()
        return tags, tokens / (time.perf_counter() - started)
fp32, fp32_speed = timed(False)
if device == "cuda":
    bf16, bf16_speed = timed(True)
else:
    bf16, bf16_speed = fp32, float("nan")
flat = [(a, b) for x, y in zip(fp32, bf16) for a, b in zip(x, y)]
agree = sum(a == b for a, b in flat) / len(flat)
line = {"step": "predict", "sentences": len(sentences), "tokens": tokens, "fp32_tokens_per_s": round(fp32_speed),
        "bf16_tokens_per_s": round(bf16_speed) if bf16_speed == bf16_speed else None, "tags_agree_bf16_fp32": agree}
print(json.dumps(line))
open(results, "a").write(json.dumps(line) + "\n")
assert agree >= 0.995, f"bf16 and fp32 tags agree on only {agree:.4f}"
EOF
}

service() {
  local port; port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local gpus=(--gpus 1 --device cuda); [ "$DEVICE" = cuda ] || gpus=(--device cpu)
  setsid "$PY" -m toolkit.cli serve "$WORK/ner/model" --port "$port" "${gpus[@]}" > "$WORK/serve.log" 2>&1 &
  local pid=$! ok=""
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ok=yes; break; fi
    kill -0 "$pid" 2>/dev/null || break  # the server exited: no point waiting out the two minutes
    sleep 1
  done
  local answer=""
  if [ -n "$ok" ]; then
    answer=$(curl -fsS -H 'Content-Type: application/json' "http://127.0.0.1:$port/tag" \
      -d '{"texts": ["Peter Blackburn visited Bonn in 1996 ."]}')
    echo "$answer"
  fi
  kill -TERM -- "-$pid" 2>/dev/null; sleep 3; kill -KILL -- "-$pid" 2>/dev/null
  grep -E "loaded tag model" "$WORK/serve.log" | tail -1
  [ -n "$ok" ] || { tail -n 30 "$WORK/serve.log"; return 1; }
  [ -n "$answer" ] || return 1
  grep -q "on $DEVICE" "$WORK/serve.log" || { echo "the worker's model is not on $DEVICE"; return 1; }
}

ddp_label() {
  "$PY" - "$DATA/eng.testa.gz" "$WORK/dev.txt" <<'EOF'
import sys
from toolkit.data.conll import read_conll
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(" ".join(s.tokens) for s in read_conll(sys.argv[1])) + "\n")
EOF
  # DDP needs a device per process: one process per GPU (NCCL refuses two ranks on one GPU); on the CPU, 2 gloo ranks
  local accel=gpu ranks; ranks=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  if [ "$DEVICE" != cuda ]; then accel=cpu; ranks=2; fi
  if [ "$ranks" -lt 2 ]; then
    echo "skipped: this machine has $ranks GPU; DDP labelling needs 2 (the suite checks 2 CPU ranks against 1)"
    return 0
  fi
  "$PY" -m toolkit.cli label "$WORK/ner/model" "$WORK/dev.txt" "$WORK/one.jsonl" --device "$DEVICE" --quiet \
    || return 1
  "$PY" -m toolkit.cli label "$WORK/ner/model" "$WORK/dev.txt" "$WORK/ddp.jsonl" --devices "$ranks" \
    --accelerator "$accel" --strategy ddp --quiet > "$WORK/ddp.log" 2>&1 || { tail -n 30 "$WORK/ddp.log"; return 1; }
  "$PY" - "$WORK/one.jsonl" "$WORK/ddp.jsonl" <<'EOF'
import json, sys
one = [json.loads(line)["entities"] for line in open(sys.argv[1])]
ddp = [json.loads(line)["entities"] for line in open(sys.argv[2])]
assert len(one) == len(ddp), (len(one), len(ddp))
same = sum([(e["start"], e["end"], e["label"]) for e in a] == [(e["start"], e["end"], e["label"]) for e in b]
           for a, b in zip(one, ddp))
print(f"{len(ddp)} texts labelled under DDP; entities equal to the one-process job for {same}")
assert same == len(one)
EOF
}

started=$(date +%s)
step environment environment
step train train
step predict predict_speed
step service service
step ddp_label ddp_label
"$PY" - "$RESULTS" "$OUT/gpu_check.json" "$DEVICE" "$(( $(date +%s) - started ))" <<'EOF'
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
summary = {"device": sys.argv[3], "seconds": int(sys.argv[4]), "steps": lines}
open(sys.argv[2], "w").write(json.dumps(summary, indent=1) + "\n")
failed = [line["step"] for line in lines if line.get("status") == "FAILED"]
print(f"gpu_check: {len(failed)} failed step(s) {failed} in {sys.argv[4]} s; {sys.argv[2]}")
EOF
rm -rf "$WORK"
