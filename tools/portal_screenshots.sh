#!/usr/bin/env bash
# Regenerate the verification portal's screenshots (docs/verification/screenshots/portal-*.png): runs the portal's
# browser story (tests/portal/browser) over the real `sampan portal --local-platforms` stack in Debian's Chromium,
# which saves every page it visits at 1280 px. Needs chromium (tools/install_system_deps.sh) and the test venv.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/verification/screenshots
mkdir -p "$out"
SAMPAN_PORTAL_SCREENSHOTS="$out" .venv/bin/python -m pytest -q -p no:cacheprovider tests/portal/browser
ls -1 "$out"/portal-*.png
