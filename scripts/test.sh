#!/usr/bin/env bash
# Lint, type-check and test Stele. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -k genesis -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python ]; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "scripts/test.sh: python3 (3.11 or newer) is required" >&2
        exit 1
    fi
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "scripts/test.sh: Stele needs Python 3.11 or newer; python3 is $(python3 --version 2>&1)" >&2
        exit 1
    fi
    echo "==> creating .venv"
    python3 -m venv .venv || {
        echo "scripts/test.sh: 'python3 -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        rm -rf .venv
        exit 1
    }
fi

echo "==> installing stele and its dev dependencies"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "==> ruff check"
.venv/bin/ruff check .
echo "==> ruff format --check"
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy .
echo "==> pytest"
.venv/bin/pytest "$@"
