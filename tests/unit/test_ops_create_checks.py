"""What `ignite create` refuses, before anything is stored (issue 10, defects 3, 7 and 8):
the store is unchanged after a refusal (no VM directory, no object, no name claimed)."""

from __future__ import annotations

from typing import Any

import pytest

from ignitevm.api import VM, Kind
from ignitevm.errors import IgniteError, ValidationError
from ignitevm.ops.create import create_vm
from ignitevm.ops.launchplan import build_launch_plan
from ignitevm.ops.remove import remove_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.vmlist import list_vms, vm_dir
from tests.unit.conftest import FakeHost


def _request(host: FakeHost, **settings: Any) -> VM:
    return build_vm(host.svc, {"image": "img", "kernel": "kern", **settings})


def _assert_store_unchanged(host: FakeHost) -> None:
    vm_root = host.svc.store.root / "vm"
    assert not vm_root.exists() or [p.name for p in vm_root.iterdir() if p.is_dir()] == []
    assert host.svc.store.list(Kind.VM) == []


@pytest.mark.parametrize("name", ["a:b", "x\x1b[31my", "Upper", "_x", "-x", "a" * 64])
def test_bad_names_are_refused_at_create(fake_host: FakeHost, name: str) -> None:
    vm = _request(fake_host)
    vm.metadata.name = name  # as a --config manifest or the library gives it
    with pytest.raises(ValidationError, match=r"metadata\.name") as err:
        create_vm(fake_host.svc, vm)
    assert err.value.hint and "lower-case" in err.value.hint
    assert "\x1b" not in err.value.message  # printed escaped
    _assert_store_unchanged(fake_host)


def test_the_name_flag_is_checked_by_its_setting(fake_host: FakeHost) -> None:
    with pytest.raises(ValidationError, match=r"^--name 'a:b': ':' is not allowed"):
        _request(fake_host, name="a:b")


def test_generated_names_follow_the_rule(fake_host: FakeHost) -> None:
    vm = create_vm(fake_host.svc, _request(fake_host))
    assert "-" in vm.metadata.name and "_" not in vm.metadata.name


def test_a_vm_an_older_version_named_badly_lists_boots_and_goes(fake_host: FakeHost) -> None:
    svc = fake_host.svc
    created = create_vm(svc, _request(fake_host, name="legacy"))
    svc.store.update(Kind.VM, created.metadata.uid, _rename("a:b\x1b[2J"))
    assert [v.vm.metadata.name for v in list_vms(svc)] == ["a:b\x1b[2J"]
    vm = svc.store.require(Kind.VM, "a:b\x1b[2J")
    plan = build_launch_plan(svc, vm, vm_dir(svc, vm), "none", debug=False)
    assert plan.name == "a-b--2j" and "ignite.hostname=a-b--2j" in plan.machine.cmdline
    remove_vm(svc, "a:b\x1b[2J")
    assert svc.store.list(Kind.VM) == []


def _rename(name: str) -> Any:
    def change(vm: VM) -> VM:
        vm.metadata.name = name
        return vm

    return change


def test_ps_prints_control_characters_escaped() -> None:
    import click
    from click.testing import CliRunner

    from ignitevm.cli.output import print_table

    @click.command()
    def table() -> None:
        print_table(["NAME"], [["x\x1b[31my"]])

    out = CliRunner().invoke(table).output
    assert "\x1b" not in out and "x\\x1b[31my" in out


# --- names are claimed atomically (defect 3) ---------------------------------------------------


def _create_in_parallel(host: FakeHost, names: list[str | None]) -> list[BaseException | None]:
    """``create_vm`` from several threads released at the same moment."""
    import threading

    barrier = threading.Barrier(len(names))
    results: list[BaseException | None] = [None] * len(names)

    def create(i: int, name: str | None) -> None:
        vm = _request(host, name=name)
        barrier.wait()
        try:
            create_vm(host.svc, vm)
        except BaseException as exc:  # collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=create, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_of_five_creates_of_one_name_one_wins(fake_host: FakeHost) -> None:
    from ignitevm.errors import ConflictError

    results = _create_in_parallel(fake_host, ["dup"] * 5)
    losers = [r for r in results if r is not None]
    assert len(losers) == 4 and all(isinstance(r, ConflictError) for r in losers)
    assert all(str(r) == "a VM named 'dup' already exists" for r in losers)
    assert [v.metadata.name for v in fake_host.svc.store.list(Kind.VM)] == ["dup"]
    assert [p.name for p in fake_host.svc.store.tmp_dir().iterdir()] == [".lock"]


def test_generated_names_stay_unique_when_the_words_clash(
    fake_host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    import itertools

    from ignitevm.ops import create

    counter = itertools.count()
    # the first four draws are all "busy-bee", as for unlucky concurrent creates: each sees a
    # free name before the lock, and all but one find it taken under the lock
    monkeypatch.setattr(create, "generate_name", lambda: f"busy-bee{max(0, next(counter) - 3)}")
    assert _create_in_parallel(fake_host, [None] * 4) == [None] * 4
    names = [v.metadata.name for v in fake_host.svc.store.list(Kind.VM)]
    assert len(names) == 4 and len(set(names)) == 4


def test_a_create_killed_midway_leaves_nothing_the_next_keeps(fake_host: FakeHost) -> None:
    tmp = fake_host.svc.store.tmp_dir()
    orphan = tmp / "vm-0123456789abcdef"  # a create killed after its disk was made
    (orphan / "object").mkdir(parents=True)
    (orphan / "object" / "disk.qcow2").write_bytes(b"x" * 4096)
    create_vm(fake_host.svc, _request(fake_host, name="next"))
    assert [p.name for p in tmp.iterdir()] == [".lock"]
    assert [v.metadata.name for v in fake_host.svc.store.list(Kind.VM)] == ["next"]


# --- refused at create, not at start (defect 8) ------------------------------------------------


def _refusals(tmp: Any) -> list[tuple[dict[str, Any], str]]:
    secret = tmp / "secret"
    secret.write_text("x")
    return [
        ({"copy_files": [f"{secret}:/../etc/shadow"]}, "'..' is not allowed in the VM path"),
        ({"copy_files": [f"{secret}:/etc/../../x"]}, "'..' is not allowed"),
        ({"copy_files": [f"{tmp}/missing:/etc/x"]}, "does not exist on this host"),
        ({"ports": ["10.99.99.99:8080:80"], "network_plugin": "user"}, "not an address of"),
        ({"ports": ["8080:80", "8080:81"], "network_plugin": "user"}, "published twice"),
        ({"ports": ["127.0.0.1:8080:80", "8080:81"], "network_plugin": "user"}, "twice"),
        ({"volumes": [f"{tmp}:/mnt"]}, "is a directory"),
        ({"volumes": [f"{tmp}/missing:/mnt"]}, "does not exist on this host"),
        ({"memory": "64TB"}, "more than this host's memory"),
        ({"disk_size": "64PB"}, "more than the whole filesystem"),
        ({"ssh": f"{tmp}/missing.pub"}, "does not exist"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_refused_at_create_with_the_store_unchanged(
    fake_host: FakeHost, tmp_path: Any, case: int
) -> None:
    settings, message = _refusals(tmp_path)[case]
    vm = _request(fake_host, name="probe", **settings)
    with pytest.raises(IgniteError) as err:
        create_vm(fake_host.svc, vm)
    assert message in err.value.message
    assert err.value.hint  # every refusal says what to do
    from ignitevm.api.settings import require_setting

    assert err.value.message.startswith(require_setting(next(iter(settings))).flag)
    _assert_store_unchanged(fake_host)
    assert [p.name for p in fake_host.svc.store.tmp_dir().iterdir()] in ([], [".lock"])
    create_vm(fake_host.svc, _request(fake_host, name="probe"))  # the name was not claimed


def test_what_is_allowed_still_is(fake_host: FakeHost, tmp_path: Any) -> None:
    image = tmp_path / "data.img"
    image.write_bytes(b"\0" * 4096)
    vm = _request(fake_host, name="ok", ports=["127.0.0.1:8080:80", "8081:80", "8080:80/udp"],
                  volumes=[f"{image}:/mnt"], copy_files=[f"{image}:/root/data..img"],
                  network_plugin="user")  # fmt: skip
    assert create_vm(fake_host.svc, vm).metadata.name == "ok"
