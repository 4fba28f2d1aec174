#!/usr/bin/env bash
# The whole test suite: lint, types, unit and integration tests. Run as root after hack/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(pwd)/.venv/bin:$PATH"
echo "== ruff"; ruff check ignitevm tests bench images
echo "== mypy --strict"; mypy
echo "== pytest"; exec pytest -q -ra --timeout=900 "$@"
