#!/usr/bin/env bash
# The whole test suite: type-check, lint, build, the engine and CLI suites against QEMU's own tools, then the
# extension inside a real VS Code (code-server) with UI tests in headless Chromium. Every phase runs even when
# one before it failed; the last line sums them up.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

logs=$(mktemp -d)
failed_phases=()
phase() {
  local name=$1
  shift
  echo "== $name"
  if ! "$@" 2>&1 | tee "$logs/$name.log"; then failed_phases+=("$name"); fi
}

phase typecheck npm run --silent typecheck
phase lint npx eslint src test scripts
phase build node scripts/build.mjs
export VMSNAP_REQUIRE_TOOLS=1
if [ $# -gt 0 ]; then
  phase engine npx mocha --reporter test/support/reporter.cjs "$@"
else
  phase engine npx mocha --reporter test/support/reporter.cjs 'test/**/*.test.ts'
  phase vscode npx tsx scripts/vscode/test.ts
fi

passed=0
failed=0
for log in "$logs"/engine.log "$logs"/vscode.log; do
  [ -f "$log" ] || continue
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)) # a suite that never reported counts as a failure
    continue
  fi
  passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
  failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
done
rm -rf "$logs"
echo
if [ ${#failed_phases[@]} -gt 0 ]; then echo "Failed: ${failed_phases[*]}"; fi
echo "$passed passed, $failed failed"
[ ${#failed_phases[@]} -eq 0 ] && [ "$failed" -eq 0 ]
