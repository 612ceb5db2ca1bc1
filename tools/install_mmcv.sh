#!/usr/bin/env bash
# Install mmcv 2.1.0 into the current Python environment, in one of its two forms. They share the import
# name `mmcv`, so exactly one is installed at a time:
#
#   --lite  mmcv-lite, pure Python (a wheel on PyPI, seconds): all that pretraining and the mmpretrain
#           benchmarks need. An installed full mmcv 2.1.0 is kept as it is.
#   (none)  full mmcv with compiled ops, which mmdet needs. mmdet 3.3 rejects mmcv >= 2.2, and PyPI only has
#           an sdist of 2.1.0, whose setup.py asks for -std=c++17 while the torch 2.14 headers need C++20.
#           The wheel is built from the sdist with that flag raised, then cached under $MMDETCON_CACHE
#           (default ~/.cache/mmdetcon) and reused by every later install with the same key. It replaces
#           mmcv-lite.
#
# CUDA ops. mmcv compiles its CUDA kernels only when it sees a GPU or FORCE_CUDA=1. This script decides
# instead (tools/mmcv_build.py): with a CUDA build of torch and nvcc found ($CUDA_HOME/bin or PATH) or a GPU
# visible it wants CUDA ops, built with FORCE_CUDA=1 for TORCH_CUDA_ARCH_LIST (taken from the visible GPUs
# when unset; with none visible it must be set); otherwise CPU-only ops, built with the GPUs hidden so that
# no CUDA kernel slips in. A cached wheel needs no nvcc (GPU nodes sharing one MMDETCON_CACHE).
# --cpu-ops / MMCV_CUDA_OPS=0 forces CPU-only ops (`make ops` passes it: a CUDA build of all ops takes hours
# on 2 cores), --cuda-ops / MMCV_CUDA_OPS=1 (or FORCE_CUDA=1) requires CUDA ops. The cache key is
#   py<XY>-torch<version>-<cuXYZ|cpu>-<cuda-ops|cpu-ops>[-arch<TORCH_CUDA_ARCH_LIST>]
# e.g. ~/.cache/mmdetcon/wheels/mmcv-2.1.0-py311-torch2.14.1-cu130-cuda-ops-arch8.0_9.0/. A wheel cached under
# the older key (py<XY>-torch<version>) is reused for CPU-only ops when its extension links no CUDA library.
# After installing, when torch sees a GPU, mmcv.ops.nms must run on it (and agree with the CPU), else the
# script stops and says how to build for it.
#
# Usage: PYTHON=.venv/bin/python tools/install_mmcv.sh [--lite] [--cpu-ops|--cuda-ops] [--print-key|--wheel-only]
#   --print-key   print the plan (key, FORCE_CUDA, cached wheel, ...) and exit; builds and installs nothing
#   --wheel-only  build (or find) the cached wheel and print its path; installs nothing (build once per cluster)
# CONSTRAINTS=FILE adds `-c FILE` to the script's pip calls (`make` passes requirements/constraints.txt).
set -euo pipefail

PYTHON=${PYTHON:-python}
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE=${MMDETCON_CACHE:-$HOME/.cache/mmdetcon}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
USAGE="usage: PYTHON=python tools/install_mmcv.sh [--lite] [--cpu-ops|--cuda-ops] [--print-key|--wheel-only]"
MODE=full ACTION=install FLAG_OPS=
for arg in "$@"; do
  case "$arg" in
    --lite) MODE=lite ;;
    --cpu-ops) FLAG_OPS=0 ;;
    --cuda-ops) FLAG_OPS=1 ;;
    --print-key) ACTION=print ;;
    --wheel-only) ACTION=wheel ;;
    *) echo "$USAGE" >&2; exit 2 ;;
  esac
done
# The explicit switch wins, then MMCV_CUDA_OPS, then mmcv's own FORCE_CUDA=1.
REQUEST=${FLAG_OPS:-${MMCV_CUDA_OPS:-auto}}
if [ -z "$FLAG_OPS" ] && [ -z "${MMCV_CUDA_OPS:-}" ] && [ "${FORCE_CUDA:-}" = 1 ]; then REQUEST=1; fi
case "$REQUEST" in auto|0|1) ;; *) echo "MMCV_CUDA_OPS must be auto, 0 or 1, not '$REQUEST'" >&2; exit 2 ;; esac
PIP_C=()
[ -z "${CONSTRAINTS:-}" ] || PIP_C=(-c "$CONSTRAINTS")

version_of() {  # installed version of a distribution, empty when absent
  "$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true
}

if [ "$MODE" = lite ]; then
  FULL=$(version_of mmcv)
  if [ "$FULL" = "$MMCV_VERSION" ]; then
    echo "[install_mmcv] mmcv $MMCV_VERSION (with ops) is installed; keeping it instead of mmcv-lite"
    exit 0
  fi
  if [ -z "$FULL" ] && [ "$(version_of mmcv-lite)" = "$MMCV_VERSION" ]; then
    echo "[install_mmcv] mmcv-lite $MMCV_VERSION already installed"
    exit 0
  fi
  [ -z "$FULL" ] || "$PYTHON" -m pip uninstall -q -y mmcv
  "$PYTHON" -m pip install -q "${PIP_C[@]}" "mmcv-lite==$MMCV_VERSION"
  "$PYTHON" -c "import mmcv; print('[install_mmcv] mmcv-lite', mmcv.__version__, '(no compiled ops: make ops adds them)')"
  exit 0
fi

# P_KEY, P_CUDA_OPS, P_ARCH, P_WHEEL_DIR, P_WHEEL, P_MIGRATE, P_ERROR, ... (`mmcv_build.py plan`)
PLAN=$("$PYTHON" "$HERE/mmcv_build.py" plan --version "$MMCV_VERSION" --cache "$CACHE" --cuda-ops "$REQUEST" --shell)
eval "$PLAN"
if [ "$ACTION" = print ]; then
  for name in KEY CUDA_OPS FORCE_CUDA ARCH TORCH_CUDA NVCC CUDA_HOME NVCC_RELEASE REASON WHEEL_DIR WHEEL MIGRATE \
              ERROR BUILD_ERROR; do
    var=P_$name
    echo "$name=${!var}"
  done
  [ -z "$P_ERROR" ] || exit 2
  exit 0
fi
if [ -n "$P_ERROR" ]; then
  echo "[install_mmcv] $P_ERROR" >&2
  exit 2
fi
OPS_NAME=$([ "$P_CUDA_OPS" = 1 ] && echo "CUDA ops for TORCH_CUDA_ARCH_LIST=$P_ARCH" || echo "CPU-only ops")
echo "[install_mmcv] mmcv $MMCV_VERSION with $OPS_NAME: $P_REASON"

check_gpu() {  # after an install: mmcv's ops must run on a visible GPU
  if "$PYTHON" "$HERE/mmcv_build.py" check-gpu; then return 0; fi
  if [ "$REQUEST" = 0 ]; then
    echo "[install_mmcv] warning: CPU-only ops were asked for; mmdet on this GPU needs CUDA ops" >&2
    return 0
  fi
  echo "[install_mmcv] stopped: the installed mmcv cannot run on this GPU (above)" >&2
  exit 1
}

if [ "$ACTION" = install ]; then
  INSTALLED=$("$PYTHON" "$HERE/mmcv_build.py" installed-ops "$MMCV_VERSION" 2>/dev/null || echo none)
  # A CUDA build carries the CPU kernels too, so it also serves a CPU-only request.
  if [ "$INSTALLED" = cuda-ops ] || { [ "$INSTALLED" = cpu-ops ] && [ "$P_CUDA_OPS" = 0 ]; }; then
    echo "[install_mmcv] mmcv $MMCV_VERSION with ${INSTALLED/-/ } already installed"
    check_gpu
    exit 0
  fi
fi

if [ -z "$P_WHEEL" ] && [ -z "$P_MIGRATE" ] && [ -n "$P_BUILD_ERROR" ]; then
  echo "[install_mmcv] no cached wheel in $P_WHEEL_DIR, and $P_BUILD_ERROR" >&2
  exit 2
fi
mkdir -p "$P_WHEEL_DIR"
if [ -z "$P_WHEEL" ] && [ -n "$P_MIGRATE" ]; then
  cp "$P_MIGRATE" "$P_WHEEL_DIR/.tmp.whl" && mv "$P_WHEEL_DIR/.tmp.whl" "$P_WHEEL_DIR/$(basename "$P_MIGRATE")"
  P_WHEEL="$P_WHEEL_DIR/$(basename "$P_MIGRATE")"
  echo "[install_mmcv] reusing $P_MIGRATE (CPU-only ops, cached under the older key) as $P_WHEEL"
fi

if [ -z "$P_WHEEL" ]; then
  echo "[install_mmcv] no cached wheel in $P_WHEEL_DIR: building mmcv $MMCV_VERSION from source" \
       "($([ "$P_CUDA_OPS" = 1 ] && echo "CUDA ops: an hour or more" || echo "10-45 min on 2 cores"))"
  BUILD=$(mktemp -d "$CACHE/build.XXXXXX")
  # Build tools: mmcv 2.1.0's setup.py needs setuptools < 70 (torch itself asks for a newer one), so the
  # environment's setuptools is put back after the build (without the constraints, which pin that newer one).
  SETUPTOOLS_BEFORE=$(version_of setuptools)
  restore_setuptools() {
    if [ -n "$SETUPTOOLS_BEFORE" ] && [ "$(version_of setuptools)" != "$SETUPTOOLS_BEFORE" ]; then
      "$PYTHON" -m pip install -q "setuptools==$SETUPTOOLS_BEFORE" || true
    fi
  }
  trap 'restore_setuptools; rm -rf "$BUILD"' EXIT
  "$PYTHON" -m pip install -q "setuptools<70" wheel ninja packaging
  # --no-build-isolation: the isolated env would take a setuptools without pkg_resources (mmcv #3325)
  "$PYTHON" -m pip download -q "${PIP_C[@]}" --no-deps --no-build-isolation --no-binary :all: \
    "mmcv==$MMCV_VERSION" -d "$BUILD"
  tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_VERSION"
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { echo "[install_mmcv] could not patch setup.py" >&2; exit 1; }
  export MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
  if [ "$P_CUDA_OPS" = 1 ]; then
    export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$P_ARCH"
    export CUDA_HOME="$P_CUDA_HOME"  # the toolkit nvcc belongs to
  else
    unset FORCE_CUDA
    export CUDA_VISIBLE_DEVICES=  # mmcv's setup.py would build CUDA kernels for a GPU it sees
  fi
  # Progress: one line per compiled op file, so long builds are visibly alive.
  start=$(date +%s)
  "$PYTHON" -m pip wheel -v --no-build-isolation --no-deps "$SRC" -w "$BUILD/dist" 2>&1 \
    | tee "$BUILD/build.log" \
    | grep --line-buffered -E '^[[:space:]]*\[[0-9]+/[0-9]+\]' \
    | while IFS= read -r line; do
        n=$(echo "$line" | sed -E 's/^[[:space:]]*\[([0-9]+\/[0-9]+)\].*/\1/')
        echo "[install_mmcv] compiling $n  ($(( $(date +%s) - start ))s)"
      done || true  # a failed build is reported below from its log
  built=$(ls "$BUILD"/dist/mmcv-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$built" ]; then
    echo "[install_mmcv] build failed; last lines of the log:" >&2
    tail -n 40 "$BUILD/build.log" >&2
    exit 1
  fi
  got=$("$PYTHON" "$HERE/mmcv_build.py" wheel-ops "$built")
  if [ "$got" != "$([ "$P_CUDA_OPS" = 1 ] && echo cuda-ops || echo cpu-ops)" ]; then
    echo "[install_mmcv] the built wheel has $got, not the $OPS_NAME asked for; not cached (log: $BUILD/build.log)" >&2
    trap restore_setuptools EXIT
    exit 1
  fi
  cp "$built" "$P_WHEEL_DIR/.tmp.whl" && mv "$P_WHEEL_DIR/.tmp.whl" "$P_WHEEL_DIR/$(basename "$built")"
  P_WHEEL="$P_WHEEL_DIR/$(basename "$built")"
  echo "[install_mmcv] built $(basename "$P_WHEEL") in $(( $(date +%s) - start ))s, cached in $P_WHEEL_DIR"
fi

if [ "$ACTION" = wheel ]; then
  echo "$P_WHEEL"
  exit 0
fi

# mmcv-lite's files are mmcv's Python files: remove it, then (re)write every file of the wheel.
"$PYTHON" -m pip uninstall -q -y mmcv-lite >/dev/null 2>&1 || true
"$PYTHON" -m pip install -q "${PIP_C[@]}" --no-deps --force-reinstall "$P_WHEEL"
"$PYTHON" -c "import mmcv, mmcv.ops; print('[install_mmcv] mmcv', mmcv.__version__, 'with ops')"
check_gpu
