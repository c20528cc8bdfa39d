#!/usr/bin/env bash
# `make container-check`: the image and the compose file, for real, on this machine (slow: not part of CI).
#
#  1. a local Debian base image (serving/container/base_image.sh: no image registry needed);
#  2. `docker build` of the project image on it (host network for pip; a local CPU torch wheel if pip finds one);
#  3. the sample classifier and tagger trained on the host (the bundled samples) as the mounted model directories;
#  4. the CPU compose profile (api-cpu) with host networking: wait for /readyz, classify and tag from the host with
#     curl, and compare the answers with the host's own Predictor;
#  5. the batch profile (label) over a mounted folder; check one output line per input line, same labels;
#  6. tear everything down and check that no container of the project is left.
# Build time and image size are printed at the end (recorded in docs/serving.md).
#
#   bash serving/container/check.sh [WORK_DIR]      # default runs/container_check; needs dockerd and docker-compose
#   NO_CACHE=1 make container-check                 # the build time from scratch (no cached layers)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$(realpath -m "${1:-runs/container_check}")
PROJECT=bilstm-check
BASE=bilstm-base:bookworm
IMAGE=bilstm-toolkit:latest
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1

say() { printf '== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
docker info >/dev/null 2>&1 || fail "no Docker engine: apt-get install docker.io, then start dockerd as root"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else
  command -v docker-compose >/dev/null || fail "no compose: apt-get install docker-compose (or the v2 plugin)"
  COMPOSE=(docker-compose)
fi
rm -rf "$WORK" && mkdir -p "$WORK"/{models,in,out}
API_PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The compose file as this machine runs it: docker-compose.yml + the host-network override, variables resolved.
# docker-compose 1.29 (Debian) refuses a GPU count that comes from a variable ("1" is a string to it) even for
# services it does not start, and published ports on a host-network service (an override cannot delete keys), so
# the rendered file gets the count back as a number and loses those ports.
MODELS_DIR="$WORK/models" LABEL_INPUT_DIR="$WORK/in" LABEL_OUTPUT_DIR="$WORK/out" API_PORT=$API_PORT \
  BASE_IMAGE=$BASE "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.yml -f serving/container/compose.host.yml \
  --profile cpu --profile batch config > "$WORK/compose.rendered.yml"
"$PY" - "$WORK/compose.rendered.yml" <<'EOF'
import sys, yaml
path = sys.argv[1]
config = yaml.safe_load(open(path))
for service in config["services"].values():
    if service.get("network_mode") == "host":
        service.pop("ports", None)
    for device in service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", []):
        if isinstance(device.get("count"), str) and device["count"].isdigit():
            device["count"] = int(device["count"])
yaml.safe_dump(config, open(path, "w"), sort_keys=False)
EOF
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$WORK/compose.rendered.yml" "$@"; }
cleanup() { compose --profile cpu --profile batch down --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

say "base image ($BASE)"
bash serving/container/base_image.sh "$BASE"

say "project image ($IMAGE)"
LOCAL=serving/container/local
find "$LOCAL" -type f ! -name README -delete
"$PY" -m pip download -q --no-deps --only-binary=:all: torch==2.13.0 -d "$LOCAL" 2>/dev/null || true
ls "$LOCAL"/*.whl >/dev/null 2>&1 && echo "local wheel: $(basename "$LOCAL"/*.whl)"
# pip inside the build verifies HTTPS with this machine's CA bundle (an intercepting proxy's CA is only there)
for bundle in "${PIP_CERT:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$bundle" ] && [ -f "$bundle" ]; then cp "$bundle" "$LOCAL/ca-bundle.crt"; break; fi
done
started=$(date +%s)
docker build ${NO_CACHE:+--no-cache} --network host --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
  || { tail -n 40 "$WORK/build.log"; fail "docker build (log: $WORK/build.log)"; }
build_seconds=$(( $(date +%s) - started ))
find "$LOCAL" -type f ! -name README -delete
size=$(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')
echo "built in ${build_seconds} s, ${size}"

say "sample models (trained on the host)"
for spec in textcat:textcat_sample ner:ner_sample; do
  name=${spec%%:*}; config=${spec#*:}
  "$PY" -m toolkit.cli fit --config "configs/$config.yaml" --trainer.max_epochs 4 --trainer.enable_progress_bar false \
    --trainer.accelerator cpu --trainer.default_root_dir "$WORK/fit_$name" --export_dir "$WORK/models/$name" \
    > "$WORK/fit_$name.log" 2>&1 || fail "training the $name sample model (log: $WORK/fit_$name.log)"
done
chmod -R a+rX "$WORK/models"

say "api-cpu (compose profile cpu, host network, 127.0.0.1:$API_PORT)"
compose --profile cpu up -d api-cpu > "$WORK/compose_up.log" 2>&1 || { cat "$WORK/compose_up.log"; fail "compose up"; }
ready=""
for _ in $(seq 1 180); do
  if curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then ready=yes; break; fi
  sleep 1
done
[ -n "$ready" ] || { compose --profile cpu logs --tail 60; fail "/readyz did not answer 200 within 180 s"; }
echo "ready"
classified=$(curl -fsS -H 'Content-Type: application/json' "http://127.0.0.1:$API_PORT/classify" \
  -d '{"texts": ["A moving, beautifully shot film.", "Two hours I will never get back."]}')
tagged=$(curl -fsS -H 'Content-Type: application/json' "http://127.0.0.1:$API_PORT/tag" \
  -d '{"texts": ["Peter Blackburn visited Bonn in 1996 ."]}')
refused=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  "http://127.0.0.1:$API_PORT/classify" -d '{"texts": [""]}')
[ "$refused" = 422 ] || fail "an empty text got HTTP $refused, not 422"
"$PY" - "$WORK/models" "$classified" "$tagged" <<'EOF'
import json, sys
from toolkit import Predictor
models, classified, tagged = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
texts = ["A moving, beautifully shot film.", "Two hours I will never get back."]
want = [p.label for p in Predictor.load(f"{models}/textcat", device="cpu").predict(texts)]
assert [r["label"] for r in classified] == want, (classified, want)
entities = Predictor.load(f"{models}/ner", device="cpu").predict(["Peter Blackburn visited Bonn in 1996 ."])[0].entities
assert [(e["start"], e["end"], e["label"]) for e in tagged[0]["entities"]] == [(e.start, e.end, e.label) for e in entities]
print(f"classify {[r['label'] for r in classified]} and tag {[(e['text'], e['label']) for e in tagged[0]['entities']]}"
      " from the container = the host's Predictor")
EOF
compose --profile cpu down > /dev/null 2>&1

say "label (compose profile batch) over a mounted folder"
head -n 20 samples/textcat/unlabelled.txt > "$WORK/in/reviews.txt"
chmod a+rwx "$WORK/out"   # the image runs as uid 1000
compose --profile batch run --rm label > "$WORK/label.log" 2>&1 || { tail -n 30 "$WORK/label.log"; fail "batch job"; }
"$PY" - "$WORK" <<'EOF'
import json, sys
from toolkit import Predictor
work = sys.argv[1]
texts = open(f"{work}/in/reviews.txt", encoding="utf-8").read().splitlines()
rows = [json.loads(line) for line in open(f"{work}/out/reviews.jsonl", encoding="utf-8")]
assert len(rows) == len(texts), (len(rows), len(texts))
want = [p.label for p in Predictor.load(f"{work}/models/textcat", device="cpu").predict(texts)]
assert [r["label"] for r in rows] == want
print(f"{len(rows)} texts labelled in the container, the same labels as the host's Predictor")
EOF

say "tear down"
cleanup
left=$(docker ps -a --filter "label=com.docker.compose.project=$PROJECT" -q | wc -l)
[ "$left" = 0 ] || fail "$left container(s) of $PROJECT left"
echo "no container left"
echo "OK: image $IMAGE built in ${build_seconds} s on $BASE, ${size}; compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || true))"
