"""The state directory store: save, list, find, require, update, delete, atomicity, concurrency."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ignitevm.api import VM, Image, Kernel, Kind, ObjectMeta, Size, new_uid
from ignitevm.errors import AmbiguousError, IgniteError, NotFoundError, ValidationError
from ignitevm.store import Store, resolve_state_dir

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_vm(name: str, uid: str | None = None, minutes: int = 0) -> VM:
    vm = VM(
        metadata=ObjectMeta(
            name=name, uid=uid or new_uid(), created=T0 + timedelta(minutes=minutes)
        )
    )
    vm.spec.image.oci = "base:latest"
    return vm


def test_save_and_list(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    assert store.list(Kind.VM) == []  # nothing created yet
    a, b = make_vm("b-second", minutes=2), make_vm("a-first", minutes=1)
    store.save(a)
    store.save(b)
    assert [v.metadata.name for v in store.list(Kind.VM)] == ["a-first", "b-second"]
    assert store.list(Kind.IMAGE) == []
    path = tmp_path / "state" / "vm" / a.metadata.uid / "metadata.json"
    data = json.loads(path.read_text())
    assert data["kind"] == "VM" and data["metadata"]["name"] == "b-second"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert store.exists(Kind.VM, a.metadata.uid)
    # no temp files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == [".meta.lock", "metadata.json"]


def test_kinds_live_apart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    uid = new_uid()
    store.save(Image(metadata=ObjectMeta(name="alpine:3.19", uid=uid)))
    store.save(Kernel(metadata=ObjectMeta(name="debian-6.1", uid=new_uid())))
    assert (tmp_path / "image" / uid / "metadata.json").is_file()
    images = store.list(Kind.IMAGE)
    assert [type(i) for i in images] == [Image]
    assert store.require(Kind.IMAGE, "alpine:3.19").metadata.uid == uid
    assert store.find(Kind.VM, "alpine:3.19") is None
    assert store.require(Kind.KERNEL, "debian-6.1").kind == "Kernel"


def test_find_order_and_ambiguity(tmp_path: Path) -> None:
    store = Store(tmp_path)
    one = make_vm("one", uid="abc0000000000001")
    two = make_vm("two", uid="abc0000000000002")
    # a VM whose name is another VM's uid prefix: the exact name wins over the prefix
    tricky = make_vm("abc", uid="ffff000000000000")
    for vm in (one, two, tricky):
        store.save(vm)
    assert store.find(Kind.VM, "abc0000000000002") == two  # exact uid
    assert store.find(Kind.VM, "one") == one  # exact name
    assert store.find(Kind.VM, "abc") == tricky  # exact name before uid prefix
    assert store.find(Kind.VM, "ffff") == tricky  # uid prefix
    assert store.find(Kind.VM, "nothing") is None
    assert store.find(Kind.VM, "") is None
    with pytest.raises(AmbiguousError) as exc:
        store.find(Kind.VM, "abc000")
    assert "one (abc0000000000001)" in str(exc.value)
    assert "two (abc0000000000002)" in str(exc.value)
    assert exc.value.hint


def test_duplicate_names_are_ambiguous(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(make_vm("same"))
    store.save(make_vm("same"))
    with pytest.raises(AmbiguousError, match="same"):
        store.find(Kind.VM, "same")


def test_require_not_found_hints(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(NotFoundError) as exc:
        store.require(Kind.VM, "ghost")
    assert str(exc.value) == "vm 'ghost' not found"
    assert exc.value.hint == "see `ignite ps -a`"
    with pytest.raises(NotFoundError) as exc:
        store.require(Kind.IMAGE, "ghost:latest")
    assert exc.value.hint is not None and "ignite image ls" in exc.value.hint


def test_unreadable_metadata_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path)
    good = make_vm("good")
    store.save(good)
    broken_uid, wrong_uid, empty_uid = new_uid(), new_uid(), new_uid()
    for uid, content in (
        (broken_uid, "{not json"),
        (
            wrong_uid,
            json.dumps(
                {
                    "apiVersion": "ignite.weave.works/v1alpha4",
                    "kind": "VM",
                    "metadata": {"name": "x", "uid": "0000000000000000"},
                }
            ),
        ),
    ):
        (tmp_path / "vm" / uid).mkdir()
        (tmp_path / "vm" / uid / "metadata.json").write_text(content)
    (tmp_path / "vm" / empty_uid).mkdir()  # an object being created: no metadata yet
    (tmp_path / "vm" / "not-a-uid").mkdir()
    with caplog.at_level(logging.WARNING):
        assert store.list(Kind.VM) == [good]
    assert broken_uid in caplog.text and wrong_uid in caplog.text
    assert store.find(Kind.VM, broken_uid) is None


def test_update_read_modify_write(tmp_path: Path) -> None:
    store = Store(tmp_path)
    vm = make_vm("u")
    store.save(vm)
    uid = vm.metadata.uid

    def start(v: VM) -> VM:
        v.status.running = True
        v.spec.memory = Size.parse("1GB")
        return v

    updated = store.update(Kind.VM, uid, start)
    assert updated.status.running
    again = store.require(Kind.VM, uid)
    assert again.status.running and again.spec.memory == Size(1 << 30)
    with pytest.raises(NotFoundError):
        store.update(Kind.VM, new_uid(), start)


def test_update_cannot_change_identity(tmp_path: Path) -> None:
    store = Store(tmp_path)
    vm = make_vm("u")
    store.save(vm)

    def rename_uid(v: VM) -> VM:
        return v.model_copy(update={"metadata": ObjectMeta(name="u", uid=new_uid())})

    with pytest.raises(Exception, match="changed its kind or uid"):
        store.update(Kind.VM, vm.metadata.uid, rename_uid)
    assert store.require(Kind.VM, "u").metadata.uid == vm.metadata.uid


def test_save_refuses_bad_uid(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(ValidationError, match="uid"):
        store.save(VM(metadata=ObjectMeta(name="no-uid")))
    with pytest.raises(ValidationError):
        store.object_dir(Kind.VM, "../../etc")


def test_atomic_write_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    vm = make_vm("atomic")
    store.save(vm)
    path = store.object_dir(Kind.VM, vm.metadata.uid) / "metadata.json"
    before = path.read_bytes()

    def failing_replace(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    vm.status.running = True
    with pytest.raises(OSError, match="No space"):
        store.save(vm)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old object is intact
    assert sorted(p.name for p in path.parent.iterdir()) == [".meta.lock", "metadata.json"]


def test_delete(tmp_path: Path) -> None:
    store = Store(tmp_path)
    vm = make_vm("gone")
    store.save(vm)
    (store.object_dir(Kind.VM, vm.metadata.uid) / "disk.qcow2").write_bytes(b"x" * 100)
    store.delete(Kind.VM, vm.metadata.uid)
    assert store.find(Kind.VM, "gone") is None
    assert not store.object_dir(Kind.VM, vm.metadata.uid).exists()
    assert list(store.tmp_dir().iterdir()) == []  # the grave was removed too
    store.delete(Kind.VM, vm.metadata.uid)  # idempotent


def test_delete_finishes_what_a_crash_left(tmp_path: Path) -> None:
    store = Store(tmp_path)
    left = store.tmp_dir() / "deleted-vm-0123456789abcdef-00000000"
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "disk.qcow2").write_bytes(b"x")
    other = store.tmp_dir() / "import-in-progress"
    other.mkdir()
    vm = make_vm("next")
    store.save(vm)
    store.delete(Kind.VM, vm.metadata.uid)
    assert not left.exists()
    assert other.exists()  # only graves are swept


def _bump_labels(root: str, uid: str, worker: int, count: int) -> None:
    store = Store(Path(root))

    def bump(v: VM) -> VM:
        v.metadata.labels[f"w{worker}-{len(v.metadata.labels)}"] = "1"
        return v

    for _ in range(count):
        store.update(Kind.VM, uid, bump)


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    vm = make_vm("busy")
    store.save(vm)
    workers, count = 4, 25
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_bump_labels, args=(str(tmp_path), vm.metadata.uid, w, count))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    labels = store.require(Kind.VM, "busy").metadata.labels
    assert len(labels) == workers * count


def test_resolve_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ignitevm.api import Configuration

    monkeypatch.delenv("IGNITE_STATE_DIR", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert resolve_state_dir(None) == Path("/var/lib/firecracker")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # another user: XDG (test_userpaths.py)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert resolve_state_dir(None) == tmp_path / "data/ignitevm"
    config = Configuration.model_validate({"spec": {"stateDir": str(tmp_path / "cfg")}})
    assert resolve_state_dir(config) == tmp_path / "cfg"
    monkeypatch.setenv("IGNITE_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(config) == tmp_path / "env"


def test_dirs_are_lazy(tmp_path: Path) -> None:
    root = tmp_path / "never"
    store = Store(root)
    store.list(Kind.VM)
    store.find(Kind.IMAGE, "x")
    assert not root.exists()
    assert store.tmp_dir() == root / "tmp" and store.tmp_dir().is_dir()
    assert os.stat(store.tmp_dir()).st_dev == os.stat(root).st_dev


def test_update_of_missing_object_creates_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    uid = new_uid()
    with pytest.raises(NotFoundError):
        store.update(Kind.VM, uid, lambda v: v)
    assert not store.object_dir(Kind.VM, uid).exists()
    with pytest.raises(NotFoundError), store.meta_lock(Kind.VM, uid, create=False):
        pass


def test_saved_object_reads_back_equal(tmp_path: Path) -> None:
    store = Store(tmp_path)
    vm = VM(metadata=ObjectMeta(name="eq", uid=new_uid(), created=datetime.now(UTC)))
    vm.status.start_time = datetime.now()  # naive: local time
    vm.spec.memory = Size.parse("1.5GB")
    store.save(vm)
    assert store.require(Kind.VM, "eq") == vm


def test_unreadable_state_dir_is_an_error(tmp_path: Path) -> None:
    store = Store(tmp_path)
    (tmp_path / "vm").write_text("not a directory")
    with pytest.raises(IgniteError, match="cannot read the state directory") as exc:
        store.list(Kind.VM)
    assert exc.value.hint
