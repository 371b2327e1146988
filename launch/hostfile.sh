#!/usr/bin/env bash
# Clusters with passwordless SSH: start `finetune launch` on every host of a DeepSpeed-style hostfile.
#
#   launch/hostfile.sh HOSTFILE RECIPE --run-dir /shared/runs/NAME [finetune launch options...]
#
# HOSTFILE lines are `hostname slots=8` (blank lines and # comments ignored); the first host is the master and
# node rank follows the file's order. The repository must be at the same path on every host (FINETUNE_REPO).
# Each host's output goes to logs/<host>.out under the current directory, and the exit status is the worst one;
# a host that fails makes the others stop promptly (the launchers watch each other).
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 HOSTFILE RECIPE [finetune launch options...]" >&2
  exit 2
fi
hostfile=$1
shift
repo=${FINETUNE_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
port=${MASTER_PORT:-29500}

hosts=()
slots=()
while read -r host rest; do
  case "$host" in ""|\#*) continue ;; esac
  hosts+=("$host")
  slot=${rest#*slots=}
  slots+=("${slot%% *}")
done < "$hostfile"
if [ ${#hosts[@]} -eq 0 ]; then
  echo "$hostfile: no hosts" >&2
  exit 2
fi

mkdir -p logs
pids=()
for i in "${!hosts[@]}"; do
  vars="NNODES=${#hosts[@]} NODE_RANK=$i MASTER_ADDR=${hosts[0]} MASTER_PORT=$port NPROC_PER_NODE=${slots[$i]}"
  remote="$(printf '%q ' cd "$repo")&& $vars $(printf '%q ' launch/node.sh "$@")"
  ssh -o BatchMode=yes "${hosts[$i]}" "$remote" > "logs/${hosts[$i]}.out" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "${hosts[$i]} (node $i) failed; see logs/${hosts[$i]}.out" >&2
    status=1
  fi
done
exit "$status"
