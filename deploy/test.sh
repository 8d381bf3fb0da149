#!/usr/bin/env bash
# Installs what the tests need (idempotent) and runs the whole test suite. CI runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
exec bash test/run.sh "$@"
