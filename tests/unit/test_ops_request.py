from __future__ import annotations

from pathlib import Path

import pytest

from ignitevm.api import Configuration, Size
from ignitevm.api.settings import SETTINGS, apply_settings
from ignitevm.errors import ValidationError
from ignitevm.ops.request import build_vm
from ignitevm.ops.services import Services
from ignitevm.store import Store


def _svc(tmp_path: Path, config: Configuration | None = None) -> Services:
    return Services(config=config or Configuration(), store=Store(tmp_path))


def test_flags_build_the_vm(tmp_path: Path) -> None:
    settings = {
        "image": "img:1", "name": "web", "labels": ["a=b"], "cpus": "2", "memory": "1GB",
        "disk_size": "3GB", "ports": ["127.0.0.1:8080:80/tcp"],
        "copy_files": ["/etc/hosts:/etc/hosts"], "ssh": "true", "volumes": ["/dev/x:/mnt/x"],
    }  # fmt: skip
    vm = build_vm(_svc(tmp_path), settings)
    assert vm.metadata.name == "web" and vm.metadata.labels == {"a": "b"}
    assert vm.spec.cpus == 2 and vm.spec.memory == Size.parse("1GB")
    assert vm.spec.disk_size == Size.parse("3GB") and vm.spec.ssh is True
    assert str(vm.spec.network.ports[0]) == "127.0.0.1:8080->80/tcp"
    assert vm.spec.copy_files[0].vm_path == "/etc/hosts"
    assert vm.spec.storage.volume_mounts[0].mount_path == "/mnt/x"


def test_the_library_passes_typed_values(tmp_path: Path) -> None:
    vm = build_vm(_svc(tmp_path), {"memory": Size.parse("1GB"), "cpus": 3, "labels": {"k": "v"},
                                   "ssh": True})  # fmt: skip
    assert vm.spec.memory == Size.parse("1GB") and vm.spec.cpus == 3
    assert vm.metadata.labels == {"k": "v"} and vm.spec.ssh is True


def test_manifest_wins_over_defaults_but_not_given_settings(tmp_path: Path) -> None:
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: from-file\n"
        "spec:\n  image:\n    oci: img:2\n  cpus: 2\n  memory: 800MB\n  diskSize: 3GB\n"
    )
    vm = build_vm(_svc(tmp_path), {"cpus": "4", "memory": None}, config_file=manifest)
    assert vm.metadata.name == "from-file" and vm.spec.image.oci == "img:2"
    assert vm.spec.cpus == 4  # given on the command line
    assert vm.spec.memory == Size.parse("800MB")  # not given: the manifest's


def test_config_defaults_apply_without_flags(tmp_path: Path) -> None:
    config = Configuration.model_validate({"spec": {"vmDefaults": {"memory": "1GB", "cpus": 2}}})
    vm = build_vm(_svc(tmp_path, config), {"image": "x"})
    assert vm.spec.memory == Size.parse("1GB") and vm.spec.cpus == 2
    assert vm.spec.disk_size == Size.parse("4GB")


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("memory", "lots", "--memory 'lots'"),
        ("memory", "64MB", "too little memory"),
        ("disk_size", "-1GB", "--size"),
        ("cpus", "1000", "--cpus 1000"),
        ("cpus", "two", "--cpus 'two' is not a number"),
        ("labels", ["novalue"], "KEY=VALUE"),
        ("ports", ["22"], "[ip:]host:vm"),
        ("ports", ["70000:22"], "out of range"),
        ("copy_files", ["/a"], "HOST:VM"),
        ("volumes", ["rel:/mnt"], "absolute paths"),
        ("vmm", "bochs", "--vmm 'bochs'"),
        ("colour", "red", "unknown VM setting 'colour'"),
    ],
)
def test_bad_settings_are_one_line_naming_the_flag(
    tmp_path: Path, name: str, value: object, needle: str
) -> None:
    with pytest.raises(ValidationError) as err:
        build_vm(_svc(tmp_path), {name: value})
    assert needle in err.value.message and "\n" not in err.value.message
    assert err.value.hint


def test_every_setting_names_a_manifest_field_and_a_help() -> None:
    from ignitevm.api import VM

    for setting in SETTINGS:
        assert setting.help and setting.field.split(".")[0] in ("metadata", "spec", "status")
        assert setting.name.isidentifier()
    assert apply_settings(VM(), {}) == VM()
