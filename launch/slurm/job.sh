#!/usr/bin/env bash
# The body of the sbatch scripts beside this file: one `finetune launch` per node through srun.
#
#   sbatch launch/slurm/2node.sbatch RECIPE [finetune launch options...]
#
# The first node of the allocation is the master; every node gets its rank from Slurm (SLURM_NODEID). The run
# directory is runs/<job name>-<job id> (FINETUNE_RUN_DIR overrides; it must be on storage all nodes share).
# On preemption or near the time limit Slurm sends USR1 to this script (--signal=B:USR1@600 in the sbatch
# headers): the trainers are asked to save a checkpoint and stop, and the job is requeued; a requeued job finds
# its run directory and resumes from the newest complete checkpoint. A run that finished before the stop took
# effect is not requeued.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: sbatch $0 RECIPE [finetune launch options...]" >&2
  exit 2
fi
recipe=$1
shift

repo=${FINETUNE_REPO:-${SLURM_SUBMIT_DIR:-$(pwd)}}
python=${FINETUNE_PYTHON:-$repo/.venv/bin/python}
run_dir=${FINETUNE_RUN_DIR:-$repo/runs/${SLURM_JOB_NAME:-job}-${SLURM_JOB_ID}}
master_addr=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | awk 'NR == 1')  # awk reads all: no SIGPIPE
master_port=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
nnodes=${SLURM_NNODES:-1}
gpus_per_node=${SLURM_GPUS_ON_NODE:-8}
mkdir -p "$run_dir/logs"

if [ -f "$run_dir/config.yaml" ]; then
  what=(--resume "$run_dir")                      # a requeued job continues its run
else
  what=("$recipe" --run-dir "$run_dir" "$@")
fi

requeue=0
# shellcheck disable=SC2329  # invoked by the USR1 trap below
on_usr1() {
  echo "USR1 from Slurm: asking every node to checkpoint and stop, then requeueing" >&2
  for ((rank = 0; rank < nnodes; rank++)); do touch "$run_dir/stop-node$rank"; done
  requeue=1
}
trap on_usr1 USR1

started=$(mktemp)                                 # state.json newer than this was written by this job
trap 'rm -f "$started"' EXIT

# One task per node; each expands its own SLURM_NODEID. The launchers rendezvous on master_addr:master_port.
# shellcheck disable=SC2016  # SLURM_NODEID must expand on each node, not here
srun --nodes="$nnodes" --ntasks-per-node=1 --kill-on-bad-exit=1 \
  --output="$run_dir/logs/slurm-%j-node%n.out" \
  bash -c 'exec "$0" -m finetune launch "$@" --node-rank "$SLURM_NODEID"' \
  "$python" "${what[@]}" --nnodes "$nnodes" --nproc-per-node "$gpus_per_node" \
  --master-addr "$master_addr" --master-port "$master_port" &
srun_pid=$!
status=0
wait "$srun_pid" || status=$?
if [ "$requeue" = 1 ]; then
  status=0                                        # the trap interrupted the first wait (status 128+USR1)...
  wait "$srun_pid" || status=$?                   # ...let the nodes finish saving, and report how they ended
fi
# A run stopped on request exits 75 and node 0 records it in state.json (srun may report another code when it
# ends the other tasks after the first non-zero exit; a state.json older than this job is an earlier attempt's):
# requeue it to continue. A finished run (0) or a failure (any other code) is not requeued.
stopped_now() { [ "$run_dir/state.json" -nt "$started" ] && grep -qs '"state": "stopped"' "$run_dir/state.json"; }
if [ "$status" = 75 ] || stopped_now; then
  echo "the run stopped with a checkpoint; requeueing job $SLURM_JOB_ID to resume it" >&2
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$status"
