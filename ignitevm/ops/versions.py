"""Versions of the VMMs and tools ignite found on this host."""

from __future__ import annotations

import functools
import os
import re

from ignitevm import proc


def _first_version(argv: list[str]) -> str:
    try:
        text = proc.output(argv, check=False, timeout=10)
    except Exception as exc:  # a missing or broken binary is information, not a failure
        return f"not found ({exc})"
    match = re.search(r"\d+\.\d+(\.\d+)?", text)
    return match.group(0) if match else text.strip().splitlines()[0] if text.strip() else "?"


def collect_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name, argv in (
        ("qemu", ["qemu-system-x86_64", "--version"]),
        ("firecracker", ["firecracker", "--version"]),
    ):
        if proc.find_tool(argv[0]) is None:
            versions[name] = "not found"
        else:
            versions[name] = _first_version([proc.find_tool(argv[0]) or argv[0], *argv[1:]])
    return versions


def vmm_version(vmm: str) -> str:
    """The version of ``vmm`` (qemu | firecracker) found here, as its --version prints it."""
    binary = {"qemu": "qemu-system-x86_64", "firecracker": "firecracker"}.get(vmm, vmm)
    path = proc.find_tool(binary)
    if not path:
        return "not found"
    st = os.stat(path)
    return _version_of(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _version_of(path: str, mtime_ns: int, size: int) -> str:
    """Asked once per binary as it is (a restore asks at create and at start, a fork per VM)."""
    return _first_version([path, "--version"])
