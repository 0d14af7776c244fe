#!/bin/sh
# Install Flower (flwr 1.42.0) into its own venv (default .venv-flower at the repository root) for the Flower
# platform under test (src/sampan/verify/platforms/flower.py). Sampan runs Flower only as a subprocess
# (flower_worker.py), so flwr's pins (fastapi < 0.139, protobuf 6, typer < 0.21, uvicorn < 0.50) never meet
# Sampan's own venv. Exact versions and hashes: requirements/lock-flower.txt (CPython 3.11, Linux x86_64).
# Usage: tools/install_flower.sh [VENV]   (or PYTHON311=/path/to/python3.11 tools/install_flower.sh)
set -eu
cd "$(dirname "$0")/.."
VENV="${1:-.venv-flower}"
PY="${PYTHON311:-python3.11}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "install_flower.sh: $PY not found; requirements/lock-flower.txt holds CPython 3.11 wheels (set PYTHON311=...)" >&2
    exit 1
fi
case "$(uname -sm)" in
    "Linux x86_64") ;;
    *) echo "install_flower.sh: requirements/lock-flower.txt holds Linux x86_64 wheels, not $(uname -sm)" >&2; exit 1 ;;
esac
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r requirements/lock-flower.txt
"$VENV/bin/python" -c "import flwr, numpy; from flwr.server import start_server; from flwr.client import start_client; print('flwr', flwr.__version__, 'ready in $VENV')"
