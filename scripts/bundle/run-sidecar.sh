#!/bin/bash
# Installs or upgrades DataFlux Func Sidecar from this offline bundle, as in the manual:
#
#   sudo /bin/bash run-sidecar.sh [--bind HOST:PORT[,HOST:PORT...]] [--secret-key KEY]
#
# Running it again upgrades the program and keeps /etc/dataflux-func-sidecar. Nothing is
# downloaded: the bundle carries its own Node.js runtime. Other options: app/bin/run.js install --help.
set -euo pipefail

bundle_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bundle_machine=@MACHINE@

die() {
  echo "run-sidecar.sh: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root: sudo /bin/bash run-sidecar.sh [--bind LIST] [--secret-key KEY]"
host_machine=$(uname -m)
[ "$host_machine" = "$bundle_machine" ] ||
  die "this bundle is for $bundle_machine, but this host is $host_machine: use the dataflux-func-sidecar bundle for $host_machine"
[ -d /run/systemd/system ] || die "systemd is not running on this host: the sidecar is installed as a systemd service"
command -v systemctl >/dev/null || die "systemctl not found: the sidecar is installed as a systemd service"

# A copy damaged on its way (USB stick, scp) must not be installed.
if command -v sha256sum >/dev/null; then
  (cd "$bundle_dir" && sha256sum --quiet --strict -c SHA256SUMS) >&2 ||
    die "files in $bundle_dir do not match SHA256SUMS: copy the whole dataflux-func-sidecar directory again"
else
  echo "run-sidecar.sh: sha256sum not found, so the files were not checked against SHA256SUMS" >&2
fi

exec "$bundle_dir/app/runtime/bin/node" "$bundle_dir/app/bin/run.js" install "$@"
