# Sourced by app.sh and test.sh: a virtual environment in .venv (FEWSHOT_VENV overrides), because a
# stock Debian or Ubuntu Python refuses pip installs into the system (PEP 668), then the given
# requirements file installed into it. Sets PYTHON to the environment's interpreter.
# Usage: source scripts/venv.sh REQUIREMENTS_FILE
VENV="${FEWSHOT_VENV:-.venv}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian and Ubuntu ship venv's pip bootstrap in a separate package.
        rm -rf "$VENV"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
fi
PYTHON="$VENV/bin/python"
"$PYTHON" -m pip install -q -r "$1"
