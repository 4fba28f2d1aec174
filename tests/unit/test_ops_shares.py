"""--share HOST:VM[:ro]: the setting, the manifest field, the checks at create and start, the
VMM choice (QEMU only), and what reaches QEMU and /init (a fake QEMU: tests/unit/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ignitevm.api import VM, Share, dump_object, load_object
from ignitevm.api.settings import apply_settings, parse_share
from ignitevm.errors import NotFoundError, ValidationError
from ignitevm.kernel import read_cpio
from ignitevm.ops.create import create_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.start import start_vm
from ignitevm.ops.vmlist import get_vm, vm_dir
from ignitevm.ops.vmmchoice import resolve_vmm
from ignitevm.vmm.choose import KVMFacts
from tests.unit.conftest import FakeHost


def test_parse_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/alice")
    assert parse_share("/srv/a:/a") == Share(host_path="/srv/a", vm_path="/a")
    assert parse_share("/srv/a:/a:ro").read_only is True
    assert parse_share("/srv/a:/a:rw").read_only is False
    assert parse_share("~/src:/src").host_path == "/home/alice/src"
    assert parse_share("/srv/a:/with:colon").vm_path == "/with:colon"
    for bad in ("/srv/a", "rel:/a", "/srv/a:rel", ":/a"):
        with pytest.raises(ValidationError, match="is not HOST:VM"):
            parse_share(bad)


def test_manifest_field_is_an_ignitevm_addition(tmp_path: Path) -> None:
    vm = apply_settings(VM(), {"shares": ["/srv/a:/a", "/srv/b:/b:ro"]})
    data = json.loads(dump_object(vm, "json"))
    assert data["spec"]["storage"]["shares"] == [
        {"hostPath": "/srv/a", "vmPath": "/a"},
        {"hostPath": "/srv/b", "vmPath": "/b", "readOnly": True},
    ]
    assert "shares" not in json.loads(dump_object(VM(), "json"))["spec"].get("storage", {})
    path = tmp_path / "vm.yaml"
    path.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata: {name: x}\n"
        "spec:\n  storage:\n    shares:\n    - {hostPath: /srv/b, vmPath: /b, readOnly: true}\n"
    )
    loaded = load_object(path)
    assert isinstance(loaded, VM) and loaded.spec.storage.shares[0].read_only


def _create(host: FakeHost, name: str, **settings: object) -> str:
    vm = build_vm(host.svc, {"image": "img", "kernel": "kern", "name": name, **settings})
    return create_vm(host.svc, vm).metadata.uid


@pytest.mark.parametrize(
    ("vm_path", "error"),
    [("/", "directory below /"), ("/a/../b", "'..'"), ("/a b", "spaces"), ("/x\n", "control")],
)
def test_create_refuses_bad_vm_paths(
    fake_host: FakeHost, tmp_path: Path, vm_path: str, error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        _create(fake_host, "bad", shares=[Share(host_path=str(tmp_path), vm_path=vm_path)])


def test_create_refuses_a_missing_directory_and_twice_the_same_path(
    fake_host: FakeHost, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="is not a directory"):
        _create(fake_host, "m", shares=[f"{tmp_path}/absent:/a"])
    with pytest.raises(ValidationError, match="shared twice"):
        _create(fake_host, "t", shares=[f"{tmp_path}:/a", f"{tmp_path}:/a/"])


def test_firecracker_has_no_9p(fake_host: FakeHost, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="Firecracker has no 9p"):
        _create(fake_host, "fc", shares=[f"{tmp_path}:/a"], vmm="firecracker")
    vm = build_vm(fake_host.svc, {"image": "img", "shares": [f"{tmp_path}:/a"]})
    good = KVMFacts(True, True, False, True)
    choice = resolve_vmm(fake_host.svc, vm, facts=good, firecracker="/usr/bin/firecracker")
    assert choice.vmm == "qemu"  # auto: where Firecracker would be chosen, QEMU
    plain = build_vm(fake_host.svc, {"image": "img"})
    assert resolve_vmm(fake_host.svc, plain, facts=good, firecracker="/f").vmm == "firecracker"


def test_a_start_hands_the_shares_to_qemu_and_init(fake_host: FakeHost, tmp_path: Path) -> None:
    src, data = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    data.mkdir()
    _create(fake_host, "s", shares=[f"{src}:/src", f"{data}:/mnt/data:ro"])
    vm = start_vm(fake_host.svc, "s", timeout=30)
    d = vm_dir(fake_host.svc, vm)
    machine = json.loads((d / "launch.json").read_text())["machine"]
    assert machine["shares"] == [
        {"path": str(src), "tag": "ignite_share0", "readonly": False},
        {"path": str(data), "tag": "ignite_share1", "readonly": True},
    ]
    env = next(e for e in read_cpio((d / "vm-layer.cpio").read_bytes()) if e.name == "ignite/env")
    assert b"IGNITE_SHARES='ignite_share0:rw:/src ignite_share1:ro:/mnt/data'" in env.data
    argv = " ".join(json.loads((d / "fake-qemu-argv.json").read_text()))
    assert f"-fsdev local,id=share1,path={data}," in argv
    assert get_vm(fake_host.svc, "s").running


def test_a_start_checks_the_directory_again(fake_host: FakeHost, tmp_path: Path) -> None:
    src = tmp_path / "gone"
    src.mkdir()
    _create(fake_host, "g", shares=[f"{src}:/src"])
    src.rmdir()
    with pytest.raises(NotFoundError, match="is not a directory"):
        start_vm(fake_host.svc, "g", timeout=30)
