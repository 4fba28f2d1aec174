"""What a start runs: the VM object, its kernel and image turned into the supervisor's
LaunchPlan (docs/architecture.md "The data path of ignite run")."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.api import VM, Kernel, Kind
from ignitevm.api.names import safe_hostname
from ignitevm.errors import ValidationError
from ignitevm.ops.bootfiles import volume_disks, write_initrd
from ignitevm.ops.kernels import kernel_files, modules_disk
from ignitevm.ops.refs import require_of_vm
from ignitevm.ops.services import Services
from ignitevm.ops.shares import NO_9P, host_shares

if TYPE_CHECKING:
    from ignitevm.api.types import PortMapping as APIPortMapping
    from ignitevm.network.base import PortMapping
    from ignitevm.spawn import LaunchPlan
    from ignitevm.vmm.base import Disk


def build_launch_plan(
    svc: Services, vm: VM, d: Path, plugin_name: str, *, debug: bool, vmm: str | None = None
) -> LaunchPlan:
    """Write the VM's boot files and make its disks ready; the plan that runs them."""
    from ignitevm.kernel import kernel_cmdline
    from ignitevm.network.base import DEFAULT_ID_PREFIX, PluginName
    from ignitevm.ops.restore import resume_for
    from ignitevm.ops.vmmchoice import cow_mode, ensure_root_disk, root_disks, vmm_for_start
    from ignitevm.spawn import LaunchPlan
    from ignitevm.vmm.base import Accel, MachineSpec, VMMName, mac_for_uid

    kernel = require_of_vm(svc, Kind.KERNEL, vm)
    require_of_vm(svc, Kind.IMAGE, vm)
    vmlinux, base_initrd = kernel_files(svc, kernel)
    choice = vmm_for_start(svc, vm, vmm, vmlinux)
    if vm.spec.storage.shares and choice.vmm == VMMName.FIRECRACKER:
        raise ValidationError(NO_9P, hint="start it with --vmm qemu")
    cow = cow_mode(d, choice.vmm)
    ensure_root_disk(svc, vm, d, cow)
    extra = " ".join(w for w in (vm.spec.kernel.cmd_line, "ignite.debug" if debug else "") if w)
    cmdline = kernel_cmdline(cow=cow, extra=extra, tcg=choice.accel == Accel.TCG)
    hostname = safe_hostname(vm.metadata.name)  # a VM an older version named "a:b" boots too
    cmdline += f" ignite.hostname={hostname}"
    ports = network_ports(vm.spec.network.ports)
    if plugin_name == PluginName.USER and vm.spec.ssh and not any(p.vm_port == 22 for p in ports):
        # user-mode networking reaches the guest only through forwards: give SSH one, on a
        # free loopback port, so ignite ssh/exec/cp work (recorded in runtime.json).
        from ignitevm.network.base import PortMapping, Protocol_

        ports += (PortMapping(_free_port(), 22, Protocol_.TCP, "127.0.0.1"),)
    machine = MachineSpec(
        uid=vm.metadata.uid,
        name=hostname,  # the supervisor puts it in the guest's ip= argument
        vm_dir=d,
        vcpus=vm.spec.cpus,
        memory_mib=vm.spec.memory.mib(),
        vmlinux=vmlinux,
        initrd=write_initrd(vm, d, base_initrd),
        cmdline=cmdline,
        disks=(*root_disks(svc, vm, d, cow), *volume_disks(vm), *_modules(svc, kernel)),
        mac=mac_for_uid(vm.metadata.uid),
        accel=choice.accel,
        resume=resume_for(svc, vm, d),
        shares=host_shares(vm),
    )
    jail = svc.config.spec.jail is not False
    # the prefix recorded at create names the network objects (docs/network.md)
    prefix = vm.status.id_prefix or DEFAULT_ID_PREFIX
    return LaunchPlan(machine, vmm=choice.vmm, network=PluginName(plugin_name), ports=ports,
                      jail=jail, id_prefix=prefix,
                      interfaces=extra_interfaces(vm, plugin_name))  # fmt: skip


def extra_interfaces(vm: VM, plugin_name: str) -> tuple[str, ...]:
    """The interfaces the VM's annotations add (ignite.weave.works/interface/NAME); they live
    in the VM's network namespace, which only the cni plugin makes (docs/network.md)."""
    from ignitevm.errors import ValidationError
    from ignitevm.network.multinet import annotated_interfaces

    names = annotated_interfaces(vm.metadata.annotations)
    if names and plugin_name != "cni":
        raise ValidationError(
            f"VM {vm.metadata.name} asks for interfaces {', '.join(names)} "
            f"(ignite.weave.works/interface/ annotations), which need the cni network plugin, "
            f"not {plugin_name}",
            hint="start it with --network-plugin cni",
        )
    return names


def network_ports(ports: list[APIPortMapping]) -> tuple[PortMapping, ...]:
    """The manifest's port mappings as the network plugins take them (no pydantic there)."""
    from ignitevm.network.base import PortMapping, Protocol_

    return tuple(
        PortMapping(p.host_port, p.vm_port, Protocol_(str(p.protocol)), p.bind_address or "0.0.0.0")
        for p in ports
    )


def _modules(svc: Services, kernel: Kernel) -> tuple[Disk, ...]:
    """The kernel's modules disk, read-only (shared by its VMs); /init mounts it by label."""
    from ignitevm.vmm.base import Disk

    path = modules_disk(svc, kernel)
    return () if path is None else (Disk(path, "raw", readonly=True),)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
