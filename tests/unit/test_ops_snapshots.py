"""Snapshots, restores, forks, pause and suspend through ops/ with the fake QEMU of
tests/unit/conftest.py (it migrates to and from the fds it is given and answers the agent):
the records, the disk layers, the refusals and the undoing of a snapshot that did not finish.
The real machine is in tests/integration/test_snapshots.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ignitevm.api import Kind
from ignitevm.errors import ConflictError, IgniteError, ValidationError
from ignitevm.layout import SnapshotFiles, VMFiles
from ignitevm.ops.create import create_vm
from ignitevm.ops.fork import fork_names, fork_vm
from ignitevm.ops.guestexec import agent_exec
from ignitevm.ops.pausing import pause_vm, suspend_vm, unpause_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.snapshots import create_snapshot, finish_pending, remove_snapshot
from ignitevm.ops.start import start_vm
from ignitevm.ops.stop import stop_vm
from ignitevm.ops.vmlist import get_vm, vm_dir
from ignitevm.records import write_record
from ignitevm.store.locks import try_file_lock
from tests.unit.conftest import FakeHost


def _run(host: FakeHost, name: str, **settings: object) -> Path:
    vm = build_vm(host.svc, {"image": "img", "kernel": "kern", "name": name, **settings})
    uid = create_vm(host.svc, vm).metadata.uid
    start_vm(host.svc, uid, timeout=30)
    return host.svc.store.object_dir(Kind.VM, uid)


def _argv(d: Path) -> list[str]:
    return list(json.loads((d / "fake-qemu-argv.json").read_text()))


def test_snapshot_create_saves_and_the_vm_runs_on_over_a_new_layer(fake_host: FakeHost) -> None:
    d = _run(fake_host, "src")
    old_top = os.stat(d / VMFiles.DISK).st_ino
    snap, figures = create_snapshot(fake_host.svc, "src", name="s1")
    sd = fake_host.svc.store.object_dir(Kind.SNAPSHOT, snap.metadata.uid)
    assert (sd / SnapshotFiles.STATE).read_bytes() == b"FAKE-STATE"
    assert (sd / SnapshotFiles.MEMORY).stat().st_size == 512 << 20  # sparse: the RAM's size
    assert os.stat(sd / SnapshotFiles.LAYER).st_ino == old_top  # the frozen layer
    assert os.stat(d / VMFiles.DISK).st_ino != old_top  # the VM writes a new one
    assert not (sd / SnapshotFiles.DONE).exists() and not (d / VMFiles.SNAPSHOT_PENDING).exists()
    assert figures["state_bytes"] == len(b"FAKE-STATE")
    view = get_vm(fake_host.svc, "src")
    assert view.running and view.vm.status.snapshot == snap.metadata.uid
    m = snap.status.machine
    assert (m.cpus, m.memory.mib(), m.vmm_version) == (1, 512, "7.2.99")
    assert snap.spec.source.name == "src" and snap.spec.source.image == "img"
    with pytest.raises(ConflictError, match="already exists"):
        create_snapshot(fake_host.svc, "src", name="s1")


def test_a_vm_from_a_snapshot_resumes_it_once_then_boots(fake_host: FakeHost) -> None:
    _run(fake_host, "src")
    snap, _ = create_snapshot(fake_host.svc, "src", name="s1")
    d = _run(fake_host, "copy", snapshot="s1")
    argv = _argv(d)
    assert argv[argv.index("-incoming") + 1] == "defer"
    assert any("share=off" in a for a in argv)  # the sealed image, copy-on-write
    vm = get_vm(fake_host.svc, "copy").vm
    assert vm.status.snapshot == snap.metadata.uid and vm.status.resume is None
    assert vm.spec.image.oci == "img" and vm.spec.memory.mib() == 512
    stop_vm(fake_host.svc, "copy", force=True)
    start_vm(fake_host.svc, "copy", timeout=30)  # the second start boots
    assert "-incoming" not in _argv(d)


def test_a_restore_that_does_not_fit_is_refused_before_anything_is_stored(
    fake_host: FakeHost,
) -> None:
    _run(fake_host, "src")
    create_snapshot(fake_host.svc, "src", name="s1")
    before = {v.metadata.uid for v in fake_host.svc.store.list(Kind.VM)}
    vm = build_vm(fake_host.svc, {"snapshot": "s1", "name": "big", "memory": "1GB"})
    with pytest.raises(ValidationError, match="snapshot s1 is a machine with memory"):
        create_vm(fake_host.svc, vm)
    vm = build_vm(fake_host.svc, {"snapshot": "s1", "name": "net", "network_plugin": "user"})
    with pytest.raises(ValidationError, match="on the none network"):
        create_vm(fake_host.svc, vm)
    assert {v.metadata.uid for v in fake_host.svc.store.list(Kind.VM)} == before


def test_a_damaged_state_is_a_clear_start_error(fake_host: FakeHost) -> None:
    _run(fake_host, "src")
    snap, _ = create_snapshot(fake_host.svc, "src", name="s1")
    sd = fake_host.svc.store.object_dir(Kind.SNAPSHOT, snap.metadata.uid)
    (sd / SnapshotFiles.STATE).write_bytes(b"garbage")
    vm = build_vm(fake_host.svc, {"snapshot": "s1", "name": "copy"})
    uid = create_vm(fake_host.svc, vm).metadata.uid
    with pytest.raises(IgniteError, match="cannot resume") as err:
        start_vm(fake_host.svc, uid, timeout=30)
    assert err.value.hint and "does not fit" in err.value.hint
    assert not get_vm(fake_host.svc, "copy").running


def test_rm_of_a_snapshot_in_use_is_refused_unless_forced(fake_host: FakeHost) -> None:
    _run(fake_host, "src")
    create_snapshot(fake_host.svc, "src", name="s1")
    with pytest.raises(ConflictError, match="in use by VM src"):
        remove_snapshot(fake_host.svc, "s1")
    remove_snapshot(fake_host.svc, "s1", force=True)
    assert fake_host.svc.store.list(Kind.SNAPSHOT) == []


def test_a_snapshot_the_supervisor_did_not_finish_is_undone(fake_host: FakeHost) -> None:
    """kill -9 of the CLI or the supervisor before the supervisor wrote ``done``: the next
    command puts the VM's own layer back on top and lists no snapshot."""
    from ignitevm.ops.snapshots import Pending

    d = _run(fake_host, "src")
    vm = get_vm(fake_host.svc, "src").vm
    scratch = fake_host.svc.store.tmp_dir() / "snapshot-x"
    scratch.mkdir()
    top = d / VMFiles.DISK
    os.link(top, scratch / SnapshotFiles.LAYER)  # the supervisor had linked the layer...
    os.replace(top, d / "moved-away")  # ...and swapped in the new one, then died
    (d / VMFiles.NEXT_DISK).write_bytes(b"")
    top.write_bytes(b"new top")
    write_record(d / VMFiles.SNAPSHOT_PENDING, Pending("f" * 16, scratch, "half", ""))
    for busy in (VMFiles.SNAPSHOT_LOCK, VMFiles.SAVE_LOCK):  # a create or a save still runs
        fd = try_file_lock(d / busy)
        assert fd is not None
        try:
            assert finish_pending(fake_host.svc, vm) is None
            assert top.read_bytes() == b"new top" and scratch.exists()  # left to them
        finally:
            os.close(fd)
    assert finish_pending(fake_host.svc, vm) is None
    assert top.read_bytes() != b"new top"  # the old layer is back on top
    assert not scratch.exists() and not (d / VMFiles.SNAPSHOT_PENDING).exists()
    assert fake_host.svc.store.list(Kind.SNAPSHOT) == []


def test_a_full_disk_fails_the_save_and_leaves_the_vm_running_and_no_snapshot(
    fake_host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(fake_host, "src")
    monkeypatch.setenv("FAKE_QEMU_DISK_FULL", "1")
    _run(fake_host, "full")  # a QEMU started with a full disk under its state file
    d = vm_dir(fake_host.svc, get_vm(fake_host.svc, "full").vm)
    layer = (d / VMFiles.DISK).read_bytes()
    with pytest.raises(IgniteError, match="No space left"):
        create_snapshot(fake_host.svc, "full", name="s")
    vm = get_vm(fake_host.svc, "full").vm
    assert vm.status.running and vm.status.snapshot is None
    assert (d / VMFiles.DISK).read_bytes() == layer  # its own layer on top again
    assert not (d / VMFiles.SNAPSHOT_PENDING).exists() and not (d / VMFiles.NEXT_DISK).exists()
    assert fake_host.svc.store.list(Kind.SNAPSHOT) == []
    assert not list(fake_host.svc.store.tmp_dir().glob("snapshot-*"))
    create_snapshot(fake_host.svc, "src", name="s")  # another VM's save is unaffected


def test_pause_unpause_and_suspend_then_start_resumes(fake_host: FakeHost) -> None:
    d = _run(fake_host, "v")
    pause_vm(fake_host.svc, "v")
    assert get_vm(fake_host.svc, "v").vm.status.paused
    unpause_vm(fake_host.svc, "v")
    assert not get_vm(fake_host.svc, "v").vm.status.paused
    suspend_vm(fake_host.svc, "v")
    view = get_vm(fake_host.svc, "v")
    assert not view.running and view.vm.status.suspended
    assert (d / VMFiles.SUSPENDED_STATE).exists()
    start_vm(fake_host.svc, "v", timeout=30)
    argv = _argv(d)
    assert "-incoming" in argv and any("share=on" in a for a in argv)  # its own RAM again
    assert not (d / VMFiles.SUSPENDED_STATE).exists()
    assert not get_vm(fake_host.svc, "v").vm.status.suspended
    stop_vm(fake_host.svc, "v", force=True)
    with pytest.raises(ConflictError, match="not running"):
        pause_vm(fake_host.svc, "v")


def test_stop_of_a_suspended_vm_powers_it_off(fake_host: FakeHost) -> None:
    d = _run(fake_host, "v")
    suspend_vm(fake_host.svc, "v")
    stop_vm(fake_host.svc, "v")
    assert not (d / VMFiles.SUSPENDED_STATE).exists()
    start_vm(fake_host.svc, "v", timeout=30)
    assert "-incoming" not in _argv(d)


def test_snapshots_of_vms_with_shares_are_refused(fake_host: FakeHost, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _run(fake_host, "v", shares=[f"{src}:/src"])
    with pytest.raises(ValidationError, match="--share"):
        create_snapshot(fake_host.svc, "v")
    with pytest.raises(ValidationError, match="--share"):
        suspend_vm(fake_host.svc, "v")
    assert get_vm(fake_host.svc, "v").running


def test_fork_makes_running_copies_that_share_the_first_ones_memory(fake_host: FakeHost) -> None:
    _run(fake_host, "src")
    result = fork_vm(fake_host.svc, "src", 3)
    assert [v.metadata.name for v in result.vms] == ["src-1", "src-2", "src-3"]
    assert not result.failed
    from ignitevm.spawn.runtime import read_runtime

    assert all(get_vm(fake_host.svc, v.metadata.uid).running for v in result.vms)
    memory = set()
    for vm in result.vms:  # one sealed memfd, mapped by all three
        st = read_runtime(vm_dir(fake_host.svc, vm))
        assert st is not None and st.memory_fd is not None
        memory.add(os.stat(f"/proc/{st.supervisor_pid}/fd/{st.memory_fd}").st_ino)
        assert "share=off" in " ".join(_argv(vm_dir(fake_host.svc, vm)))
    assert len(memory) == 1


def test_fork_names_skip_taken_ones_and_follow_the_rule() -> None:
    assert fork_names({"web-1", "web-3"}, "web-", 3) == ["web-2", "web-4", "web-5"]
    with pytest.raises(ValidationError, match="--name-prefix"):
        fork_names(set(), "Bad:", 1)


def test_exec_through_the_agent(fake_host: FakeHost) -> None:
    d = _run(fake_host, "v")
    out: list[bytes] = []
    code = agent_exec(d, "echo hello", on_stdout=out.append, on_stderr=out.append)
    assert code == 0 and out == [b"hello\n"]


def test_a_manifest_may_name_a_snapshot_as_its_source(fake_host: FakeHost, tmp_path: Path) -> None:
    """ignited (gitops/opsbridge.py) makes a fleet's VMs from a warm snapshot."""
    from ignitevm.api import VM, load_object
    from ignitevm.gitops.opsbridge import ServicesOps

    _run(fake_host, "src")
    create_snapshot(fake_host.svc, "src", name="warm")
    path = tmp_path / "web.yaml"
    path.write_text("apiVersion: ignite.weave.works/v1alpha4\nkind: VM\n"
                    "metadata: {name: web}\nspec: {snapshot: warm}\n")  # fmt: skip
    vm = load_object(path)
    assert isinstance(vm, VM)
    ops = ServicesOps(fake_host.svc)
    ops.create(vm)
    uid = get_vm(fake_host.svc, "web").vm.metadata.uid
    ops.start(uid)
    assert "-incoming" in _argv(vm_dir(fake_host.svc, get_vm(fake_host.svc, uid).vm))
