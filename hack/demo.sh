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
echo "== ignite run ignitevm/default --name $name"
time ignite run ignitevm/default:latest --name "$name" --memory 256MB --size 2GB \
  --network-plugin "${IGNITE_DEMO_NETWORK:-none}"
ignite ps
echo "== its console (ignite logs $name)"
sleep 2
ignite logs "$name" | grep -v '^\s*$' | tail -n 15
echo "== ignite stop $name (ACPI power button)"
ignite stop "$name"
ignite logs "$name" | tail -n 4
ignite ps -a
ignite rm "$name"
echo "== demo done"
