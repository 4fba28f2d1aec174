"""The VM use cases (ops/create, start, stop, remove, access) with the real store, the real
supervisor and a fake QEMU at the VMM boundary (tests/unit/conftest.py ``fake_host``)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from ignitevm.api import Kind
from ignitevm.errors import ConflictError, IgniteError, NotFoundError
from ignitevm.ops.create import create_vm
from ignitevm.ops.preflight import PreflightError
from ignitevm.ops.remove import remove_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.start import start_vm
from ignitevm.ops.stop import kill_vm, stop_vm
from ignitevm.ops.vmlist import get_vm, list_vms, vm_dir
from ignitevm.spawn.runtime import is_running, read_runtime
from tests.unit.conftest import FakeHost, wait_for


def _create(host: FakeHost, name: str, **settings: object) -> str:
    vm = build_vm(host.svc, {"image": "img", "kernel": "kern", "name": name, **settings})
    return create_vm(host.svc, vm).metadata.uid


def test_create_records_the_vmm_and_makes_the_disk(fake_host: FakeHost) -> None:
    uid = _create(fake_host, "a")
    vm = get_vm(fake_host.svc, "a").vm
    assert vm.status.vmm == "qemu" and not vm.status.running  # chosen once, at create
    assert vm.status.image.id == fake_host.image.status.oci_source.id
    assert (vm_dir(fake_host.svc, vm) / "disk.qcow2").exists()
    with pytest.raises(ConflictError, match="already exists"):
        _create(fake_host, "a")
    assert [v.vm.metadata.uid for v in list_vms(fake_host.svc)] == [uid]


def test_start_stop_start_kill_rm(fake_host: FakeHost) -> None:
    svc = fake_host.svc
    _create(fake_host, "b", memory="256MB")
    started = start_vm(svc, "b", timeout=30)
    d = vm_dir(svc, started)
    assert started.status.running and started.status.pid and is_running(d)
    assert started.status.network.plugin == "none"
    plan = json.loads((d / "launch.json").read_text())
    assert plan["machine"]["memory_mib"] == 256 and plan["vmm"] == "qemu"
    with pytest.raises(ConflictError, match="already running"):
        start_vm(svc, "b")
    stopped = stop_vm(svc, "b", timeout=10)  # the fake guest obeys the power button
    assert not stopped.status.running and stopped.status.pid is None and not is_running(d)
    assert read_runtime(d) is None and not (d / "qmp.sock").exists()
    start_vm(svc, "b", timeout=30)
    assert not kill_vm(svc, "b").status.running
    assert not is_running(d)
    remove_vm(svc, "b")
    assert not d.exists()
    with pytest.raises(NotFoundError):
        get_vm(svc, "b")


def test_rm_of_a_running_vm_needs_force(fake_host: FakeHost) -> None:
    _create(fake_host, "c")
    vm = start_vm(fake_host.svc, "c", timeout=30)
    with pytest.raises(ConflictError, match="is running"):
        remove_vm(fake_host.svc, "c")
    remove_vm(fake_host.svc, "c", force=True)
    assert not vm_dir(fake_host.svc, vm).exists()


def test_a_killed_supervisor_is_cleaned_up_by_the_next_start(fake_host: FakeHost) -> None:
    svc = fake_host.svc
    _create(fake_host, "d")
    vm = start_vm(svc, "d", timeout=30)
    d = vm_dir(svc, vm)
    first = read_runtime(d)
    assert first is not None and first.vmm_pid is not None
    os.kill(first.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not is_running(d))
    assert not get_vm(svc, "d").running  # the lock is the truth, at once
    assert read_runtime(d) is not None  # the record a cleanup needs
    again = start_vm(svc, "d", timeout=30)
    assert again.status.running and again.status.pid != first.supervisor_pid


def test_start_refuses_missing_kernel_and_unknown_plugin(fake_host: FakeHost) -> None:
    svc = fake_host.svc
    _create(fake_host, "e")
    with pytest.raises(IgniteError, match="unknown network plugin 'carrier'"):
        start_vm(svc, "e", network_plugin="carrier")
    svc.store.delete(Kind.KERNEL, fake_host.kernel.metadata.uid)
    with pytest.raises(IgniteError, match=r"kernel of VM e .* is no longer stored"):
        start_vm(svc, "e")
    assert not get_vm(svc, "e").running


def test_ignored_preflight_checks_let_the_start_through(fake_host: FakeHost) -> None:
    """A busy host port fails preflight (HostPorts); ignored, the start goes on (the fake
    QEMU binds nothing)."""
    import socket

    from ignitevm.gitops.opsbridge import ServicesOps

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _create(fake_host, "f", ports=[f"127.0.0.1:{port}:80"], network_plugin="user")
        with pytest.raises(PreflightError, match=r"\[ERROR HostPorts\]"):
            start_vm(fake_host.svc, "f", network_plugin="user")
        ops = ServicesOps(fake_host.svc, "user", ignore_preflight=frozenset({"HostPorts"}))
        ops.start(get_vm(fake_host.svc, "f").vm.metadata.uid)
    assert get_vm(fake_host.svc, "f").running


def test_exec_target_of_a_user_networking_vm(fake_host: FakeHost) -> None:
    """--ssh on user networking gets a loopback SSH forward; exec/cp/ssh reach it through it,
    with the VM's own key, its pinned host key and its shared connection."""
    from ignitevm.ops.access import require_target

    svc = fake_host.svc
    _create(fake_host, "g", ssh=True)
    with pytest.raises(IgniteError, match="VM g is not running"):
        require_target(svc, "g")
    vm = start_vm(svc, "g", network_plugin="user", wait=False)
    d = vm_dir(svc, vm)
    target = require_target(svc, "g")
    forward = read_runtime(d).ports[0]  # type: ignore[union-attr]
    assert (target.host, target.port) == ("127.0.0.1", forward.host_port)
    assert forward.vm_port == 22
    argv = target.argv(tty=False)
    assert argv[-1] == "root@127.0.0.1" and "-T" in argv
    assert str(d / "id_ed25519") in argv and f"UserKnownHostsFile={d / 'known_hosts'}" in argv
    assert f"HostKeyAlias=ignite-{vm.metadata.uid}" in argv
    assert any(a.startswith("ControlPath=") for a in argv)
    other = require_target(svc, "g", identity=Path("/nonexistent/key"), any_key=True)
    assert other.control is None  # -i bypasses the VM's shared connection


def _vmm_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_damaged_runtime_json_does_not_hide_or_keep_a_vm(fake_host: FakeHost) -> None:
    svc = fake_host.svc
    _create(fake_host, "h")
    d = vm_dir(svc, start_vm(svc, "h", timeout=30))
    vmm = read_runtime(d).vmm_pid  # type: ignore[union-attr]
    (d / "runtime.json").write_text('{"supervisor_pid": ')  # truncated
    assert get_vm(svc, "h").running  # the lock says so
    remove_vm(svc, "h", force=True)
    assert not d.exists()
    wait_for(lambda: _vmm_gone(vmm))


def test_a_vm_with_damaged_metadata_is_listed_and_removed(fake_host: FakeHost) -> None:
    svc = fake_host.svc
    uid = _create(fake_host, "i")
    d = vm_dir(svc, start_vm(svc, "i", timeout=30))
    vmm = read_runtime(d).vmm_pid  # type: ignore[union-attr]
    (d / "metadata.json").write_text("{not json")
    (view,) = [v for v in list_vms(svc) if v.vm.metadata.uid == uid]
    assert view.damaged and view.running
    with pytest.raises(ConflictError, match="damaged") as err:
        remove_vm(svc, uid)
    assert f"ignite rm -f {uid}" in (err.value.hint or "")
    remove_vm(svc, uid[:6], force=True)
    assert not d.exists() and [v for v in list_vms(svc) if v.vm.metadata.uid == uid] == []
    wait_for(lambda: _vmm_gone(vmm))


def test_rm_f_of_a_vm_whose_directory_was_deleted(fake_host: FakeHost) -> None:
    import shutil

    svc = fake_host.svc
    uid = _create(fake_host, "j")
    d = vm_dir(svc, start_vm(svc, "j", timeout=30))
    rt = read_runtime(d)
    assert rt is not None and rt.vmm_pid
    shutil.rmtree(d)  # under the running VM
    with pytest.raises(NotFoundError):
        remove_vm(svc, uid)  # without -f it is just not there
    remove_vm(svc, uid, force=True)
    wait_for(lambda: _vmm_gone(rt.vmm_pid or 0) and _vmm_gone(rt.supervisor_pid))
    assert not d.exists()
