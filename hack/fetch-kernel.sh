#!/bin/sh
# Download Debian's current kernel package (the dependency of linux-image-amd64) into OUTDIR
# and print the path of the .deb. Idempotent: an existing download is reused.
# Usage: hack/fetch-kernel.sh OUTDIR [META-PACKAGE]
set -eu
outdir=${1:?usage: fetch-kernel.sh OUTDIR [linux-image-amd64]}
meta=${2:-linux-image-amd64}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
    echo "fetch-kernel: cannot resolve $meta (run apt-get update?)" >&2
    exit 1
fi
existing=$(ls "$outdir"/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
if [ -n "$existing" ]; then
    echo "$existing"
    exit 0
fi
# apt-get download writes into the current directory; a partial file never gets the final name.
tmp=$(mktemp -d "$outdir/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg" >&2)
deb=$(ls "$tmp"/*.deb | head -n1)
mv "$deb" "$outdir/"
echo "$outdir/$(basename "$deb")"
