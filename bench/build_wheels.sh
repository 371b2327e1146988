#!/usr/bin/env bash
# The wheels bench/run_gpu.sh installs on a GPU machine that reaches no package index (bench/wheels.txt):
#
#     bench/build_wheels.sh [--out bench/wheels] [--python-version 3.12] [--limit-mib 64]
#
# Run it on a machine that reaches the index, with the launcher's environment (./setup.sh): DeepSpeed is built
# there as a pure-Python wheel (DS_BUILD_OPS=0, its ops compile on first use on the GPU machine), the others are
# downloaded for the target's Python and x86_64 Linux. It fails, naming the largest wheels, when they and the
# working tree exceed what may travel. bench/wheels/ is git-ignored: carry it beside the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec "$PY" -m finetune.bench.wheels "$@"
