#!/usr/bin/env bash
# Issue 25 item 4, at a scale this 2-core machine trains in about an hour: self-training with 5,000 labelled IMDB
# reviews. The teacher is configs/textcat_imdb.yaml on the first 5,000 training reviews after the dev carve
# (the dev split is the config's own 2,500 reviews), 3 epochs; the student is configs/textcat_imdb_selftrain.yaml
# with the same 5,000 gold reviews plus at most 10,000 unlabelled reviews the teacher labels with p >= 0.9
# (balanced), 3 epochs, same seed. Console logs in runs/bench/imdb_small_{teacher,student}.log, metrics.csv under
# runs/imdb_small_{teacher,student}/lightning_logs.
#
#   bash benchmarks/imdb_selftrain_small.sh [SEED=42] [GOLD=5000] [PSEUDO=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-42}
GOLD=${GOLD:-5000}
PSEUDO=${PSEUDO:-10000}
mkdir -p runs/bench
common=(--seed_everything "$SEED" --trainer.max_epochs 3 --data.init_args.max_train_examples "$GOLD"
        --trainer.enable_progress_bar false --trainer.logger pytorch_lightning.loggers.CSVLogger)
if [ ! -d runs/imdb_small_teacher/model ]; then
  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/bilstm fit --config configs/textcat_imdb.yaml "${common[@]}" \
    --trainer.default_root_dir runs/imdb_small_teacher --trainer.logger.init_args.save_dir runs/imdb_small_teacher \
    > runs/bench/imdb_small_teacher.log 2>&1
fi
OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/bilstm fit --config configs/textcat_imdb_selftrain.yaml "${common[@]}" \
  --data.init_args.pseudo_label_model runs/imdb_small_teacher/model --data.init_args.pseudo_label_max "$PSEUDO" \
  --trainer.default_root_dir runs/imdb_small_student --trainer.logger.init_args.save_dir runs/imdb_small_student \
  > runs/bench/imdb_small_student.log 2>&1
grep '^{"model_dir"' runs/bench/imdb_small_teacher.log runs/bench/imdb_small_student.log
.venv/bin/python - <<'PY'
import json
meta = json.load(open("runs/imdb_small_student/model/meta.json"))
print(json.dumps(meta["training"]["data"].get("pseudo_labels"), indent=1))
PY
bash benchmarks/imdb_score.sh small runs/imdb_small_teacher/model runs/imdb_small_student/model
