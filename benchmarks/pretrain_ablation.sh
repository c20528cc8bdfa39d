#!/usr/bin/env bash
# Issue 13's ablation on the IMDB dev split: the same classifier (configs/textcat_imdb_pretrained.yaml) trained
#   scratch   no pretraining            (--model.init_args.init_from null --model.init_args.finetune null)
#   lm        LM pretraining, plain fine-tuning (init_from the two IMDB LMs; --model.init_args.finetune null)
#   ulmfit    + gradual unfreezing and discriminative rates (the config as written)
# with the same seeds, JOBS runs at a time, one thread each. Needs runs/lm_imdb/model and runs/lm_imdb_backward/model
# (configs/lm_imdb.yaml, configs/lm_imdb_backward.yaml). Each run's console log and metrics.csv land in
# runs/ablation/<arm>_s<seed>/; the summary (dev accuracy per run, mean ± sd per arm) is printed at the end.
#
#   ulmfit_lr5e-3  the ULMFiT arm at lr 0.005 (the head; ÷2.6 per group below), against its underfitting at 0.002
#   lm_3ep         the lm arm with 3 epochs instead of 2 (the schedule stretched over them)
#
#   bash benchmarks/pretrain_ablation.sh [SEEDS="42 43 44"] [ARMS="scratch lm ulmfit"] [JOBS=2]
#   LMS=long bash benchmarks/pretrain_ablation.sh   # the 3-epoch LMs (configs/lm_imdb_long*.yaml) → runs/ablation_long
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-42 43 44}
ARMS=${ARMS:-scratch lm ulmfit}
JOBS=${JOBS:-2}
case ${LMS:-short} in
  short) OUT=runs/ablation; LM_FORWARD=runs/lm_imdb/model; LM_BACKWARD=runs/lm_imdb_backward/model ;;
  long) OUT=runs/ablation_long; LM_FORWARD=runs/lm_imdb_long/model; LM_BACKWARD=runs/lm_imdb_long_backward/model ;;
  *) echo "LMS must be short or long" >&2; exit 2 ;;
esac
mkdir -p "$OUT"

one_run() {  # arm seed
  local arm=$1 seed=$2 dir=$OUT/$1_s$2 extra=()
  local lms=(--model.init_args.init_from.forward "$LM_FORWARD" --model.init_args.init_from.backward "$LM_BACKWARD")
  case $arm in
    scratch) extra=(--model.init_args.init_from null --model.init_args.finetune null) ;;
    lm) extra=("${lms[@]}" --model.init_args.finetune null) ;;
    ulmfit) extra=("${lms[@]}") ;;
    ulmfit_lr5e-3) extra=("${lms[@]}" --model.init_args.optimizer.lr 0.005) ;;
    lm_3ep) extra=("${lms[@]}" --model.init_args.finetune null --trainer.max_epochs 3) ;;
    *) echo "unknown arm $arm" >&2; return 2 ;;
  esac
  if [ -f "$dir/done.json" ]; then return 0; fi  # resumable: a finished run is not repeated
  OMP_NUM_THREADS=1 .venv/bin/bilstm fit --config configs/textcat_imdb_pretrained.yaml "${extra[@]}" \
    --seed_everything "$seed" --trainer.default_root_dir "$dir" --trainer.enable_progress_bar false \
    --trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.init_args.save_dir "$dir" \
    > "$dir.log" 2>&1
  grep '^{"model_dir"' "$dir.log" | tail -1 > "$dir/done.json"
}
export -f one_run
export OUT LM_FORWARD LM_BACKWARD
for seed in $SEEDS; do for arm in $ARMS; do echo "$arm $seed"; done; done \
  | xargs -P "$JOBS" -L 1 bash -c 'one_run $0 $1 && echo "done: $0 seed $1"'

.venv/bin/python - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
runs = {}
for done in sorted(Path(sys.argv[1]).glob("*_s*/done.json")):
    arm, seed = done.parent.name.rsplit("_s", 1)
    metrics = json.loads(done.read_text())["metrics"]
    seconds = json.loads((done.parent / "model" / "meta.json").read_text())["training"]["fit_seconds"]
    runs.setdefault(arm, []).append((int(seed), metrics["val_acc"], seconds))
for arm, rows in runs.items():
    accuracies = [accuracy for _, accuracy, _ in rows]
    spread = f" ± {statistics.stdev(accuracies):.4f}" if len(accuracies) > 1 else ""
    print(f"{arm}: {statistics.mean(accuracies):.4f}{spread} over seeds {[s for s, _, _ in rows]} "
          f"({', '.join(f'{a:.4f}' for _, a, _ in rows)}); fit {statistics.mean(t for _, _, t in rows) / 60:.1f} min/run")
PY
