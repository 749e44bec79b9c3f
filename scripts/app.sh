#!/usr/bin/env bash
# Install the app into .venv on a fresh Debian or Ubuntu machine and launch it on the bundled
# defaults (http://localhost:7860). Usage: bash scripts/app.sh [app.py arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
exec "$PYTHON" app.py "$@"
