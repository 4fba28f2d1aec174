#!/usr/bin/env bash
# Install ignited as a systemd service (hack/ignited.service): `ignited daemon` then starts at
# boot and starts VMs with a restart policy again (docs/gitops.md "Running ignited as a
# service"). Opt-in: hack/setup.sh does not run this, and CI never does.
#
#   hack/install-ignited.sh [--manifest-dir DIR] [--state-dir DIR] [--now] [--root DIR]
#
#   --manifest-dir DIR  the manifests ignited reconciles (default /etc/firecracker/manifests)
#   --state-dir DIR     IGNITE_STATE_DIR of the service (default /var/lib/firecracker)
#   --now               also start it now (otherwise: at the next boot, or systemctl start)
#   --root DIR          write the unit below DIR and skip systemctl (packaging, tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

manifest_dir=/etc/firecracker/manifests
state_dir=/var/lib/firecracker
now=""
dest_root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --manifest-dir) manifest_dir=$2; shift 2 ;;
    --state-dir) state_dir=$2; shift 2 ;;
    --now) now=--now; shift ;;
    --root) dest_root=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1" >&2; echo "hint: see $0 --help" >&2; exit 2 ;;
  esac
done

for value in "$manifest_dir" "$state_dir"; do
  case "$value" in
    /*) ;;
    *) echo "error: $value is not an absolute path" >&2
       echo "hint: systemd needs absolute paths" >&2; exit 2 ;;
  esac
  case "$value" in
    *[[:space:]@]*) echo "error: $value contains a space or '@'" >&2
                    echo "hint: choose a path without them" >&2; exit 2 ;;
  esac
done

ignited="$ROOT/.venv/bin/ignited"
if [ -z "$dest_root" ] && [ ! -x "$ignited" ]; then
  echo "error: $ignited does not exist" >&2
  echo "hint: run hack/setup.sh first" >&2
  exit 1
fi
if [ -z "$dest_root" ] && [ "$(id -u)" != 0 ]; then
  echo "error: installing a system service needs root" >&2
  echo "hint: sudo $0 $*" >&2
  exit 1
fi

unit_dir="$dest_root/etc/systemd/system"
mkdir -p "$unit_dir"
tmp="$unit_dir/.ignited.service.tmp"
sed -e "s|@ROOT@|$ROOT|g" -e "s|@IGNITED@|$ignited|g" \
    -e "s|@MANIFEST_DIR@|$manifest_dir|g" -e "s|@STATE_DIR@|$state_dir|g" \
    hack/ignited.service > "$tmp"
chmod 0644 "$tmp"
mv "$tmp" "$unit_dir/ignited.service"
mkdir -p "$dest_root$manifest_dir"
echo "installed $unit_dir/ignited.service (manifests: $manifest_dir, state: $state_dir)"

if [ -z "$dest_root" ]; then
  systemctl daemon-reload
  systemctl enable $now ignited.service
  echo "ignited is enabled${now:+ and started}: systemctl status ignited; journalctl -u ignited"
fi
