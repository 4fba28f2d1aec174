from __future__ import annotations

from pathlib import Path

import pytest

from ignitevm.api import Configuration, Size
from ignitevm.errors import ValidationError
from ignitevm.ops.request import VMRequest, build_vm_request
from ignitevm.ops.services import Services
from ignitevm.store import Store


def _svc(tmp_path: Path, config: Configuration | None = None) -> Services:
    return Services(config=config or Configuration(), store=Store(tmp_path))


def test_flags_build_the_vm(tmp_path: Path) -> None:
    req = VMRequest(
        image="img:1", name="web", labels=("a=b",), cpus=2, memory="1GB", size="3GB",
        ports=("127.0.0.1:8080:80/tcp",), copy_files=("/etc/hosts:/etc/hosts",), ssh="true",
        explicit=frozenset({"cpus", "memory", "size"}),
    )  # fmt: skip
    vm = build_vm_request(_svc(tmp_path), req)
    assert vm.metadata.name == "web" and vm.metadata.labels == {"a": "b"}
    assert vm.spec.cpus == 2 and vm.spec.memory == Size.parse("1GB")
    assert vm.spec.disk_size == Size.parse("3GB") and vm.spec.ssh is True
    assert str(vm.spec.network.ports[0]) == "127.0.0.1:8080->80/tcp"
    assert vm.spec.copy_files[0].vm_path == "/etc/hosts"


def test_manifest_wins_over_flag_defaults_but_not_explicit_flags(tmp_path: Path) -> None:
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: from-file\n"
        "spec:\n  image:\n    oci: img:2\n  cpus: 2\n  memory: 800MB\n  diskSize: 3GB\n"
    )
    req = VMRequest(image=None, cpus=4, memory="512MB", config_file=manifest,
                    explicit=frozenset({"cpus"}))  # fmt: skip
    vm = build_vm_request(_svc(tmp_path), req)
    assert vm.metadata.name == "from-file" and vm.spec.image.oci == "img:2"
    assert vm.spec.cpus == 4  # given on the command line
    assert vm.spec.memory == Size.parse("800MB")  # the flag's default does not override


def test_config_defaults_apply_without_flags(tmp_path: Path) -> None:
    config = Configuration.model_validate({"spec": {"vmDefaults": {"memory": "1GB", "cpus": 2}}})
    vm = build_vm_request(_svc(tmp_path, config), VMRequest(image="x"))
    assert vm.spec.memory == Size.parse("1GB") and vm.spec.cpus == 2
    assert vm.spec.disk_size == Size.parse("4GB")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("memory", "lots", "--memory 'lots'"),
        ("size", "-1GB", "--size"),
        ("labels", ("novalue",), "KEY=VALUE"),
        ("ports", ("22",), "[ip:]host:vm"),
        ("copy_files", ("/a",), "HOST:VM"),
    ],
)
def test_bad_flags_are_named(tmp_path: Path, field: str, value: object, needle: str) -> None:
    req = VMRequest(image="x", explicit=frozenset({"memory", "size"}), **{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as err:
        build_vm_request(_svc(tmp_path), req)
    assert needle in err.value.message
