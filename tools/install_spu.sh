#!/bin/sh
# Install SecretFlow spu 0.9.5 into its own venv (default .venv-spu at the repository root) for the opt-in
# RR22 PSI backend. Sampan runs spu only as a subprocess (src/sampan/vertical/_rr22_worker.py), so spu's
# pinned jax and numpy < 2 never meet Sampan's own venv. Needs Python 3.11 on Linux x86_64 (spu's wheels).
# Usage: tools/install_spu.sh [VENV]   (or PYTHON311=/path/to/python3.11 tools/install_spu.sh)
set -eu
cd "$(dirname "$0")/.."
VENV="${1:-.venv-spu}"
PY="${PYTHON311:-python3.11}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "install_spu.sh: $PY not found; spu 0.9.5 has wheels for Python 3.11 only (set PYTHON311=...)" >&2
    exit 1
fi
case "$(uname -sm)" in
    "Linux x86_64") ;;
    *) echo "install_spu.sh: spu 0.9.5 ships wheels for Linux x86_64 only, not $(uname -sm)" >&2; exit 1 ;;
esac
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements-spu.txt
"$VENV/bin/python" -c "from spu import psi; from spu.libspu import link; print('spu ready in $VENV')"
