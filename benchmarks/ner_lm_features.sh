#!/usr/bin/env bash
# Issue 13 item 7: CoNLL-2003 dev F1 with and without LM features, same seeds, JOBS runs at a time, one thread each.
#   nopretrain  configs/ner_conll03_nopretrain.yaml as written
#   lm          configs/ner_conll03_lm.yaml as written (= nopretrain + the frozen cased LMs' states)
#   lm_emb      the same with the LMs' word vectors too (--model.init_args.network.lm_embeddings true)
# Needs runs/lm_ner_cased/model and runs/lm_ner_cased_backward/model (configs/lm_ner_cased*.yaml). Each run's console
# log and metrics.csv land in runs/ner_lm/<arm>_s<seed>/; then benchmarks/ner_unseen.py splits dev F1 into entities
# seen and unseen in training for every finished run, and the summary is printed.
#
#   bash benchmarks/ner_lm_features.sh [SEEDS="42"] [ARMS="nopretrain lm"] [JOBS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-42}
ARMS=${ARMS:-nopretrain lm}
JOBS=${JOBS:-2}
OUT=runs/ner_lm
mkdir -p "$OUT"

one_run() {  # arm seed
  local arm=$1 seed=$2 dir=$OUT/$1_s$2 config=$1 extra=()
  case $arm in
    nopretrain|lm) ;;
    lm_emb) config=lm; extra=(--model.init_args.network.lm_embeddings true) ;;
    *) echo "unknown arm $arm" >&2; return 2 ;;
  esac
  if [ -f "$dir/done.json" ]; then return 0; fi  # resumable: a finished run is not repeated
  OMP_NUM_THREADS=1 .venv/bin/bilstm fit --config "configs/ner_conll03_$config.yaml" "${extra[@]}" \
    --seed_everything "$seed" --trainer.default_root_dir "$dir" --trainer.enable_progress_bar false \
    --trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.init_args.save_dir "$dir" \
    > "$dir.log" 2>&1
  grep '^{"model_dir"' "$dir.log" | tail -1 > "$dir/done.json"
}
export -f one_run
export OUT
for seed in $SEEDS; do for arm in $ARMS; do echo "$arm $seed"; done; done \
  | xargs -P "$JOBS" -L 1 bash -c 'one_run $0 $1 && echo "done: $0 seed $1"'

mapfile -t MODELS < <(ls -d "$OUT"/*_s*/model)
OMP_NUM_THREADS=2 .venv/bin/python benchmarks/ner_unseen.py "${MODELS[@]}" \
  --train ../shared/data/conll2003/eng.train.gz --dev ../shared/data/conll2003/eng.testa.gz --out "$OUT/unseen.json"
