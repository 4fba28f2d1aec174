"""The VM settings: one table for the flags of ``ignite create/run``, the manifest fields they
set, their defaults, and the keywords of the library (docs/api.md "VM settings").

A setting's value is text (a flag) or the field's own type (the library: ``memory=Size(...)``,
``ports=[PortMapping(...)]``); ``apply_settings`` writes the given ones into a VM and turns
every bad value into one ``ValidationError`` that names the flag, the value and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignitevm.api.names import NAME_HINT, name_problem
from ignitevm.api.size import Size
from ignitevm.api.types import (
    VM,
    BlockDeviceVolume,
    FileMapping,
    PortMapping,
    RestartPolicy,
    Share,
    Vmm,
    Volume,
    VolumeMount,
)
from ignitevm.errors import ValidationError

MIN_MEMORY_MIB = 128  # less does not boot Debian's kernel with its initramfs
# ignitevm/network/registry.py's plugins; Ignite's docker-bridge runs as cni (with a warning)
NETWORK_PLUGINS = ("cni", "user", "none", "docker-bridge")


@dataclass(frozen=True)
class Setting:
    name: str  # the library's keyword
    flags: tuple[str, ...]  # the CLI's flags; the last is the long one
    field: str  # the manifest field it sets
    help: str
    apply: Callable[[VM, Any, str], None]  # (vm, value, flag as given)
    metavar: str | None = None
    repeat: bool = False  # a flag given many times; a list in the library
    default: str | None = None  # shown in --help (the model's default)

    @property
    def flag(self) -> str:
        """How errors name it: the long flag, or the argument's name."""
        return self.flags[-1] if self.flags else self.name.upper()


def _set(obj: Any, attr: str, value: Any, flag: str, hint: str | None = None) -> None:
    """Assign with the model's validation; a refusal becomes one line naming the flag."""
    import pydantic

    try:
        setattr(obj, attr, value)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ValidationError(f"{flag} {value!r}: {msg}", hint=hint) from None


def _text(value: Any, flag: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{flag} {value!r}: expected text")
    return value


def _name(vm: VM, value: Any, flag: str) -> None:
    name = _text(value, flag)
    problem = name_problem(name)
    if problem is not None:
        raise ValidationError(f"{flag} {name!r}: {problem}", hint=NAME_HINT)
    vm.metadata.name = name


def _labels(vm: VM, value: Any, flag: str) -> None:
    items = value.items() if isinstance(value, Mapping) else (_pair(v, flag) for v in value)
    for key, val in items:
        vm.metadata.labels[str(key)] = str(val)


def _pair(text: Any, flag: str) -> tuple[str, str]:
    key, sep, value = _text(text, flag).partition("=")
    if not sep or not key:
        raise ValidationError(f"{flag} {text!r} is not KEY=VALUE", hint=f"e.g. {flag} env=test")
    return key, value


def _image(vm: VM, value: Any, flag: str) -> None:
    vm.spec.image.oci = _text(value, flag)


def _kernel(vm: VM, value: Any, flag: str) -> None:
    vm.spec.kernel.oci = _text(value, flag)


def _kernel_args(vm: VM, value: Any, flag: str) -> None:
    vm.spec.kernel.cmd_line = _text(value, flag)


def _cpus(vm: VM, value: Any, flag: str) -> None:
    try:
        cpus = int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{flag} {value!r} is not a number", hint=f"e.g. {flag} 2") from None
    _set(vm.spec, "cpus", cpus, flag, hint="a VM has 1 to 256 vCPUs")


def _size(value: Any, flag: str) -> Size:
    try:
        return Size.parse(value)
    except ValidationError as exc:
        raise ValidationError(f"{flag} {value!r}: {exc.message}", hint="e.g. 512MB, 2GB") from None


def _memory(vm: VM, value: Any, flag: str) -> None:
    size = _size(value, flag)
    if size.mib() < MIN_MEMORY_MIB:
        raise ValidationError(
            f"{flag} {value}: too little memory to boot a VM",
            hint=f"use {flag} {MIN_MEMORY_MIB}MB or more",
        )
    vm.spec.memory = size


def _disk_size(vm: VM, value: Any, flag: str) -> None:
    vm.spec.disk_size = _size(value, flag)


def _ssh(vm: VM, value: Any, flag: str) -> None:
    if value is True or value == "true":
        vm.spec.ssh = True
    elif value is False or value == "false":
        vm.spec.ssh = None
    else:
        vm.spec.ssh = str(Path(_text(value, flag)).expanduser())


def _copy_files(vm: VM, value: Any, flag: str) -> None:
    for item in _items(value):
        if isinstance(item, FileMapping):
            vm.spec.copy_files.append(item)
            continue
        host, sep, target = _text(item, flag).partition(":")
        if not sep or not host or not target:
            raise ValidationError(
                f"{flag} {item!r} is not HOST:VM", hint=f"e.g. {flag} /etc/motd:/etc/motd"
            )
        mapping = FileMapping(host_path=str(Path(host).expanduser()), vm_path=target)
        vm.spec.copy_files.append(mapping)


def _ports(vm: VM, value: Any, flag: str) -> None:
    for item in _items(value):
        try:
            pm = item if isinstance(item, PortMapping) else PortMapping.parse(_text(item, flag))
        except ValidationError as exc:
            raise ValidationError(f"{flag} {exc.message}", hint=exc.hint) from None
        vm.spec.network.ports.append(pm)


def _volumes(vm: VM, value: Any, flag: str) -> None:
    storage = vm.spec.storage
    for item in _items(value):
        host, sep, target = _text(item, flag).partition(":")
        if not sep or not host.startswith("/") or not target.startswith("/"):
            raise ValidationError(
                f"{flag} {item!r} is not HOST:VM with absolute paths",
                hint=f"e.g. {flag} /dev/loop0:/mnt/data",
            )
        name = f"volume{len(storage.volumes)}"
        storage.volumes.append(Volume(name=name, block_device=BlockDeviceVolume(path=host)))
        storage.volume_mounts.append(VolumeMount(name=name, mount_path=target))


def parse_share(text: str, flag: str = "--share") -> Share:
    """``HOST:VM[:ro|:rw]``; ``~`` in HOST is the user's home. The host directory is checked
    when the VM is created and started (ops/shares.py)."""
    body, mode = text, "rw"
    for suffix in (":ro", ":rw"):
        if text.endswith(suffix):
            body, mode = text[: -len(suffix)], suffix[1:]
    host, sep, target = body.partition(":")
    host = str(Path(host).expanduser()) if host else host
    if not sep or not host.startswith("/") or not target.startswith("/"):
        raise ValidationError(
            f"{flag} {text!r} is not HOST:VM[:ro] with absolute paths",
            hint=f"e.g. {flag} $HOME/src:/src or {flag} /srv/data:/data:ro",
        )
    return Share(host_path=host, vm_path=target, read_only=mode == "ro")


def _shares(vm: VM, value: Any, flag: str) -> None:
    for item in _items(value):
        share = item if isinstance(item, Share) else parse_share(_text(item, flag), flag)
        vm.spec.storage.shares.append(share)


def _network_plugin(vm: VM, value: Any, flag: str) -> None:
    plugin = _text(value, flag)
    if plugin not in NETWORK_PLUGINS:
        raise ValidationError(
            f"{flag} {plugin!r} is unknown", hint=f"use {', '.join(NETWORK_PLUGINS)}"
        )
    vm.status.network.plugin = plugin


def _snapshot(vm: VM, value: Any, flag: str) -> None:
    vm.spec.snapshot = _text(value, flag)


def _vmm(vm: VM, value: Any, flag: str) -> None:
    try:
        vm.spec.vmm = Vmm(value)
    except ValueError:
        choices = ", ".join(v.value for v in Vmm)
        raise ValidationError(f"{flag} {value!r} is unknown", hint=f"use {choices}") from None


def _restart(vm: VM, value: Any, flag: str) -> None:
    try:
        vm.spec.restart_policy = RestartPolicy(value)
    except ValueError:
        choices = ", ".join(p.value for p in RestartPolicy)
        raise ValidationError(f"{flag} {value!r} is unknown", hint=f"use {choices}") from None


def _items(value: Any) -> Iterable[Any]:
    return [value] if isinstance(value, str | PortMapping | FileMapping | Share) else value


SETTINGS: tuple[Setting, ...] = (
    Setting("name", ("-n", "--name"), "metadata.name", "Name of the VM (default: generated).",
            _name, metavar="NAME"),
    Setting("labels", ("-l", "--label"), "metadata.labels", "Label the VM (repeatable).",
            _labels, metavar="KEY=VALUE", repeat=True),
    Setting("image", (), "spec.image.oci", "The OCI image (the first argument).", _image),
    Setting("kernel", ("-k", "--kernel-image"), "spec.kernel.oci",
            "Kernel source or name (default: the configured kernel).", _kernel,
            metavar="KERNEL"),
    Setting("kernel_args", ("--kernel-args",), "spec.kernel.cmdLine",
            "Extra kernel command line.", _kernel_args, metavar="ARGS"),
    Setting("cpus", ("--cpus",), "spec.cpus", "vCPUs.", _cpus, metavar="N", default="1"),
    Setting("memory", ("--memory",), "spec.memory", "RAM, e.g. 1GB.", _memory, metavar="SIZE",
            default="512MB"),
    Setting("disk_size", ("-s", "--size"), "spec.diskSize", "Disk size the guest sees.",
            _disk_size, metavar="SIZE", default="4GB"),
    Setting("ssh", ("--ssh",), "spec.ssh",
            "Generate an SSH key for root (or --ssh=KEY.pub to use yours).", _ssh,
            metavar="PUBKEY"),
    Setting("copy_files", ("-f", "--copy-files"), "spec.copyFiles",
            "Copy a host file into the VM at first boot (absolute paths).", _copy_files,
            metavar="HOST:VM", repeat=True),
    Setting("ports", ("-p", "--ports"), "spec.network.ports", "Publish a VM port on the host.",
            _ports, metavar="[IP:]HOST:VM[/PROTO]", repeat=True),
    Setting("volumes", ("-v", "--volumes"), "spec.storage.volumes",
            "Attach a host block device or file and mount it in the VM.", _volumes,
            metavar="HOST:VM", repeat=True),
    Setting("shares", ("--share",), "spec.storage.shares",
            "Mount a host directory in the VM, live both ways (QEMU's virtio-9p); :ro to make "
            "it read-only.", _shares, metavar="HOST:VM[:ro]", repeat=True),
    Setting("network_plugin", ("--network-plugin",), "status.network.plugin",
            "Networking: cni, user or none; Ignite's docker-bridge means cni (default: the "
            "configuration's, cni).",
            _network_plugin, metavar="cni|user|none"),
    Setting("snapshot", ("--snapshot",), "spec.snapshot",
            "Resume a new VM from this snapshot (its machine: cpus, memory, disk, kernel).",
            _snapshot, metavar="SNAPSHOT"),
    Setting("vmm", ("--vmm",), "spec.vmm",
            "VMM: auto = firecracker where hardware KVM works and it is found, else qemu.", _vmm,
            metavar="auto|qemu|firecracker"),
    Setting("restart", ("--restart",), "spec.restartPolicy",
            "When ignited starts the VM again: always (unless stopped with ignite stop/kill), "
            "on-failure (after a crash or a host reboot), no.", _restart,
            metavar="no|always|on-failure", default="no"),
)  # fmt: skip
BY_NAME = {s.name: s for s in SETTINGS}


def require_setting(name: str) -> Setting:
    setting = BY_NAME.get(name)
    if setting is None:
        known = ", ".join(BY_NAME)
        raise ValidationError(f"unknown VM setting {name!r}", hint=f"known settings: {known}")
    return setting


def apply_settings(vm: VM, values: Mapping[str, Any]) -> VM:
    """Write the given settings (None and empty lists are "not given") into ``vm``."""
    for name, value in values.items():
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        setting = require_setting(name)
        setting.apply(vm, value, setting.flag)
    return vm
