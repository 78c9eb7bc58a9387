#!/bin/sh
# Compiles native/dffs-spawn.c, the daemon's process launcher: build-spawn-helper.sh OUTPUT [CC [--static]].
# Without a C compiler the daemon still works: it starts commands with Node's fork() instead (slower).
set -eu
output=$1
cc=${2:-${CC:-cc}}
shift $(( $# < 2 ? $# : 2 ))
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build: no C compiler ($cc), so no $output: commands will be started by Node (about half the rate)" >&2
  exit 0
fi
"$cc" -O2 -Wall -Wextra -Werror "$@" -o "$output" "$(dirname "$0")/../native/dffs-spawn.c"
