"""`ignite start`: build the VM's per-start initramfs and command line, launch its supervisor,
wait for the guest to boot."""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.api import VM, Kernel, Kind
from ignitevm.api.types import Runtime, Vmm
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.ops.images import image_of_vm
from ignitevm.ops.kernels import kernel_files, kernel_of_vm, modules_disk
from ignitevm.ops.services import Services
from ignitevm.ops.vmfiles import INITRD_FILE, SSH_KEY_FILE, VM_LAYER_FILE, vm_dir

if TYPE_CHECKING:
    from ignitevm.spawn import LaunchPlan
    from ignitevm.vmm.base import Disk

log = logging.getLogger(__name__)

BOOT_TIMEOUT = 180.0  # TCG on 2 shared cores: a boot takes 5-10 s, a loaded machine much more


def start_vm(
    svc: Services,
    query: str,
    *,
    wait: bool = True,
    timeout: float = BOOT_TIMEOUT,
    network_plugin: str | None = None,
    debug: bool = False,
    vmm: str | None = None,
    ignore_preflight: frozenset[str] = frozenset(),
) -> VM:
    """Start a created or stopped VM; returns when its init runs (``wait``). ``vmm``
    overrides the VM's choice for this start; ``ignore_preflight`` names checks to skip."""
    from ignitevm import spawn
    from ignitevm.network.registry import require_plugin

    vm = svc.store.require(Kind.VM, query)
    d = vm_dir(svc, vm)
    if spawn.is_running(d):
        raise ConflictError(
            f"VM {vm.metadata.name} is already running",
            hint=f"stop it first: ignite stop {vm.metadata.name}",
        )
    plugin_name = network_plugin or vm.status.network.plugin or svc.default_network_plugin()
    plugin = require_plugin(plugin_name)
    spawn.cleanup_stale(d, plugin)
    plan = _launch_plan(svc, vm, d, plugin_name, debug=debug, vmm=vmm)
    _preflight(plan, ignore_preflight)
    started = time.monotonic()
    spawn.launch(plan)
    try:
        if wait:
            spawn.wait_for_boot(d, plan.boot_marker, timeout)
    except IgniteError:
        if not debug:
            spawn.kill(d)
        else:  # the VM is kept running for debugging: inspect and ps say so
            _record_start(svc, vm, d, plugin_name)
        raise
    recorded = _record_start(svc, vm, d, plugin_name)
    if wait and vm.spec.ssh and plugin_name != "none":
        # with --ssh, "booted" means sshd answers (ignite run returns ready for ignite exec);
        # with a key of ours, that a login works: the VM's shared connection is then open
        from ignitevm.ops.access import connect, require_target, wait_for_ssh

        left = max(1.0, timeout - (time.monotonic() - started))
        if vm.spec.ssh is True:
            connect(require_target(svc, vm.metadata.uid), left)
        else:  # the user's own public key: we cannot log in, sshd's banner has to do
            wait_for_ssh(require_target(svc, vm.metadata.uid, any_key=True), left)
    return recorded


def _preflight(plan: LaunchPlan, ignored: frozenset[str]) -> None:
    from ignitevm.ops.preflight import StartRequest, require_preflight
    from ignitevm.vmm.base import VMMName

    req = StartRequest(VMMName(plan.vmm), plan.network, plan.vmlinux, ports=plan.ports)
    require_preflight(req, ignored)


def _launch_plan(
    svc: Services, vm: VM, d: Path, plugin_name: str, *, debug: bool, vmm: str | None = None
) -> LaunchPlan:
    from ignitevm.kernel import kernel_cmdline
    from ignitevm.network.base import PortMapping, Protocol_
    from ignitevm.ops.vmmchoice import cow_mode, resolve_vmm, root_disks
    from ignitevm.spawn import LaunchPlan
    from ignitevm.vmm.base import Accel, mac_for_uid

    kernel = kernel_of_vm(svc, vm.status.kernel.id)
    if kernel is None:
        raise IgniteError(
            f"the kernel of VM {vm.metadata.name} ({vm.status.kernel.id}) is no longer stored",
            hint="import it again with ignite kernel import, or recreate the VM",
        )
    if image_of_vm(svc, vm.status.image.id) is None:
        raise IgniteError(
            f"the image of VM {vm.metadata.name} ({vm.spec.image.oci}) is no longer stored",
            hint="recreate the VM: its disk is a copy-on-write layer over that image",
        )
    vmlinux, base_initrd = kernel_files(svc, kernel)
    _write_initrd(vm, d, base_initrd)
    choice = resolve_vmm(svc, vm, vmm, vmlinux=vmlinux)
    accel = choice.accel
    cow = cow_mode(d, choice.vmm)
    extra = " ".join(w for w in (vm.spec.kernel.cmd_line, "ignite.debug" if debug else "") if w)
    cmdline = kernel_cmdline(cow=cow, extra=extra, tcg=accel == Accel.TCG)
    cmdline += f" ignite.hostname={vm.metadata.name}"
    ports = tuple(
        PortMapping(p.host_port, p.vm_port, Protocol_(str(p.protocol)), p.bind_address or "0.0.0.0")
        for p in vm.spec.network.ports
    )
    if plugin_name == "user" and vm.spec.ssh and not any(p.vm_port == 22 for p in ports):
        # user-mode networking reaches the guest only through forwards: give SSH one, on a
        # free loopback port, so ignite ssh/exec/cp work (recorded in runtime.json).
        ports += (PortMapping(_free_port(), 22, Protocol_.TCP, "127.0.0.1"),)
    return LaunchPlan(
        uid=vm.metadata.uid,
        name=vm.metadata.name,
        vm_dir=d,
        vcpus=vm.spec.cpus,
        memory_mib=vm.spec.memory.mib(),
        vmlinux=vmlinux,
        initrd=d / INITRD_FILE,
        cmdline=cmdline,
        disks=(*root_disks(svc, vm, d, cow), *volume_disks(vm), *_modules(svc, kernel)),
        mac=mac_for_uid(vm.metadata.uid),
        accel=accel,
        vmm=choice.vmm,
        network=plugin_name,
        ports=ports,
    )


def _modules(svc: Services, kernel: Kernel) -> tuple[Disk, ...]:
    """The kernel's modules disk, read-only (shared by its VMs); /init mounts it by label."""
    from ignitevm.vmm.base import Disk

    path = modules_disk(svc, kernel)
    return () if path is None else (Disk(path, "raw", readonly=True),)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_initrd(vm: VM, d: Path, base_initrd: Path) -> None:
    """The kernel's initramfs with this VM's files appended (Linux unpacks both)."""
    from ignitevm.kernel import write_vm_layer

    files, firstboot = vm_files(vm, d)
    layer = d / VM_LAYER_FILE
    env = {"IGNITE_VOLUMES": volume_mounts(vm)} if vm.spec.storage.volumes else None
    write_vm_layer(layer, files=files, firstboot=firstboot, env=env, modes={_AUTH_KEYS: 0o600})
    tmp = d / (INITRD_FILE + ".tmp")
    with open(tmp, "wb") as out:
        for part in (base_initrd, layer):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, d / INITRD_FILE)


_AUTH_KEYS = "/root/.ssh/authorized_keys"


def volume_disks(vm: VM) -> tuple[Disk, ...]:
    """`--volumes`: each host block device (or image file) as a virtio disk with a serial the
    guest's /init finds it by (letters, digits and `_` only: Firecracker's drive ids are the
    serials its guests see)."""
    from ignitevm.vmm.base import Disk

    return tuple(
        Disk(Path(v.block_device.path), "raw", serial=f"ignite_{v.name}")
        for v in vm.spec.storage.volumes
        if v.block_device is not None
    )


def volume_mounts(vm: VM) -> str:
    """IGNITE_VOLUMES for /init: "SERIAL:/mount/path ..." (docs/internals.md)."""
    paths = {m.name: m.mount_path for m in vm.spec.storage.volume_mounts}
    return " ".join(
        f"ignite_{v.name}:{paths[v.name]}" for v in vm.spec.storage.volumes if v.name in paths
    )


def vm_files(vm: VM, d: Path) -> tuple[dict[str, bytes | Path], dict[str, bytes | Path]]:
    """(files applied at every boot, files applied at first boot) for the per-VM layer."""
    name = vm.metadata.name
    files: dict[str, bytes | Path] = {
        "/etc/hostname": f"{name}\n".encode(),
        "/etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost\n".encode(),
    }
    if vm.spec.ssh is True:
        files[_AUTH_KEYS] = (d / f"{SSH_KEY_FILE}.pub").read_bytes()
    elif isinstance(vm.spec.ssh, str):
        files[_AUTH_KEYS] = Path(vm.spec.ssh).read_bytes()
    firstboot: dict[str, bytes | Path] = {}
    for mapping in vm.spec.copy_files:
        host = Path(mapping.host_path)
        if host.is_dir():
            for path in sorted(p for p in host.rglob("*") if p.is_file()):
                rel = path.relative_to(host).as_posix()
                firstboot[f"{mapping.vm_path.rstrip('/')}/{rel}"] = path
        else:
            firstboot[mapping.vm_path] = host
    return files, firstboot


def _record_start(svc: Services, vm: VM, d: Path, plugin_name: str) -> VM:
    from ignitevm import spawn

    status = spawn.runtime_status(d)

    def update(current: VM) -> VM:
        current.status.running = status is not None
        current.status.start_time = (
            datetime.fromtimestamp(status.started_at, UTC) if status else datetime.now(UTC)
        )
        current.status.network.plugin = plugin_name
        current.status.network.ip_addresses = list(status.ip_addresses) if status else []
        current.status.runtime = Runtime(id=str(status.supervisor_pid) if status else "")
        current.status.vmm = Vmm(status.vmm) if status else Vmm.QEMU
        current.status.pid = status.supervisor_pid if status else None
        return current

    return svc.store.update(Kind.VM, vm.metadata.uid, update)
