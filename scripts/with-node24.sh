#!/usr/bin/env bash
# Runs a command with Node.js 24 LTS first on PATH, installed from the npm registry's `node@24`
# package into .cache/node24 on first use (no other download).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$root/.cache/node24
if ! "$prefix/node_modules/.bin/node" --version 2>/dev/null | grep -q '^v24\.'; then
  echo "with-node24: installing node@24 from the npm registry into $prefix" >&2
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock node@24 >/dev/null
fi
export PATH=$prefix/node_modules/.bin:$PATH
echo "with-node24: $(node --version)" >&2
exec "$@"
