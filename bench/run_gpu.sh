#!/usr/bin/env bash
# The GPU measurement run: the recipes' training step on GLM-4.5 and GLM-4.5-Air slices on one NVIDIA GPU,
# against the planner, most valuable first, inside a time budget. Not measured yet: no GPU figures exist so far.
#
#     PY=python3 bench/run_gpu.sh --budget 480 --wheels bench/wheels [--out RESULTS_DIR]
#     bench/run_gpu.sh --budget 60 --tiny --out DIR         # the same run on a CPU, tiny shapes (CI rehearses it)
#
# PY: the interpreter (default .venv/bin/python); nothing is set up or downloaded. It needs a CUDA torch,
# transformers, peft and accelerate; what it lacks comes from --wheels, a folder made beforehand on a machine
# that reaches the package index by bench/build_wheels.sh (bench/wheels.txt lists it; it is git-ignored, so carry
# it beside the working tree). Without --wheels, the framework steps whose packages PY lacks are recorded as
# skipped, naming them. --budget: seconds for everything, 20 of them kept for report.md.
#
# Order (finetune/bench/units.py): 1. LoRA with the recipes' targets, checkpointing on, 4k and 16k, for
# GLM-4.5-Air then GLM-4.5 (1 dense + 1 MoE layer); 2. the other MoE expert implementations at 4k; 3. full
# fine-tuning, checkpointing on, 4k and 16k; 4. the rest of the matrix (checkpointing off, 2k and 8k), one more
# MoE layer (per-layer cost), a saved GLM-4.5-Air slice trained 2 steps by LLaMA-Factory and by SWIFT through
# `finetune launch`, and the start-up timings. A measurement starts only when its estimate (from what this run
# measured so far, else the planner's slowest speed) fits in what is left; one still running when the budget is
# spent is recorded as `not_measured`, and everything not started as `skipped` with the reason.
#
# Results (default bench/results/<UTC time>-<gpu>/): train.jsonl, experts.jsonl, frameworks.jsonl, report.md
# (what ran and what the budget left out, then measured vs planned, the fit), startup.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! command -v "$PY" >/dev/null; then
    echo "PY=$PY: no such interpreter (run ./setup.sh, or set PY to one with a CUDA torch)." >&2
    exit 2
fi
export PYTHONUNBUFFERED=1
exec "$PY" -m finetune bench sweep "$@"
