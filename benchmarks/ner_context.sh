#!/usr/bin/env bash
# Issue 25: CoNLL-2003 dev F1 with and without document context, same seeds, then ensembles of the seeds of each arm.
#   base  configs/ner_conll03.yaml as written
#   ctx   configs/ner_conll03_context.yaml as written (= base + 32 tokens of document context a side for MiniLM)
# Each run: runs/ner_<arm>_s<seed>/ (metrics.csv under lightning_logs), console log runs/bench/ner_<arm>_s<seed>.log;
# a finished run (done.json) is not repeated. Then, for every arm with 2+ finished seeds, `bilstm ensemble` of them
# (runs/ner_<arm>_ensemble) and `bilstm evaluate` of every model directory on eng.testa; the figures go to
# runs/bench/ner_context.json.
#
#   bash benchmarks/ner_context.sh [SEEDS="42 43 44"] [ARMS="base ctx"] [JOBS=2] [TRAIN=0: only ensemble and score
#   the runs already finished]
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-42 43 44}
ARMS=${ARMS:-base ctx}
JOBS=${JOBS:-2}
DEV=../shared/data/conll2003/eng.testa.gz
mkdir -p runs/bench

one_run() {  # arm seed
  local arm=$1 seed=$2 dir=runs/ner_$1_s$2 config
  case $arm in
    base) config=ner_conll03 ;;
    ctx) config=ner_conll03_context ;;
    *) echo "unknown arm $arm" >&2; return 2 ;;
  esac
  if [ -f "$dir/done.json" ]; then return 0; fi
  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/bilstm fit --config "configs/$config.yaml" \
    --seed_everything "$seed" --trainer.default_root_dir "$dir" --trainer.enable_progress_bar false \
    --trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.init_args.save_dir "$dir" \
    > "runs/bench/ner_${arm}_s${seed}.log" 2>&1
  grep '^{"model_dir"' "runs/bench/ner_${arm}_s${seed}.log" | tail -1 > "$dir/done.json"
}
export -f one_run
if [ "${TRAIN:-1}" != 0 ]; then
  for seed in $SEEDS; do for arm in $ARMS; do echo "$arm $seed"; done; done \
    | xargs -P "$JOBS" -L 1 bash -c 'one_run $0 $1 && echo "done: $0 seed $1"'
fi

{
  echo "["
  first=1
  for arm in $ARMS; do
    members=()
    for seed in $SEEDS; do [ -f "runs/ner_${arm}_s${seed}/done.json" ] && members+=("runs/ner_${arm}_s${seed}/model"); done
    if [ "${#members[@]}" -ge 2 ]; then
      .venv/bin/bilstm ensemble "${members[@]}" --out "runs/ner_${arm}_ensemble" --force > /dev/null
      members+=("runs/ner_${arm}_ensemble")
    fi
    for model in "${members[@]}"; do
      start=$(date +%s.%N)
      scores=$(OMP_NUM_THREADS=2 .venv/bin/bilstm evaluate "$model" "$DEV")
      seconds=$(echo "$(date +%s.%N) - $start" | bc)
      [ $first -eq 1 ] || echo ","
      first=0
      echo "{\"model\": \"$model\", \"evaluate_s\": $seconds, \"size_mb\": $(du -sm "$model" | cut -f1), \"scores\": $scores}"
    done
  done
  echo "]"
} > runs/bench/ner_context.json
cat runs/bench/ner_context.json
