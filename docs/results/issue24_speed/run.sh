set -x
date -u
for round in 1 2; do
for tree in /tmp/pre24 /work/main; do
  name=$(basename $tree)
  (cd $tree && PYTHONPATH=$tree OMP_NUM_THREADS=1 /work/main/.venv/bin/python benchmarks/predict_speed.py --texts 512 --repeats 5 > /tmp/bench24/predict_${name}_$round.log 2>&1)
  (cd $tree && PYTHONPATH=$tree OMP_NUM_THREADS=1 /work/main/.venv/bin/python benchmarks/ner_speed.py --sentences 1024 --threads 1,2 --repeats 3 --no-train --out /tmp/bench24/ner_${name}_$round.json > /tmp/bench24/ner_${name}_$round.log 2>&1)
done
done
date -u
