#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian or Ubuntu machine (Python packages into .venv,
# see venv.sh), then run the whole suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
[ -d /usr/share/tuxpaint/stamps ] || need_apt+=(tuxpaint-stamps-default)  # the natural-photo data set
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
source scripts/venv.sh requirements-dev.txt
# The data is installed above, so a test that skips for want of it is a bug: make skips fail
# (tests/conftest.py). FEWSHOT_REQUIRE_DATA=0 bash scripts/test.sh lets them skip again.
export FEWSHOT_REQUIRE_DATA="${FEWSHOT_REQUIRE_DATA:-1}"
"$PYTHON" -m pytest "$@"
