#!/usr/bin/env bash
# Measure the recipes' training step on GLM-4.5 and GLM-4.5-Air slices on one NVIDIA GPU, against the planner,
# in one go (about 25 minutes on one H100 80GB once the environments exist):
#
#     bench/run_gpu.sh [RESULTS_DIR]          # default: bench/results/<UTC date>-<gpu>/
#
# 1. the slice matrix for both models: LoRA (the recipes' targets) and full, gradient checkpointing on and off,
#    2k / 4k / 8k / 16k tokens, micro-batch 1, bf16, with the expert implementation transformers uses by default;
# 2. the same LoRA matrix with one more MoE layer (per-layer cost = the difference);
# 3. every MoE expert implementation the installed transformers offers, at 4k with checkpointing (LoRA);
# 4. one real LLaMA-Factory and one real SWIFT run (2 steps) of the GLM-4.5-Air LoRA recipes on a saved slice;
# 5. the start-up timings of `finetune launch --dry-run` and `finetune plan`;
# 6. report.md: measured vs planned, the MFU reached, the fitted planner coefficients and the 15 % re-check.
#
# Layer counts were chosen with the planner so that LoRA fits 80 GB at 16k with checkpointing off: 1 dense + 1 MoE
# layer, and 1 dense + 2 MoE (planned at most 61 GiB for GLM-4.5). Full fine-tuning of a GLM-4.5 slice needs about
# 100 GiB even at 2k (the embeddings and output head alone are 1.55 B parameters at 18 bytes each): on an 80 GB
# card it is expected to run out of memory, which is recorded as such, and longer sequences are then skipped.
#
# Environment: SKIP_SETUP=1 skips ./setup.sh; SLICE_DIR (a new folder; default: a temporary one, deleted at the
# end) holds the saved 7.7 GB Air slice for the framework runs; STEPS / WARMUP: measured / warm-up steps (3 / 1).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
STEPS=${STEPS:-3}
WARMUP=${WARMUP:-1}
SEQ_LENS=2048,4096,8192,16384
failures=()

if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
    ./setup.sh all || { echo "setup failed" >&2; exit 1; }
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "torch sees no CUDA GPU here: this script measures GPUs only (CPU check: python -m finetune bench run --tiny)." >&2
    exit 1
fi
GPU=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')
SLUG=$(echo "$GPU" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
OUT=${1:-bench/results/$(date -u +%Y%m%d-%H%M)-$SLUG}
mkdir -p "$OUT"
SLICE_TMP=""
if [[ -z "${SLICE_DIR:-}" ]]; then
    SLICE_TMP=$(mktemp -d -t glm45-air-slice-XXXX)
    SLICE_DIR=$SLICE_TMP/slice
fi
START=$SECONDS
echo "GPU: $GPU; results: $OUT"

phase() {  # phase NAME COMMAND...: run, time, and keep going when it fails
    local name=$1; shift
    local t0=$SECONDS
    echo "== $name"
    if "$@"; then
        echo "== $name: done in $((SECONDS - t0)) s (total $((SECONDS - START)) s)"
    else
        echo "== $name: FAILED after $((SECONDS - t0)) s" >&2
        failures+=("$name")
    fi
}

bench() { "$PY" -m finetune bench run --steps "$STEPS" --warmup "$WARMUP" "$@"; }

for MODEL in glm-4.5-air glm-4.5; do
    phase "$MODEL: 1 dense + 1 MoE, lora and full" \
        bench --model "$MODEL" --layers 2 --seq-lens "$SEQ_LENS" --methods lora,full --checkpointing on,off \
        --experts-impl default --out "$OUT/train.jsonl"
    phase "$MODEL: 1 dense + 2 MoE, lora" \
        bench --model "$MODEL" --layers 3 --dense-layers 1 --seq-lens "$SEQ_LENS" --methods lora \
        --checkpointing on,off --experts-impl default --out "$OUT/train.jsonl"
    phase "$MODEL: expert implementations" \
        bench --model "$MODEL" --layers 2 --seq-lens 4096 --methods lora --checkpointing on --experts-impl all \
        --out "$OUT/experts.jsonl"
done

phase "save the GLM-4.5-Air slice" "$PY" -m finetune bench slice --model glm-4.5-air --layers 2 --device cuda \
    --out "$SLICE_DIR"
for RECIPE in llamafactory/glm45-air_lora_4xh100 swift/glm45-air_lora_4xh100; do
    phase "$RECIPE on the slice" "$PY" -m finetune bench framework "$RECIPE" --slice "$SLICE_DIR" --steps 2 \
        --run-dir "$OUT/runs/${RECIPE//\//-}" --out "$OUT/frameworks.jsonl"
done
[[ -n "$SLICE_TMP" ]] && rm -rf "$SLICE_TMP"  # only the folder this script made

phase "start-up timings" bash -c "'$PY' bench/startup_time.py --runs 5 --importtime > '$OUT/startup.md'"

reports=()
for f in train experts frameworks; do [[ -s "$OUT/$f.jsonl" ]] && reports+=("$OUT/$f.jsonl"); done
phase "report" bash -c "'$PY' -m finetune bench report ${reports[*]} --fit > '$OUT/report.md'"

echo
echo "Finished in $((SECONDS - START)) s. Results: $OUT (report.md, startup.md, *.jsonl)."
echo "Next: put report.md and startup.md into docs/benchmarks.md and feed the fitted terms to the planner (bench/README.md)."
if ((${#failures[@]})); then
    printf 'Failed phases: %s\n' "${failures[@]}" >&2
    exit 1
fi
