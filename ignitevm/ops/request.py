"""Turn `ignite create/run` flags (and an optional --config manifest) into the VM to create."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ignitevm.api import VM, Size, load_object
from ignitevm.api.types import FileMapping, PortMapping, Volume, VolumeMount
from ignitevm.errors import ValidationError
from ignitevm.ops.services import Services


@dataclass(frozen=True)
class VMRequest:
    image: str | None
    name: str = ""
    labels: tuple[str, ...] = ()
    cpus: int = 1
    memory: str = "512MB"
    size: str = "4GB"
    kernel_image: str = ""
    kernel_args: str = ""
    config_file: Path | None = None
    ssh: str | None = None  # "true" (generate) or a public key path
    copy_files: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    network_plugin: str | None = None
    # the flags the user gave explicitly: they override the manifest
    explicit: frozenset[str] = frozenset()


def build_vm_request(svc: Services, req: VMRequest) -> VM:
    """Configuration defaults < the --config manifest < explicit flags."""
    if req.config_file is not None:
        obj = load_object(req.config_file)
        if not isinstance(obj, VM):
            raise ValidationError(
                f"{req.config_file}: kind {obj.kind} is not a VM", hint="--config takes a VM"
            )
        vm = obj
        vm.status = VM().status  # a manifest's status is what it wants, not what is
        given = req.explicit
    else:
        vm = VM(spec=svc.config.spec.vm_defaults.model_copy(deep=True))
        # without a manifest, a flag's default is what the user asked for unless the
        # configuration file sets the value
        given = req.explicit | {"cpus", "memory", "size"} - _config_set(svc)
    spec = vm.spec
    if req.image:
        spec.image.oci = req.image
    if "name" in given or req.name:
        vm.metadata.name = req.name or vm.metadata.name
    for label in req.labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise ValidationError(f"label {label!r} is not KEY=VALUE", hint="-l env=test")
        vm.metadata.labels[key] = value
    if "cpus" in given:
        if req.cpus < 1:
            raise ValidationError(f"--cpus {req.cpus}: a VM needs at least one vCPU")
        spec.cpus = req.cpus
    if "memory" in given:
        spec.memory = _size("--memory", req.memory)
    if "size" in given:
        spec.disk_size = _size("--size", req.size)
    if req.kernel_image:
        spec.kernel.oci = req.kernel_image
    if req.kernel_args:
        spec.kernel.cmd_line = req.kernel_args
    if req.ssh is not None:
        spec.ssh = True if req.ssh == "true" else str(Path(req.ssh).expanduser())
    spec.copy_files += [_file_mapping(text) for text in req.copy_files]
    spec.network.ports += [PortMapping.parse(text) for text in req.ports]
    for text in req.volumes:
        volume, mount = _volume(text, len(spec.storage.volumes))
        spec.storage.volumes.append(volume)
        spec.storage.volume_mounts.append(mount)
    if req.network_plugin:
        vm.status.network.plugin = req.network_plugin
    return vm


def _config_set(svc: Services) -> set[str]:
    """Which of cpus/memory/size the configuration's vmDefaults set explicitly."""
    fields = svc.config.spec.vm_defaults.model_fields_set
    return {flag for flag, field in (("cpus", "cpus"), ("memory", "memory"),
                                     ("size", "disk_size")) if field in fields}  # fmt: skip


def _size(flag: str, text: str) -> Size:
    try:
        return Size.parse(text)
    except ValidationError as exc:
        raise ValidationError(f"{flag} {text!r}: {exc.message}", hint="e.g. 512MB, 2GB") from None


def _file_mapping(text: str) -> FileMapping:
    host, sep, target = text.partition(":")
    if not sep or not host or not target:
        raise ValidationError(
            f"--copy-files {text!r} is not HOST:VM", hint="e.g. -f /etc/motd:/etc/motd"
        )
    return FileMapping(host_path=str(Path(host).expanduser()), vm_path=target)


def _volume(text: str, index: int) -> tuple[Volume, VolumeMount]:
    from ignitevm.api.types import BlockDeviceVolume

    host, sep, target = text.partition(":")
    if not sep or not host.startswith("/") or not target.startswith("/"):
        raise ValidationError(
            f"--volumes {text!r} is not HOST:VM with absolute paths",
            hint="e.g. -v /dev/loop0:/mnt/data",
        )
    if not Path(host).exists():
        raise ValidationError(f"--volumes: {host} does not exist")
    name = f"volume{index}"
    return (
        Volume(name=name, block_device=BlockDeviceVolume(path=host)),
        VolumeMount(name=name, mount_path=target),
    )
