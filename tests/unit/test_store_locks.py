"""The "running" lock across processes, and the store's view of it."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from ignitevm.api import VM, Kind, ObjectMeta, new_uid
from ignitevm.errors import ConflictError
from ignitevm.store import Store, hold_lock, is_locked


def _holder(path: str, conn: Connection) -> None:
    fd = hold_lock(Path(path))
    conn.send(fd)
    conn.recv()  # hold until told to go


def _try_hold(path: str) -> str:
    try:
        fd = hold_lock(Path(path))
    except ConflictError as exc:
        return f"conflict: {exc}"
    os.close(fd)
    return "taken"


def test_lock_across_processes(tmp_path: Path) -> None:
    directory = tmp_path / "vm"
    directory.mkdir()
    assert not is_locked(directory)
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_holder, args=(str(directory), child))
    proc.start()
    try:
        parent.recv()
        assert is_locked(directory)
        assert is_locked(directory)  # probing does not disturb the holder
        with ctx.Pool(1) as pool:
            result = pool.apply(_try_hold, (str(directory),))
        assert result.startswith("conflict: ") and str(directory) in result
        with pytest.raises(ConflictError):
            os.close(hold_lock(directory))
    finally:
        parent.send("go")
        proc.join(timeout=30)
    # the holder exited: the kernel released its lock, however it ended
    assert not is_locked(directory)
    fd = hold_lock(directory)
    try:
        assert is_locked(directory)
    finally:
        os.close(fd)
    assert not is_locked(directory)


def test_lock_released_by_kill(tmp_path: Path) -> None:
    directory = tmp_path / "vm"
    directory.mkdir()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_holder, args=(str(directory), child))
    proc.start()
    try:
        parent.recv()
        assert is_locked(directory)
    finally:
        proc.kill()
        proc.join(timeout=30)
    assert not is_locked(directory)


def test_missing_directory_is_not_locked(tmp_path: Path) -> None:
    assert not is_locked(tmp_path / "absent")
    with pytest.raises(FileNotFoundError):
        hold_lock(tmp_path / "absent")


def test_store_running_and_meta_lock_are_independent(tmp_path: Path) -> None:
    store = Store(tmp_path)
    vm = VM(metadata=ObjectMeta(name="r", uid=new_uid()))
    store.save(vm)
    uid = vm.metadata.uid
    assert not store.is_running(uid)
    fd = hold_lock(store.object_dir(Kind.VM, uid))
    try:
        assert store.is_running(uid)

        def mark(v: VM) -> VM:
            v.status.running = True
            return v

        # the supervisor holds the directory lock and still writes status
        store.update(Kind.VM, uid, mark)
        assert store.require(Kind.VM, uid).status.running
    finally:
        os.close(fd)
    assert not store.is_running(uid)


def test_hold_lock_waits_out_a_probe(tmp_path: Path) -> None:
    import fcntl
    import threading

    directory = tmp_path / "vm"
    directory.mkdir()
    # a `ps` probing at the very moment the supervisor takes the lock
    probe = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.05, os.close, (probe,)).start()
    fd = hold_lock(directory)
    try:
        assert is_locked(directory)
    finally:
        os.close(fd)
