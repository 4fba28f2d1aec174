"""Reading manifests (v1alpha2..v1alpha4, YAML and JSON), errors, and the serialized form."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from ignitevm.api import (
    VM,
    Configuration,
    Image,
    Kernel,
    ObjectMeta,
    PortMapping,
    Protocol,
    Size,
    Vmm,
    VMSpec,
    dump_object,
    load_configuration,
    load_documents,
    load_object,
    parse_object,
    to_dict,
)
from ignitevm.errors import NotFoundError, ValidationError

DATA = Path(__file__).parent / "data" / "api"


def test_ignite_docs_example_my_vm() -> None:
    vm = load_object(DATA / "my-vm.yaml")
    assert isinstance(vm, VM)
    assert vm.api_version == "ignite.weave.works/v1alpha4"
    assert vm.metadata.name == "my-vm"
    assert vm.metadata.uid == "599615df99804ae8"
    assert vm.spec.image.oci == "weaveworks/ignite-ubuntu"
    assert vm.spec.cpus == 2
    assert vm.spec.disk_size == Size(3 << 30)
    assert vm.spec.memory == Size(800 << 20)
    assert vm.spec.ssh is True
    assert vm.status.running is True
    # Ignite's defaults fill the rest
    assert vm.spec.sandbox.oci == "weaveworks/ignite:v0.10.0"
    assert vm.spec.network.ports == []
    assert vm.spec.vmm is None


def test_v1alpha2_json_is_converted() -> None:
    vm = load_object(DATA / "vm-v1alpha2.json")
    assert isinstance(vm, VM)
    assert vm.spec.image.oci == "weaveworks/ignite-ubuntu:latest"
    assert vm.spec.kernel.oci == "weaveworks/ignite-kernel:4.19.47"
    assert vm.spec.kernel.cmd_line.startswith("console=ttyS0")
    assert vm.spec.ssh == "/root/.ssh/id_rsa.pub"
    assert vm.spec.network.ports == [PortMapping(host_port=2222, vm_port=22)]
    assert vm.status.network.ip_addresses == ["10.61.0.2"]
    assert vm.status.runtime is not None and vm.status.runtime.id == "abc"
    assert vm.status.image.size == Size(266 << 20)
    assert vm.status.image.repo_digests[0].startswith("weaveworks/ignite-ubuntu@sha256:")
    assert vm.metadata.created == datetime(2019, 8, 1, 10, 20, 30, tzinfo=UTC)


def test_v1alpha4_full_round_trip_yaml_and_json(tmp_path: Path) -> None:
    vm = load_object(DATA / "vm-v1alpha4.yaml")
    assert isinstance(vm, VM)
    assert vm.metadata.labels == {"team": "infra"}
    assert vm.metadata.annotations["ignite.weave.works/host"] == "host-a"
    assert vm.spec.memory == Size(1 << 30)
    ports = vm.spec.network.ports
    assert ports[0].bind_address == "127.0.0.1" and ports[1].protocol is Protocol.UDP
    assert str(ports[0]) == "127.0.0.1:8080->80/tcp"
    assert vm.spec.storage.volumes[0].block_device is not None
    assert vm.spec.storage.volume_mounts[0].mount_path == "/mnt/data"
    assert vm.spec.copy_files[0].vm_path == "/etc/hosts.host"
    assert vm.spec.vmm is Vmm.QEMU
    for fmt in ("json", "yaml"):
        out = tmp_path / f"vm.{fmt}"
        out.write_text(dump_object(vm, fmt))
        assert load_object(out) == vm


def test_serialized_form_matches_ignite_inspect() -> None:
    vm = VM(
        metadata=ObjectMeta(
            name="x", uid="0123456789abcdef", created=datetime(2021, 1, 2, 3, 4, 5, 678, UTC)
        ),
        spec=VMSpec.model_validate({"image": {"oci": "base:latest"}, "ssh": True}),
    )
    vm.status.running = True
    vm.status.network.plugin = "cni"
    vm.status.network.ip_addresses = ["10.61.0.5"]
    data = json.loads(dump_object(vm, "json"))
    assert list(data) == ["kind", "apiVersion", "metadata", "spec", "status"]
    assert data["kind"] == "VM" and data["apiVersion"] == "ignite.weave.works/v1alpha4"
    assert data["metadata"] == {
        "name": "x",
        "uid": "0123456789abcdef",
        "created": "2021-01-02T03:04:05Z",
    }
    spec = data["spec"]
    assert spec["memory"] == "512MB" and spec["diskSize"] == "4GB" and spec["cpus"] == 1
    assert spec["ssh"] is True
    assert spec["network"] == {} and spec["storage"] == {}
    assert "copyFiles" not in spec and "vmm" not in spec and "cmdLine" not in spec["kernel"]
    # what footloose reads from `ignite inspect vm`
    assert data["status"]["running"] is True
    assert data["status"]["network"]["ipAddresses"] == ["10.61.0.5"]
    assert "pid" not in data["status"] and "startTime" not in data["status"]
    assert yaml.safe_load(dump_object(vm, "yaml")) == data


def test_ssh_forms() -> None:
    def ssh(value: object) -> object:
        return VMSpec.model_validate({"ssh": value}).ssh

    assert ssh(True) is True and ssh("true") is True
    assert ssh(False) is None and ssh("") is None
    assert ssh("/home/me/.ssh/id.pub") == "/home/me/.ssh/id.pub"
    spec = VMSpec.model_validate({"ssh": "/k.pub"})
    assert to_dict(VM(spec=spec))["spec"]["ssh"] == "/k.pub"
    assert "ssh" not in to_dict(VM())["spec"]


def test_unknown_field_names_field_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata: {name: a}\n"
        "spec:\n  image: {oci: x}\n  memroy: 1GB\n"
    )
    with pytest.raises(ValidationError) as exc:
        load_object(path)
    assert str(path) in str(exc.value)
    assert "spec.memroy: unknown field" in str(exc.value)


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"memory": "12XB"}, "spec.memory", "unknown unit"),
        ({"memory": "0"}, "spec.memory", "more than zero"),
        ({"diskSize": "-3GB"}, "spec.diskSize", "invalid size"),
        ({"cpus": 0}, "spec.cpus", "greater than or equal to 1"),
        ({"cpus": "many"}, "spec.cpus", "integer"),
        ({"ssh": 5}, "spec.ssh", "ssh must be"),
        ({"vmm": "kvmtool"}, "spec.vmm", "qemu"),
        (
            {"network": {"ports": [{"hostPort": 70000, "vmPort": 22}]}},
            "spec.network.ports[0].hostPort",
            "65535",
        ),
        ({"copyFiles": [{"hostPath": "/a"}]}, "spec.copyFiles[0].vmPath", "missing"),
    ],
)
def test_bad_value_names_field(spec: dict[str, object], field: str, words: str) -> None:
    doc = {"apiVersion": "ignite.weave.works/v1alpha4", "kind": "VM", "spec": spec}
    with pytest.raises(ValidationError) as exc:
        parse_object(doc, "vm.json")
    message = str(exc.value)
    assert message.startswith("vm.json: "), message
    assert f"{field}: " in message and words in message, message


def test_bad_uid_is_refused() -> None:
    doc = {"apiVersion": "ignite.weave.works/v1alpha4", "kind": "VM", "metadata": {"uid": "../x"}}
    with pytest.raises(ValidationError, match=r"metadata\.uid"):
        parse_object(doc, "vm.json")


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"kind": "VM"}, "apiVersion is missing"),
        ({"apiVersion": "ignite.weave.works/v1alpha4"}, "kind is missing"),
        ({"apiVersion": "ignite.weave.works/v1alpha1", "kind": "VM"}, "unsupported"),
        ({"apiVersion": "ignite.weave.works/v1alpha4", "kind": "Pool"}, "unknown kind"),
        ([1, 2], "expected an object"),
    ],
)
def test_missing_or_bad_type_meta(doc: object, words: str) -> None:
    with pytest.raises(ValidationError, match=words) as exc:
        parse_object(doc, "m.yaml")
    assert str(exc.value).startswith("m.yaml: ")


def test_several_documents() -> None:
    docs = load_documents(DATA / "several.yaml")
    assert [d.kind for d in docs] == ["VM", "ConfigMap", "VM", "VM"]
    one, configmap, two, three = docs
    assert isinstance(one.obj, VM) and one.obj.metadata.name == "one" and one.line == 1
    assert configmap.skipped and configmap.obj is None and configmap.error is None
    assert two.error is not None and two.obj is None
    assert f"several.yaml:{two.line}: spec.memory" in str(two.error)
    assert isinstance(three.obj, VM) and three.obj.spec.cpus == 3
    assert three.api_version == "ignite.weave.works/v1alpha3"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    good = "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata: {name: ok}\n"
    path.write_text(good + "---\napiVersion: [unclosed\nkind: VM\n")
    docs = load_documents(path)
    assert isinstance(docs[0].obj, VM)
    assert docs[-1].error is not None
    assert f"{path}:" in str(docs[-1].error) and "invalid YAML" in str(docs[-1].error)
    assert docs[-1].line is not None and docs[-1].line >= 5
    with pytest.raises(ValidationError, match="expected one object"):
        load_object(path)


def test_json_syntax_error_and_list(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "VM",\n "apiVersion": }')
    [doc] = load_documents(bad)
    assert doc.error is not None and f"{bad}:2: invalid JSON" in str(doc.error)
    many = tmp_path / "many.json"
    item = {"apiVersion": "ignite.weave.works/v1alpha4", "kind": "Image", "spec": {"oci": "a:b"}}
    many.write_text(json.dumps([item, item]))
    docs = load_documents(many)
    assert [type(d.obj) for d in docs] == [Image, Image]


def test_unreadable_file(tmp_path: Path) -> None:
    [doc] = load_documents(tmp_path / "missing.yaml")
    assert doc.error is not None and "cannot read" in str(doc.error)


def test_image_and_kernel_objects() -> None:
    image = parse_object(
        {
            "apiVersion": "ignite.weave.works/v1alpha4",
            "kind": "Image",
            "metadata": {"name": "alpine:3.19", "uid": "00112233445566ff"},
            "spec": {"oci": "alpine:3.19"},
            "status": {
                "ociSource": {"id": "oci://docker.io/library/alpine@sha256:ab", "size": "7MB"},
                "digest": "sha256:ab",
                "configDigest": "sha256:00112233445566ff00",
                "source": "docker.io/library/alpine:3.19",
            },
        }
    )
    assert isinstance(image, Image) and image.status.oci_source.size == Size(7 << 20)
    assert to_dict(image)["status"]["configDigest"] == "sha256:00112233445566ff00"
    kernel = parse_object(
        {
            "apiVersion": "ignite.weave.works/v1alpha2",
            "kind": "Kernel",
            "spec": {"ociClaim": {"type": "Docker", "ref": "weaveworks/ignite-kernel:4.19.47"}},
            "status": {
                "version": "4.19.47",
                "ociSource": {"id": "docker://sha256:aa", "size": "50MB"},
            },
        }
    )
    assert isinstance(kernel, Kernel)
    assert (
        kernel.spec.oci == "weaveworks/ignite-kernel:4.19.47" and kernel.status.version == "4.19.47"
    )
    assert "source" not in to_dict(kernel)["status"]


def test_configuration(tmp_path: Path) -> None:
    config = load_configuration(DATA / "config.yaml")
    assert config.spec.network_plugin == "user"
    assert config.spec.id_prefix == "my-company"
    assert config.spec.vmm is Vmm.QEMU
    assert config.spec.vm_defaults.memory == Size(2 << 30)
    assert config.spec.vm_defaults.kernel.oci == "deb:/var/cache/linux-image.deb"
    old = load_configuration(DATA / "config-v1alpha3.yaml")
    assert old.spec.id_prefix == "legacy"
    # no file given and no default file: Ignite's defaults
    defaults = load_configuration(None, default=tmp_path / "absent.yaml")
    assert defaults == Configuration()
    assert defaults.spec.id_prefix == "ignite" and defaults.spec.network_plugin == "cni"
    assert defaults.spec.vm_defaults.cpus == 1
    # the default file is used when present
    assert load_configuration(None, default=DATA / "config.yaml") == config
    with pytest.raises(NotFoundError, match=r"absent\.yaml"):
        load_configuration(tmp_path / "absent.yaml")
    with pytest.raises(ValidationError, match="expected Configuration"):
        load_configuration(DATA / "my-vm.yaml")


def test_configuration_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\n"
        "spec:\n  vmDefaults:\n    memory: huge\n"
    )
    with pytest.raises(ValidationError) as exc:
        load_configuration(path)
    assert str(path) in str(exc.value) and "spec.vmDefaults.memory" in str(exc.value)


def test_dump_unknown_format() -> None:
    with pytest.raises(ValidationError):
        dump_object(VM(), "toml")  # type: ignore[arg-type]


def test_unquoted_numeric_uid_and_name(tmp_path: Path) -> None:
    path = tmp_path / "vm.yaml"
    path.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\n"
        "metadata:\n  name: 42\n  uid: 1234567812345678\n"
    )
    vm = load_object(path)
    assert vm.metadata.name == "42" and vm.metadata.uid == "1234567812345678"


def test_go_nulls_read_as_empty() -> None:
    # what Ignite v0.10 itself writes for a stopped VM: nil slices and maps as null
    doc = {
        "kind": "VM",
        "apiVersion": "ignite.weave.works/v1alpha4",
        "metadata": {"name": "x", "uid": "0123456789abcdef", "labels": None},
        "spec": {"network": {"ports": None}, "storage": {"volumes": None}, "copyFiles": None},
        "status": {
            "running": False,
            "runtime": {"id": "", "name": "containerd"},
            "network": {"plugin": "cni", "ipAddresses": None},
            "image": {"id": "oci://docker.io/weaveworks/ignite-ubuntu@sha256:ab", "size": "0B"},
            "kernel": {"id": None, "size": "0B"},
            "idPrefix": "ignite",
        },
    }
    vm = parse_object(doc)
    assert isinstance(vm, VM)
    assert vm.status.network.ip_addresses == [] and vm.metadata.labels == {}
    assert vm.spec.network.ports == [] and vm.spec.copy_files == []


def test_assignment_is_validated() -> None:
    import pydantic

    vm = VM()
    vm.spec.memory = "2GB"  # type: ignore[assignment]
    assert vm.spec.memory == Size(2 << 30)
    with pytest.raises(pydantic.ValidationError):
        vm.spec.cpus = 0
