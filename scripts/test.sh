#!/usr/bin/env bash
# The README's test command: full set-up on a fresh machine, then the test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k manifest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
