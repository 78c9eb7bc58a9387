#!/bin/sh
# Compiles the daemon's process launchers into DIR: dffs-spawn.node (native/dffs-spawn-addon.c, a
# Node-API addon that starts commands inside the daemon) and dffs-spawn (native/dffs-spawn.c, the
# helper process it falls back to). Usage: build-native.sh DIR [CC [NODE_INCLUDE_DIR [HELPER_FLAGS...]]]
# NODE_INCLUDE_DIR holds node_api.h and uv.h: by default, the one that comes with the running node.
# Without a C compiler the daemon still works: it starts commands with Node's fork() instead (slower).
set -eu
dir=$1
cc=${2:-${CC:-cc}}
include=${3:-$(node -p 'require("node:path").resolve(process.execPath, "../../include/node")')}
shift $(( $# < 3 ? $# : 3 ))
native=$(dirname "$0")/../native
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build: no C compiler ($cc), so no $dir/dffs-spawn: commands will be started by Node (about half the rate)" >&2
  exit 0
fi
"$cc" -O2 -Wall -Wextra -Werror "$@" -o "$dir/dffs-spawn" "$native/dffs-spawn.c"
if [ ! -f "$include/node_api.h" ] || [ ! -f "$include/uv.h" ]; then
  echo "build: no Node.js headers in $include, so no $dir/dffs-spawn.node: commands will be started by $dir/dffs-spawn" >&2
  exit 0
fi
"$cc" -O2 -Wall -Wextra -Werror -shared -fPIC -s -I"$include" -o "$dir/dffs-spawn.node" "$native/dffs-spawn-addon.c"
