#!/usr/bin/env bash
# Install mmcv 2.1.0 into the current Python environment, in one of its two forms. They share the import
# name `mmcv`, so exactly one is installed at a time:
#
#   --lite  mmcv-lite, pure Python (a wheel on PyPI, seconds): all that pretraining and the mmpretrain
#           benchmarks need. An installed full mmcv 2.1.0 is kept as it is.
#   (none)  full mmcv with compiled ops, which mmdet needs. mmdet 3.3 rejects mmcv >= 2.2, and PyPI only has
#           an sdist of 2.1.0, whose setup.py asks for -std=c++17 while the torch 2.14 headers need C++20.
#           The wheel is built from the sdist with that flag raised, then cached under $MMDETCON_CACHE
#           (default ~/.cache/mmdetcon) keyed by Python, torch and CUDA version, so only the first install
#           pays the build (10-45 min on 2 cores). It replaces mmcv-lite.
#
# Usage: PYTHON=.venv/bin/python tools/install_mmcv.sh [--lite]
set -euo pipefail

PYTHON=${PYTHON:-python}
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE=${MMDETCON_CACHE:-$HOME/.cache/mmdetcon}
case "${1:-}" in
  --lite) MODE=lite ;;
  "") MODE=full ;;
  *) echo "usage: PYTHON=python tools/install_mmcv.sh [--lite]" >&2; exit 2 ;;
esac

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
  "$PYTHON" -m pip install -q "mmcv-lite==$MMCV_VERSION"
  "$PYTHON" -c "import mmcv; print('[install_mmcv] mmcv-lite', mmcv.__version__, '(no compiled ops: make ops adds them)')"
  exit 0
fi

if "$PYTHON" - <<PY 2>/dev/null
import importlib.metadata as m, sys
import mmcv, mmcv.ops  # noqa: F401  (fails without compiled ops)
sys.exit(0 if m.version('mmcv') == '$MMCV_VERSION' else 1)
PY
then
  echo "[install_mmcv] mmcv $MMCV_VERSION with ops already installed"
  exit 0
fi

KEY=$("$PYTHON" -c "import sys, torch; print(f'py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}'.replace('+', '-'))")
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$KEY"
mkdir -p "$WHEEL_DIR"
WHEEL=$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -n1 || true)

if [ -z "$WHEEL" ]; then
  echo "[install_mmcv] no cached wheel in $WHEEL_DIR: building mmcv $MMCV_VERSION from source (10-45 min on 2 cores)"
  BUILD=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$BUILD"' EXIT
  "$PYTHON" -m pip install -q "setuptools<70" wheel ninja packaging
  # --no-build-isolation: the isolated env would take a setuptools without pkg_resources (mmcv #3325)
  "$PYTHON" -m pip download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
  tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_VERSION"
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { echo "[install_mmcv] could not patch setup.py" >&2; exit 1; }
  # Progress: one line per compiled op file, so long builds are visibly alive.
  export MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
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
  cp "$built" "$WHEEL_DIR/.tmp.whl" && mv "$WHEEL_DIR/.tmp.whl" "$WHEEL_DIR/$(basename "$built")"
  WHEEL="$WHEEL_DIR/$(basename "$built")"
  echo "[install_mmcv] built $(basename "$WHEEL") in $(( $(date +%s) - start ))s, cached in $WHEEL_DIR"
fi

# mmcv-lite's files are mmcv's Python files: remove it, then (re)write every file of the wheel.
"$PYTHON" -m pip uninstall -q -y mmcv-lite >/dev/null 2>&1 || true
"$PYTHON" -m pip install -q --no-deps --force-reinstall "$WHEEL"
"$PYTHON" -c "import mmcv, mmcv.ops; print('[install_mmcv] mmcv', mmcv.__version__, 'with ops')"
