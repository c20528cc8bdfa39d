#!/usr/bin/env bash
# Score an IMDB teacher, its self-trained student and their ensemble (`bilstm ensemble`: one vocabulary, the gold
# reviews') on the dev split both were selected on (benchmarks/imdb_dev_split.py writes it as a file, outside the
# repository). Scores: runs/bench/imdb_NAME_scores.txt.
#   bash benchmarks/imdb_score.sh NAME TEACHER_DIR STUDENT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 teacher=$2 student=$3
DEVFILE=${TMPDIR:-/tmp}/imdb_dev_split.jsonl
.venv/bin/python benchmarks/imdb_dev_split.py "$DEVFILE"
.venv/bin/bilstm ensemble "$teacher" "$student" --out "runs/imdb_${name}_ensemble" --force > /dev/null
for model in "$teacher" "$student" "runs/imdb_${name}_ensemble"; do
  echo "$model $(OMP_NUM_THREADS=2 .venv/bin/bilstm evaluate "$model" "$DEVFILE")"
done | tee "runs/bench/imdb_${name}_scores.txt"
