#!/usr/bin/env bash
# Multi-node without a cluster: two "nodes" on this machine (NODE_RANK 0 and 1, both against 127.0.0.1), one
# CPU process each, for Lightning training (`bilstm fit`) and for DDP labelling (`bilstm label`). On a real cluster
# the two commands are the same with MASTER_ADDR set to node 0's address and a shared filesystem for the output.
#
#   bash benchmarks/multinode_check.sh [WORK_DIR]        # default: runs/multinode
#
# Checks: both launches exit 0; training writes one model directory (rank 0 only) whose meta.json records
# 2 nodes; the 2-node labels equal, byte for byte, those of a single process with the same model.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/multinode}
BILSTM=(.venv/bin/python -m toolkit.cli)
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MASTER_ADDR=127.0.0.1
rm -rf "$WORK" && mkdir -p "$WORK"
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

two_nodes() {  # run the same command as node 0 and node 1; fail if either fails
  local port; port=$(free_port)
  MASTER_PORT=$port NODE_RANK=0 "$@" > "$WORK/node0.log" 2>&1 & local node0=$!
  MASTER_PORT=$port NODE_RANK=1 "$@" > "$WORK/node1.log" 2>&1 & local node1=$!
  local status=0
  wait $node0 || status=$?
  wait $node1 || status=$((status ? status : $?))
  if [ "$status" != 0 ]; then tail -n 30 "$WORK"/node*.log; echo "FAILED: $*" >&2; exit 1; fi
}

started=$(date +%s)
echo "== training: 2 nodes × 1 CPU process (ddp, gloo)"
two_nodes "${BILSTM[@]}" fit --config configs/textcat_sample.yaml --trainer.num_nodes 2 --trainer.devices 1 \
  --trainer.accelerator cpu --trainer.strategy ddp --trainer.max_epochs 2 --trainer.enable_progress_bar false \
  --trainer.default_root_dir "$WORK/fit"
cp "$WORK/node0.log" "$WORK/fit_node0.log"; cp "$WORK/node1.log" "$WORK/fit_node1.log"
grep -q "model directory:" "$WORK/fit_node0.log" || { echo "FAILED: node 0 wrote no model directory" >&2; exit 1; }
if grep -q "model directory:" "$WORK/fit_node1.log"; then echo "FAILED: node 1 exported too" >&2; exit 1; fi
.venv/bin/python - "$WORK/fit/model/meta.json" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
trainer = meta["provenance"]["config"]["trainer"]
assert (trainer["num_nodes"], str(trainer["devices"]), trainer["strategy"]) == (2, "1", "ddp"), trainer
training, config = meta["training"], meta["provenance"]["config"]
batch = config["data"]["init_args"]["batch_size"]
per_epoch = -(-training["data"]["train_examples"] // (batch * 2))  # each of the 2 ranks gets half of every epoch
assert training["global_step"] == per_epoch * training["epochs"], (training["global_step"], per_epoch)
print(f"model directory written by rank 0; num_nodes=2, devices=1, ddp; {training['global_step']} steps = "
      f"{training['epochs']} epochs x ceil({training['data']['train_examples']} / ({batch} x 2 ranks)); "
      f"dev metrics {training['metrics']}")
EOF

echo "== labelling: 2 nodes × 1 CPU process, against 1 process"
"${BILSTM[@]}" label "$WORK/fit/model" samples/textcat/unlabelled.txt "$WORK/labels.single.jsonl" > "$WORK/label_single.log" 2>&1
two_nodes "${BILSTM[@]}" label "$WORK/fit/model" samples/textcat/unlabelled.txt "$WORK/labels.2nodes.jsonl" \
  --devices 1 --num-nodes 2 --accelerator cpu --strategy ddp
cmp "$WORK/labels.single.jsonl" "$WORK/labels.2nodes.jsonl"
echo "2-node labels == single-process labels: $(wc -l < "$WORK/labels.2nodes.jsonl") records, identical bytes"
echo "OK in $(( $(date +%s) - started )) s (logs in $WORK)"
