#!/usr/bin/env bash
# Creates the Python environments the recipes run in; safe to run again (an environment whose
# requirements have not changed is left alone).
#
#   .venv/          the launcher and LLaMA-Factory   (requirements.txt -> requirements/llamafactory.txt),
#                   with the `finetune` command (.venv/bin/finetune, an editable install of this checkout)
#   .venvs/swift/   ms-swift and vLLM                 (requirements/swift.txt + requirements/vllm-<cpu|cuda>.txt)
#
# Usage: ./setup.sh [all|llamafactory|swift|gpu-extras]        (default: all)
#   gpu-extras: the ms-swift environment plus requirements/gpu-extras.txt (Megatron-SWIFT, flash attention);
#               NVIDIA machines only.
# PYTHON picks the interpreter (3.11 or newer, default python3). On a machine with an NVIDIA GPU the
# usual CUDA wheels are installed; without one, the CPU build of torch, and the CUDA-only parts of
# torchvision / torchaudio (pulled in by LLaMA-Factory, unused for text) are taken out so imports work.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
WHICH=${1:-all}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  DEVICE=cuda
else
  DEVICE=cpu
fi

log() { printf '[setup] %s\n' "$*" >&2; }

install_torch() {  # $1: venv
  local pip="$1/bin/python -m pip"
  if [ "$DEVICE" = cuda ]; then
    $pip install -q "torch==$TORCH_VERSION"
  elif ! $pip install -q "torch==$TORCH_VERSION+cpu" 2>/dev/null; then
    $pip install -q --extra-index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION+cpu"
  fi
}

strip_cuda_only_packages() {  # $1: venv. CUDA builds of these fail to import on CPU torch.
  local py="$1/bin/python"
  local pkg
  for pkg in torchvision torchcodec; do
    if $py -m pip show -q "$pkg" >/dev/null 2>&1; then
      log "CPU machine: removing $pkg (a CUDA build; text training and serving do not use it)"
      $py -m pip uninstall -q -y "$pkg"
    fi
  done
  # LLaMA-Factory imports torchaudio unconditionally; without its CUDA-only native library the
  # pure-Python package imports fine.
  $py - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
if spec and spec.submodule_search_locations:
    for lib in (pathlib.Path(spec.submodule_search_locations[0]) / "lib").glob("*.so"):
        print(f"[setup] CPU machine: removing torchaudio's CUDA-built {lib.name}")
        lib.unlink()
PY
}

make_env() {  # $1: venv dir, $2...: requirements files, resolved together
  local venv=$1 stamp="$1/.finetune-setup"
  shift
  local want req reqs=()
  want="$DEVICE $(cat "$@" requirements/*.txt | sha256sum | cut -c1-16)"
  for req in "$@"; do reqs+=(-r "$req"); done
  req="$*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "$venv is up to date"
    return
  fi
  log "creating $venv from $req ($DEVICE)"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  install_torch "$venv"
  "$venv/bin/python" -m pip install -q "${reqs[@]}"
  if [ "$DEVICE" = cpu ]; then strip_cuda_only_packages "$venv"; fi
  echo "$want" > "$stamp"
  log "$venv ready"
}

install_launcher() {  # the `finetune` command in .venv/bin (an editable install: the checkout is the code)
  if [ ! -x .venv/bin/finetune ]; then
    log "installing the \`finetune\` command into .venv/bin"
    local out
    if ! out=$(.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1) || [ ! -x .venv/bin/finetune ]; then
      printf '%s\n' "$out" >&2
      log "could not install the finetune command (pip install -e . in .venv failed)"
      exit 1
    fi
  fi
}

prebuild_deepspeed_cpu_op() {  # $1: venv, $2: framework name (the launcher's TORCH_EXTENSIONS_DIR/<framework>)
  # Without a GPU, DeepSpeed compiles its shared-memory communication op when a run first starts (1-2 minutes,
  # silently); build it once here, into the folder the launcher points TORCH_EXTENSIONS_DIR at.
  [ "$DEVICE" = cpu ] || return 0
  local dir="${FINETUNE_CACHE:-$PWD/.cache}/torch_extensions/$2"
  if compgen -G "$dir/deepspeed_shm_comm/*.so" >/dev/null; then return 0; fi
  log "building DeepSpeed's CPU communication op for $2 into $dir (once, about a minute)"
  TORCH_EXTENSIONS_DIR="$dir" "$1/bin/python" -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()" \
    >/dev/null
}

llamafactory_env() {
  make_env .venv requirements.txt
  install_launcher
  prebuild_deepspeed_cpu_op .venv llamafactory
}

swift_env() {
  make_env .venvs/swift requirements/swift.txt "requirements/vllm-$DEVICE.txt"
  prebuild_deepspeed_cpu_op .venvs/swift swift
}

gpu_extras() {  # compiled against the local CUDA toolkit and the environment's torch: no build isolation
  if [ "$DEVICE" != cuda ]; then
    log "gpu-extras needs an NVIDIA GPU (nvidia-smi found none): Megatron-SWIFT and flash attention run on GPUs only"
    exit 2
  fi
  swift_env
  log "installing requirements/gpu-extras.txt into .venvs/swift (compiles; can take a while)"
  .venvs/swift/bin/python -m pip install -q --no-build-isolation -r requirements/gpu-extras.txt
}

both_envs() {  # independent, and each mostly one core (unpacking, compiling): built side by side
  local lf sw status=0
  llamafactory_env &
  lf=$!
  swift_env &
  sw=$!
  wait "$lf" || status=$?
  wait "$sw" || status=$?
  if [ "$status" != 0 ]; then log "set-up failed (see the messages above)"; fi
  return "$status"
}

case "$WHICH" in
  all) both_envs ;;
  llamafactory) llamafactory_env ;;
  swift) swift_env ;;
  gpu-extras) gpu_extras ;;
  *) echo "usage: $0 [all|llamafactory|swift|gpu-extras]" >&2; exit 2 ;;
esac
