"""What `ignite create` refuses, before anything is stored (issue 10, defects 3, 7 and 8):
the store is unchanged after a refusal (no VM directory, no object, no name claimed)."""

from __future__ import annotations

from typing import Any

import pytest

from ignitevm.api import VM, Kind
from ignitevm.errors import ValidationError
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


@pytest.mark.parametrize("name", ["a:b", "x\x1b[31my", "Upper", "under_score", "-x", "a" * 64])
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
