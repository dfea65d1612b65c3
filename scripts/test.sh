#!/usr/bin/env bash
# The whole test suite: type-check, lint, build, then every mocha suite against QEMU's own tools.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== type-check"; npx tsc -p . --noEmit
echo "== lint"; npx eslint src test scripts
echo "== build"; node scripts/build.mjs
echo "== tests"
export VMSNAP_REQUIRE_TOOLS=1
npx mocha --reporter test/support/reporter.cjs "${@:-test/**/*.test.ts}"
