#!/bin/sh
# Compiles the daemon's process launcher, dffs-spawn (native/dffs-spawn.c), into DIR.
# Usage: build-native.sh DIR [CC [CFLAGS...]]
# Without a C compiler the daemon still works: it starts commands with Node's child_process instead
# (about half the rate), and logs that at warn level.
set -eu
dir=$1
cc=${2:-${CC:-cc}}
shift $(( $# < 2 ? $# : 2 ))
native=$(dirname "$0")/../native
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build: no C compiler ($cc), so no $dir/dffs-spawn: commands will be started by Node (about half the rate)" >&2
  exit 0
fi
"$cc" -O2 -Wall -Wextra -Werror "$@" -o "$dir/dffs-spawn" "$native/dffs-spawn.c"
