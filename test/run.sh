#!/usr/bin/env bash
# The test suite: generated code is current, types check, lint is clean, then every node:test
# file (unit tests beside the code, integration and end-to-end tests under test/ and native-exec/).
# `test/run.sh unit` runs only the fast unit tests; extra arguments select files.
set -euo pipefail
cd "$(dirname "$0")/.."
node=node_modules/.bin/node
bash proto/generate.sh --check
npx --no-install tsc --noEmit -p .
npx --no-install biome lint --diagnostic-level=error .
# leftovers of an earlier, interrupted run (lab namespaces, mounts) must not break this one
if [ -f deploy/lab/lab.ts ]; then "$node" deploy/lab/lab.ts cleanup >/dev/null 2>&1 || true; fi
mode=${1:-all}
case "$mode" in
  unit) files=$(git ls-files -co --exclude-standard 'manager/*.test.ts' 'worker/*.test.ts' 'cli/*.test.ts' | grep -v '\.integration\.test\.ts$' || true) ;;
  all) files=$(git ls-files -co --exclude-standard '*.test.ts' | grep -v '^node_modules/') ;;
  *) files="$*" ;;
esac
# shellcheck disable=SC2086
exec "$node" --test --test-reporter=spec --test-concurrency="${GANTRY_TEST_CONCURRENCY:-2}" --test-timeout=900000 $files
