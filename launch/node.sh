#!/usr/bin/env bash
# One command per node, for bare machines: run it on every node of the job with that node's rank.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 launch/node.sh llamafactory/glm45_lora_16xh100 --run-dir /shared/runs/a
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 launch/node.sh llamafactory/glm45_lora_16xh100 --run-dir /shared/runs/a
#
# Every `finetune launch` option works here (--dataset, --set, --dry-run, ...). MASTER_PORT (29500) and
# NPROC_PER_NODE (the recipe's GPUs per node) are read too. FINETUNE_PYTHON picks another launcher interpreter.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${FINETUNE_PYTHON:-$root/.venv/bin/python}" -m finetune launch "$@"
