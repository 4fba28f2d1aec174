"""Guest data and keys are root's: VM and image directories 0711 (traverse only), the files
holding guest data 0600, metadata 0644 (issue 10, defect 2; docs/architecture.md "State
directory"). Modes older versions left are fixed when the VM starts or the image is used."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from signal import SIGKILL

import pytest

from ignitevm.api import Kind
from ignitevm.ops.create import create_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.start import start_vm
from ignitevm.ops.stop import kill_vm
from ignitevm.ops.vmlist import vm_dir
from ignitevm.spawn import runtime
from tests.unit.conftest import FakeHost, wait_for

PRIVATE = ["disk.qcow2", "id_ed25519", "vm-layer.cpio", "initrd", "launch.json",
           "supervisor.log", "console.log"]  # fmt: skip
PUBLIC = ["metadata.json", "runtime.json", "id_ed25519.pub"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(host: FakeHost, tmp_path: Path, name: str) -> Path:
    secret = tmp_path / "secret"
    secret.write_text("the host's secret\n")
    secret.chmod(0o600)
    settings = {"image": "img", "kernel": "kern", "name": name, "ssh": "true",
                "copy_files": [f"{secret}:/etc/secret"]}  # fmt: skip
    vm = create_vm(host.svc, build_vm(host.svc, settings))
    start_vm(host.svc, name, timeout=30)
    return vm_dir(host.svc, vm)


def test_a_vm_and_its_image_keep_guest_data_private(fake_host: FakeHost, tmp_path: Path) -> None:
    d = _run(fake_host, tmp_path, "priv")
    assert _mode(d) == 0o711
    assert {n: _mode(d / n) for n in PRIVATE} == dict.fromkeys(PRIVATE, 0o600)
    assert {n: _mode(d / n) for n in PUBLIC} == dict.fromkeys(PUBLIC, 0o644)
    for sock in ("attach.sock", "qmp.sock"):  # connecting needs write permission
        if (d / sock).exists():
            assert _mode(d / sock) & 0o022 == 0, sock
    image_dir = fake_host.svc.store.object_dir(Kind.IMAGE, fake_host.image.metadata.uid)
    assert (_mode(image_dir), _mode(image_dir / "image.ext4")) == (0o711, 0o600)
    assert _mode(fake_host.svc.store.tmp_dir()) == 0o700
    assert _mode(fake_host.svc.store.cache_dir()) == 0o700


def test_what_an_older_version_left_readable_is_fixed_at_start(
    fake_host: FakeHost, tmp_path: Path
) -> None:
    d = _run(fake_host, tmp_path, "old")
    kill_vm(fake_host.svc, "old")
    for path in [d, *(d / n for n in PRIVATE)]:  # as versions before 0.x made them
        path.chmod(0o755 if path.is_dir() else 0o644)
    start_vm(fake_host.svc, "old", timeout=30)
    assert _mode(d) == 0o711
    assert {n: _mode(d / n) for n in PRIVATE} == dict.fromkeys(PRIVATE, 0o600)


def test_a_reader_who_cannot_open_the_directory_still_sees_the_truth(
    fake_host: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _run(fake_host, tmp_path, "seen")

    def refused(path: Path) -> bool:  # what a non-root user gets from a 0711 directory
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(runtime, "is_locked", refused)
        assert runtime.is_running(d) and runtime.runtime_status(d) is not None
        status = runtime.read_runtime(d)
        assert status is not None
        os.kill(status.supervisor_pid, SIGKILL)  # kill -9: runtime.json stays behind
        wait_for(lambda: not runtime.is_running(d))
        assert runtime.runtime_status(d) is None and (d / "runtime.json").exists()
    # /proc empties a dying process's command line before the kernel closes its files: the
    # lock goes a moment later (a reader's answer is that much early; root asks the lock)
    wait_for(lambda: not runtime.is_running(d))


def test_grant_read_lets_one_uid_read_a_private_file_and_keeps_it_private(
    tmp_path: Path,
) -> None:
    """What a jailed Firecracker (its own uid) needs of an image's 0600 base it opens by path;
    a later restrict() keeps the grant and still refuses everyone else."""
    from ignitevm.fsutil import _acl_entries, grant_read, restrict

    base = tmp_path / "image.ext4"
    base.write_bytes(b"x")
    base.chmod(0o600)
    try:
        grant_read(base, 1900000001)
    except OSError as exc:  # a filesystem without POSIX ACLs
        pytest.skip(f"no ACLs here: {exc}")
    entries = _acl_entries(base)
    assert entries[(0x02, 1900000001)] == 4 and entries[(0x20, 0xFFFFFFFF)] == 0
    base.chmod(0o644)  # as an older version left it
    restrict(tmp_path, 0o711, ("image.ext4",))
    assert _mode(base) & 0o007 == 0 and _acl_entries(base)[(0x10, 0xFFFFFFFF)] == 4
