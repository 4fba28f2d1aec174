#!/usr/bin/env bash
# The main job: build the default image, import it and Debian's kernel, boot a VM, show it
# working (ps, its console), then stop and remove it. Run as root after hack/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(pwd)/.venv/bin:$PATH"
name=demo-$$
archive=_out/images/default.oci.tar

echo "== building the default image (busybox + dropbear, from Debian packages)"
python images/build.py --output "oci-archive:$archive"
echo "== importing it and Debian's kernel"
ignite image import --name ignitevm/default:latest "oci-archive:$archive"
ignite kernel import apt:linux-image-amd64
ignite image ls
ignite kernel ls

cleanup() { ignite rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
net=${IGNITE_DEMO_NETWORK:-cni}     # cni: Ignite's ignite0 bridge (10.61.0.0/16); or user, none
echo "== ignite run ignitevm/default --name $name --ssh --network-plugin $net"
time ignite run ignitevm/default:latest --name "$name" --memory 256MB --size 2GB --ssh \
  --network-plugin "$net"
ignite ps
if [ "$net" != none ]; then
  echo "== ignite exec $name (over SSH with the VM's own key)"
  ignite exec "$name" 'uname -a; df -h /; ip -4 -o addr show eth0'
fi
echo "== its console (ignite logs $name)"
ignite logs "$name" | grep -v '^\s*$' | tail -n 8
echo "== ignite stop $name (ACPI power button)"
ignite stop "$name"
ignite logs "$name" | tail -n 4
ignite ps -a
ignite rm "$name"
echo "== demo done"
