#!/bin/sh
# Install the watermark benchmark's baselines into their own venv (default .venv-watermark at the repository root):
# torch 2.13.0 (CPU wheel; install it FIRST and exactly, other specs pull a CUDA build), invisible-watermark
# (dwtDct, dwtDctSvd, rivaGan; pulls opencv-python and PyWavelets), onnxruntime (rivaGan's models ship in the
# package) and scikit-image (test images, the SSIM reference; pulls NumPy, SciPy, Pillow). The repository's src/
# goes on the venv's path through a .pth file (nothing is built or written into src/), so
# bench/watermark_robustness.py runs Sampan's watermark (NumPy/SciPy/Pillow only) and the baselines in ONE process
# on the same images. Not part of `make test`.
# Usage: tools/install_watermark_bench.sh [VENV]   (or PYTHON311=/path/to/python3.11 tools/install_watermark_bench.sh)
set -eu
cd "$(dirname "$0")/.."
VENV="${1:-.venv-watermark}"
PY="${PYTHON311:-python3.11}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "install_watermark_bench.sh: $PY not found (set PYTHON311=...)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
$PIP install --quiet "torch==2.13.0"
$PIP install --quiet -r bench/requirements-watermark.txt
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$(pwd)/src" > "$SITE/sampan-src.pth"
"$VENV/bin/python" - <<'PY'
import imwatermark, onnxruntime, skimage, torch
from imwatermark import WatermarkEncoder
import sampan.watermark  # noqa: F401  (the repository's own package, from src/)
enc = WatermarkEncoder()
enc.loadModel()  # rivaGan's encoder model ships inside the package
print("torch", torch.__version__, "| onnxruntime", onnxruntime.__version__, "| scikit-image", skimage.__version__,
      "| invisible-watermark ready")
PY
