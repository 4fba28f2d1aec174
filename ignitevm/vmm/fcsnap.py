"""Firecracker's pause, snapshot and load through its API (docs/snapshots.md "Firecracker").

A Firecracker VM is saved with ``PATCH /vm`` (Paused), ``PUT /snapshot/create`` (a full
snapshot: the device state and the guest memory, two files Firecracker writes itself) and
resumed in a fresh Firecracker with ``PUT /snapshot/load`` before any other configuration,
with ``network_overrides`` (Firecracker v1.12) naming this run's taps. A jailed Firecracker
writes and reads those files inside its chroot; the supervisor moves them out and links them
in. Firecracker runs guests only with hardware KVM: on these hosts the calls are exercised
against the API, not a running guest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ignitevm.errors import IgniteError
from ignitevm.network.base import Attachment
from ignitevm.vmm.base import Resume, SaveRequest, SaveResult
from ignitevm.vmm.fcapi import APICall, FirecrackerClient

STATE_INSIDE = "snapshot.state"  # the file names in a jailed Firecracker's chroot
MEMORY_INSIDE = "snapshot.mem"


def pause_call(paused: bool) -> APICall:
    return APICall("PATCH", "/vm", {"state": "Paused" if paused else "Resumed"})


def create_call(state: str, memory: str) -> APICall:
    body = {"snapshot_type": "Full", "snapshot_path": state, "mem_file_path": memory}
    return APICall("PUT", "/snapshot/create", body)


def load_call(state: str, memory: str, att: Attachment) -> APICall:
    """The load of a saved machine, resumed at once, its NICs on this run's taps."""
    body: dict[str, object] = {
        "snapshot_path": state,
        "mem_backend": {"backend_type": "File", "backend_path": memory},
        "resume_vm": True,
    }
    if att.tap is not None:
        nics = [("eth0", att.tap), *((n.guest_name, n.tap) for n in att.extra_nics)]
        body["network_overrides"] = [{"iface_id": i, "host_dev_name": t} for i, t in nics]
    return APICall("PUT", "/snapshot/load", body)


def save(client: FirecrackerClient, req: SaveRequest, chroot: Path | None) -> SaveResult:
    """Pause, snapshot into ``req.state``/``req.memory`` (through ``chroot`` when jailed),
    resume unless ``req.stop``. The machine runs on after an error."""
    if req.freeze is not None:
        raise IgniteError(
            "a Firecracker VM's disk is a raw file, which cannot be frozen in O(1)",
            hint="snapshots need a VM run by QEMU; ignite suspend works with either",
        )
    if chroot is None:
        state, memory = str(req.state), str(req.memory)
    else:
        state, memory = f"/{STATE_INSIDE}", f"/{MEMORY_INSIDE}"
    started = time.monotonic()
    client.call(pause_call(True))
    try:
        client.call(create_call(state, memory))
        if chroot is not None:
            for inside, out in ((STATE_INSIDE, req.state), (MEMORY_INSIDE, req.memory)):
                os.replace(chroot / inside, out)  # the same filesystem: vm_dir's
                os.chown(out, 0, 0)
                os.chmod(out, 0o600)
    except BaseException:
        client.call(pause_call(False))
        raise
    paused = time.monotonic() - started
    if not req.stop:
        client.call(pause_call(False))
    return SaveResult(paused, os.stat(req.state).st_size, os.stat(req.memory).st_blocks * 512)


def link_into(chroot: Path, resume: Resume, uid: int) -> tuple[str, str]:
    """The saved files in a jailed Firecracker's chroot, readable by its ``uid`` only (an ACL
    entry: the files stay root's); their paths as it sees them."""
    from ignitevm.fsutil import grant_read

    for source, name in ((resume.state, STATE_INSIDE), (resume.memory, MEMORY_INSIDE)):
        os.link(source, chroot / name)
        grant_read(chroot / name, uid)
    return f"/{STATE_INSIDE}", f"/{MEMORY_INSIDE}"
