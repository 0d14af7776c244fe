#!/usr/bin/env bash
# The Debian packages the test suite needs, installed once by `make test` (never by `make demo`):
#   chromium  - Debian's Chromium, driven by Playwright in the console's browser tests;
#   softhsm2  - a software PKCS#11 token, for the HSM-held organisation key tests (tests/test_hsm.py).
# Installs only what is missing, with apt-get, when running as root (CI and the build machines are root).
# Without root and with something missing it prints the exact command to run and fails: a test that needs a
# package is never skipped silently.
set -euo pipefail

PACKAGES=(chromium softhsm2)

installed() {  # a package counts as present when dpkg says so, or (no dpkg) when its program is on PATH
  local pkg=$1
  if command -v dpkg-query >/dev/null 2>&1; then
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ]
    return
  fi
  case $pkg in
    chromium) command -v chromium >/dev/null 2>&1 ;;
    softhsm2) command -v softhsm2-util >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: ${PACKAGES[*]} present"
  exit 0
fi

install_cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  {
    echo "The test suite needs these system packages, which are missing: ${missing[*]}"
    echo "  chromium: the console's browser tests (Playwright drives Debian's Chromium)"
    echo "  softhsm2: the PKCS#11 (HSM) key tests"
    if command -v apt-get >/dev/null 2>&1; then
      echo "Install them as root, then run make test again:"
      echo "  sudo sh -c '$install_cmd'"
    else
      echo "This is not a Debian/Ubuntu system (no apt-get): install the equivalent packages with your"
      echo "package manager (Chromium, and SoftHSM v2 with softhsm2-util and libsofthsm2.so)."
    fi
  } >&2
  exit 1
fi

echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
for pkg in "${missing[@]}"; do
  installed "$pkg" || { echo "system packages: $pkg is still missing after apt-get install" >&2; exit 1; }
done
