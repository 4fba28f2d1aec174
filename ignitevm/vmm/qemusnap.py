"""Saving and resuming a QEMU machine over QMP (docs/snapshots.md): the device state goes
through QEMU's migration to a file descriptor; the guest's RAM is a shared memfd that the
migration skips (``x-ignore-shared``) and the caller copies; the disk's copy-on-write layer is
frozen under a new one (``blockdev-snapshot``). Every file QEMU writes or reads here is an fd
handed over QMP: a jailed QEMU opens nothing and may not exec (``spawn=deny``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ignitevm.errors import IgniteError
from ignitevm.vmm.qmp import QMPClient, QMPError

MIGRATION_TIMEOUT = 60.0


def _wait_migration(qmp: QMPClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = qmp.execute("query-migrate")
        status = info.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise IgniteError(f"QEMU's migration {status}: {info.get('error-desc', '')}".strip())
        if time.monotonic() > deadline:
            raise IgniteError(f"QEMU's migration did not complete in {timeout:g} s")
        time.sleep(0.002)


def _capabilities(ignore_shared: bool) -> dict[str, object]:
    return {"capabilities": [{"capability": "x-ignore-shared", "state": ignore_shared}]}


def resume(
    qmp_path: Path, state: Path, *, ignore_shared: bool = True, timeout: float = MIGRATION_TIMEOUT
) -> None:
    """Load the device state ``state`` into a QEMU started with ``-incoming defer`` (its RAM
    already mapped from the image; or, ``ignore_shared`` false, in the stream too) and let
    it run."""
    fd = os.open(state, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with QMPClient(qmp_path, timeout=timeout) as qmp:
            qmp.execute("getfd", {"fdname": "state"}, fd=fd)
            qmp.execute("migrate-set-capabilities", _capabilities(ignore_shared))
            qmp.execute("migrate-incoming", {"uri": "fd:state"})
            _wait_migration(qmp, timeout)
            qmp.execute("cont")
    except QMPError as exc:
        raise IgniteError(
            f"cannot resume from {state}: {exc.message}",
            hint="the saved state does not fit this machine (or is damaged)",
        ) from None
    finally:
        os.close(fd)


@contextmanager
def paused(qmp_path: Path, *, resume: bool = True, timeout: float = 10.0) -> Iterator[QMPClient]:
    """The machine's vCPUs stopped for the block; running again after it (``resume``; on an
    error always), whatever happens."""
    with QMPClient(qmp_path, timeout=timeout) as qmp:
        running = qmp.execute("query-status").get("running", False)
        if running:
            qmp.execute("stop")
        ok = False
        try:
            yield qmp
            ok = True
        finally:
            if running and (resume or not ok):
                qmp.execute("cont")


def save_state(
    qmp: QMPClient, state_fd: int, *, ignore_shared: bool = True,
    timeout: float = MIGRATION_TIMEOUT,
) -> None:  # fmt: skip
    """The device state of a stopped machine to ``state_fd``; its RAM, shared, is skipped
    (``ignore_shared``), else streamed too."""
    qmp.execute("getfd", {"fdname": "state"}, fd=state_fd)
    qmp.execute("migrate-set-capabilities", _capabilities(ignore_shared))
    qmp.execute("migrate", {"uri": "fd:state"})
    _wait_migration(qmp, timeout)


def freeze_disk(qmp: QMPClient, new_top: Path, device: str = "disk0") -> None:
    """Put the new, empty copy-on-write layer ``new_top`` (made by the caller, backed by the
    current one) over the root disk: the old layer stays unchanged from now on."""
    node = next(
        b["inserted"]["node-name"] for b in qmp.execute("query-block")
        if b.get("device") == device and "inserted" in b
    )  # fmt: skip
    fd = os.open(new_top, os.O_RDWR | os.O_CLOEXEC)
    try:
        added = qmp.execute("add-fd", fd=fd)
    finally:
        os.close(fd)
    fdset = added["fdset-id"]
    overlay = f"top{fdset}"  # auto-made node names ("#block139") are no prefix
    qmp.execute("blockdev-add", {
        "driver": "qcow2", "node-name": overlay, "backing": None,
        "file": {"driver": "file", "filename": f"/dev/fdset/{fdset}", "locking": "off"},
    })  # fmt: skip
    qmp.execute("blockdev-snapshot", {"node": node, "overlay": overlay})
