#!/usr/bin/env bash
# The README's main job: set up, then run the whole secure import against the
# embedded reference server (sign-in via device flow, one asset per format).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/sealport demo "$@"
