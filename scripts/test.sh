#!/usr/bin/env bash
# npm test: provisions what the suites need (scripts/test-prereqs.sh), type-checks and builds, then
# runs every suite even when one fails, and fails if anything failed or could not run.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
bash scripts/test-prereqs.sh || status=1
npm run typecheck && npm run build || exit 1
npm run test:unit || status=1
npm run test:hardening || status=1
exit $status
