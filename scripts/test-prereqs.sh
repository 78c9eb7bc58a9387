#!/usr/bin/env bash
# What `npm test` needs beyond Node.js, and which suites need it. As root with apt (a fresh Debian
# or Ubuntu machine, CI), installs what is missing and builds the systemd sandbox's root file
# system; otherwise says in one line what is missing and for which suites, and exits 1 so that
# npm test fails after running everything it can.
set -uo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# suite: package for each command or file it needs (command:package, or /path:package).
needs=(
  "systemd sandbox (systemd, bundle, faults, fleet):systemd-nspawn:systemd-container debootstrap:debootstrap"
  "offline bundles (bundle):gcc:gcc readelf:binutils aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu qemu-aarch64-static:qemu-user-static /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1:libc6-arm64-cross /usr/aarch64-linux-gnu/lib/libstdc++.so.6:libstdc++6-arm64-cross /usr/aarch64-linux-gnu/lib/libgcc_s.so.1:libgcc-s1-arm64-cross"
  "dashboard in a terminal (tmux):tmux:tmux"
  "Func's client (python-client):python3-requests:python3-requests curl:curl"
  "Prometheus metrics (metrics):promtool:prometheus"
  "fleet with Ansible (fleet):ansible-playbook:ansible-core ssh:openssh-client ssh-keygen:openssh-client"
)

has() {
  case $1 in
    /*) test -e "$1" ;;
    # Func's client is Python's requests: the python3 on PATH, or Debian's.
    python3-requests) python3 -c 'import requests' 2>/dev/null || /usr/bin/python3 -c 'import requests' 2>/dev/null ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

missing_packages=()
missing_by_suite=()
for entry in "${needs[@]}"; do
  suite=${entry%%:*}
  suite_missing=()
  for need in ${entry#*:}; do
    has "${need%:*}" || suite_missing+=("${need##*:}")
  done
  if [ ${#suite_missing[@]} -gt 0 ]; then
    missing_packages+=("${suite_missing[@]}")
    missing_by_suite+=("$suite needs ${suite_missing[*]}")
  fi
done

can_install=false
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && can_install=true

if [ ${#missing_packages[@]} -gt 0 ]; then
  if $can_install; then
    echo "test-prereqs: installing ${missing_packages[*]}" >&2
    # Recommends stay wanted (gcc's libc6-dev), except ansible-core's: the whole of Debian's
    # ansible, hundreds of megabytes of collections that the playbook does not use.
    lean=() full=()
    for package in "${missing_packages[@]}"; do
      if [ "$package" = ansible-core ]; then lean+=("$package"); else full+=("$package"); fi
    done
    apt-get update -qq >/dev/null \
      && { [ ${#full[@]} -eq 0 ] || apt-get install -y -qq "${full[@]}" >/dev/null; } \
      && { [ ${#lean[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null; } \
      || { echo "test-prereqs: apt-get install ${missing_packages[*]} failed" >&2; exit 1; }
  else
    why=$([ "$(id -u)" = 0 ] && echo "no apt-get" || echo "not root")
    (IFS=';'; echo "test-prereqs: $why, so these suites will fail: ${missing_by_suite[*]}; run npm test as root on Debian or Ubuntu to install them" >&2)
    exit 1
  fi
fi

if [ "$(id -u)" != 0 ]; then
  echo "test-prereqs: not root, so the systemd sandbox suites (systemd, bundle, faults, fleet) will fail: systemd-nspawn needs root" >&2
  exit 1
fi
# The sandbox's Debian root file system, built once (about a minute) and cached.
../shared/systemd-sandbox/sandbox rootfs
