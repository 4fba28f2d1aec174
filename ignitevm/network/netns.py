"""Named network namespaces (``ip netns``) and running Python code inside one.

Python 3.11 has no ``os.setns``; network namespaces are per thread, so ``run_in_netns`` calls
setns(2) through ctypes in a short-lived thread and leaves the rest of the process alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ignitevm import proc
from ignitevm.errors import CommandError, IgniteError

log = logging.getLogger(__name__)

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def netns_exists(name: str) -> bool:
    return netns_path(name).exists()


def add_netns(name: str) -> None:
    proc.run([proc.require_tool("ip"), "netns", "add", name])


def delete_netns(name: str) -> None:
    """Remove the namespace; a namespace that is already gone is fine."""
    if not netns_exists(name):
        return
    try:
        proc.run([proc.require_tool("ip"), "netns", "delete", name])
    except CommandError as exc:
        if netns_exists(name):
            raise
        log.debug("netns %s vanished while deleting it: %s", name, exc)


def _setns(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` in a fresh thread that has entered network namespace ``name``; return its
    result or raise its exception. Sockets and tun fds it opens stay in that namespace."""
    path = netns_path(name)
    if not path.exists():
        raise IgniteError(
            f"network namespace {name} does not exist", hint="is the VM still running?"
        )
    box: dict[str, T] = {}
    errors: list[BaseException] = []

    def target() -> None:
        try:
            _setns(path)
            box["value"] = fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box["value"]
