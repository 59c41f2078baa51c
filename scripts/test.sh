#!/usr/bin/env bash
# The whole test suite: lint, types, then every test (slow integration tests included).
set -euo pipefail
. "$(dirname "$0")/setup.sh"
ruff check src tests benchmarks
mypy
python -m pytest "$@"
