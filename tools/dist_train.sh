#!/usr/bin/env bash
# Multi-process training on one or more nodes: tools/dist_train.sh CONFIG GPUS [train.py options]
# GPUS is the number of processes on this node. Environment: NNODES (1), NODE_RANK (0), PORT (29500),
# MASTER_ADDR (127.0.0.1). With NNODES > 1 run the same command on every node, each with its NODE_RANK
# (0 .. NNODES-1) and MASTER_ADDR set to node 0's address (both required then).
# Without CUDA the processes train on CPU over gloo (GPUS = number of processes).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [tools/train.py options]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
if [ "$NNODES" -gt 1 ] && { [ -z "${NODE_RANK:-}" ] || [ -z "${MASTER_ADDR:-}" ]; }; then
  echo "$0: NNODES=$NNODES needs NODE_RANK (0..$((NNODES - 1))) and MASTER_ADDR (node 0's address) on every node" >&2
  exit 2
fi
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-python}

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --master_port="$PORT" --nproc_per_node="$GPUS" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
