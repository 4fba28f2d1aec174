"""Preflight checks before a VM starts: every problem found at once, each as
``[ERROR Name]: what. how to fix it``, then one error (``--ignore-preflight-checks`` skips some)."""

from __future__ import annotations

import logging
import mmap
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from ignitevm.errors import IgniteError, PreflightError
from ignitevm.hostinfo import DEV_KVM, KVMFacts, kvm_problem, read_kvm_facts
from ignitevm.layout import KernelFiles
from ignitevm.network.base import PortMapping
from ignitevm.vmm.base import Accel, VMMName

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-x86_64"
FIRECRACKER_BINARY = "firecracker"
ALL = "all"
# The kernel parameter that CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES registers: Firecracker declares
# its devices with it, so a kernel without it sees no disk and no NIC.
_MMIO_PARAM = b"virtio_mmio.device"
_MMIO_CONFIG = "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y"


class Check(StrEnum):
    ROOT = "Root"
    KVM = "KVM"
    VMM_BINARY = "VMMBinary"
    TUN_DEVICE = "TunDevice"
    CNI_PLUGINS = "CNIPlugins"
    HOST_PORTS = "HostPorts"
    KERNEL_FITS_VMM = "KernelFitsVMM"
    JAIL = "Jail"


@dataclass(frozen=True)
class Failure:
    check: Check
    what: str
    fix: str

    def line(self) -> str:
        return f"[ERROR {self.check}]: {self.what}. {self.fix}"


@dataclass(frozen=True)
class StartRequest:
    """What is about to run."""

    vmm: VMMName
    network: str
    vmlinux: Path
    accel: Accel = Accel.AUTO  # KVM: asked for explicitly, so it must work for QEMU too
    ports: tuple[PortMapping, ...] = ()
    jail: bool = False  # the VMM is to run jailed (docs/runtime.md "The jail")


@dataclass(frozen=True)
class HostFacts:
    """What the checks look at; ``read_host_facts`` reads them, tests build them by hand."""

    euid: int
    kvm: KVMFacts
    binaries: dict[str, str | None]
    tun_exists: bool
    missing_cni: tuple[str, ...] = ()
    busy_ports: tuple[str, ...] = ()  # "host port 0.0.0.0:80/tcp is not free: <why>"
    kernel_mmio_cmdline: bool | None = None  # None: unknown
    cgroup_problem: str | None = None  # why the jail gets no cgroup (a warning, not a failure)
    kvm_access_fix: str = ""  # how this user gets /dev/kvm (kvm_access_fix)


def parse_ignored(value: str | Iterable[str] | None) -> frozenset[str]:
    """``NAME,NAME`` or ``all`` (case-insensitive) -> the set of check names, or ``{"all"}``."""
    if value is None:
        return frozenset()
    words = value.split(",") if isinstance(value, str) else [w for v in value for w in v.split(",")]
    known = {c.value.lower(): c.value for c in Check}
    names: set[str] = set()
    for word in (w.strip() for w in words):
        if not word:
            continue
        if word.lower() == ALL:
            return frozenset({ALL})
        if word.lower() not in known:
            raise IgniteError(
                f"unknown preflight check {word!r}",
                hint=f"known checks: {', '.join(c.value for c in Check)}, or all",
            )
        names.add(known[word.lower()])
    return frozenset(names)


def _check_root(req: StartRequest, facts: HostFacts) -> Failure | None:
    if req.network == "cni" and facts.euid != 0:
        return Failure(
            Check.ROOT,
            "the cni network plugin needs root: it creates network namespaces, bridges and "
            "iptables rules",
            "Use --network-plugin user (the default for users other than root: ports are "
            "forwarded on the host's loopback), or run ignite as root",
        )
    return None


def only_access_denied(kvm: KVMFacts) -> bool:
    """KVM would work here if this user could open /dev/kvm."""
    return (
        kvm.dev_kvm_exists
        and not kvm.dev_kvm_usable
        and (kvm_problem(replace(kvm, dev_kvm_usable=True)) is None)
    )


def _check_kvm(req: StartRequest, facts: HostFacts) -> Failure | None:
    needed = req.vmm == VMMName.FIRECRACKER or req.accel == Accel.KVM
    problem = kvm_problem(facts.kvm)
    if not needed or problem is None:
        return None
    who = "Firecracker" if req.vmm == VMMName.FIRECRACKER else "QEMU with --accel kvm"
    if only_access_denied(facts.kvm):
        fix = facts.kvm_access_fix or "Give this user read-write access to /dev/kvm"
    else:
        fix = (
            "Run on a host with VT-x/AMD-V (bare metal, or nested virtualization enabled), "
            "or use --vmm qemu (TCG emulation, slower) or --vmm auto"
        )
    return Failure(Check.KVM, f"{who} needs hardware KVM, but {problem}", fix)


def _check_binary(req: StartRequest, facts: HostFacts) -> Failure | None:
    name = FIRECRACKER_BINARY if req.vmm == VMMName.FIRECRACKER else QEMU_BINARY
    if facts.binaries.get(name):
        return None
    fix = (
        "Put a firecracker binary on PATH (hack/fetch-firecracker.sh fetches v1.12.1)"
        if name == FIRECRACKER_BINARY
        else "Install it: apt-get install qemu-system-x86"
    )
    return Failure(Check.VMM_BINARY, f"{name} is not found on PATH", fix)


def _check_tun(req: StartRequest, facts: HostFacts) -> Failure | None:
    if req.network != "cni" or facts.tun_exists:
        return None
    return Failure(
        Check.TUN_DEVICE,
        "/dev/net/tun is missing: the VM's tap device cannot be created",
        "Load the tun module (modprobe tun), or use --network-plugin user",
    )


def _check_cni(req: StartRequest, facts: HostFacts) -> Failure | None:
    if req.network != "cni" or not facts.missing_cni:
        return None
    return Failure(
        Check.CNI_PLUGINS,
        f"the cni network needs what is not found: {', '.join(facts.missing_cni)}",
        "Install them: apt-get install containernetworking-plugins iproute2 iptables "
        "(CNI plugins elsewhere: set IGNITE_CNI_BIN_DIR)",
    )


def _check_ports(req: StartRequest, facts: HostFacts) -> Failure | None:
    if not facts.busy_ports:
        return None
    return Failure(
        Check.HOST_PORTS,
        "; ".join(facts.busy_ports),
        "Choose other host ports with -p, or stop what uses them",
    )


def _check_kernel(req: StartRequest, facts: HostFacts) -> Failure | None:
    if req.vmm != VMMName.FIRECRACKER or facts.kernel_mmio_cmdline is not False:
        return None
    return Failure(
        Check.KERNEL_FITS_VMM,
        f"the kernel {req.vmlinux} lacks CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: it cannot see "
        "Firecracker's disks and NIC (Debian's kernel is such a kernel)",
        "Use a kernel built for microVMs (ignite kernel build) with -k, or --vmm qemu",
    )


def _check_jail(req: StartRequest, facts: HostFacts) -> Failure | None:
    low = sorted({p.host_port for p in req.ports if p.host_port < 1024})
    if not req.jail or req.network != "user" or not low:
        return None
    return Failure(
        Check.JAIL,
        f"the jailed QEMU runs as an unprivileged user and cannot bind host port(s) "
        f"{', '.join(map(str, low))} for user-mode networking",
        "Use host ports from 1024 up, or --network-plugin cni, or "
        "--ignore-preflight-checks Jail to run this VM's QEMU unjailed",
    )


def jail_warnings(req: StartRequest, facts: HostFacts) -> list[str]:
    """What the jail lacks here; the VM starts anyway (docs/runtime.md "The jail")."""
    if not req.jail or facts.euid != 0 or facts.cgroup_problem is None:
        return []
    return [f"[WARNING {Check.JAIL}]: no memory, cpu and pids limits for the VMM: "
            f"{facts.cgroup_problem}"]  # fmt: skip


CHECKS: tuple[Callable[[StartRequest, HostFacts], Failure | None], ...] = (
    _check_root,
    _check_kvm,
    _check_binary,
    _check_tun,
    _check_cni,
    _check_ports,
    _check_kernel,
    _check_jail,
)


def find_failures(
    req: StartRequest, facts: HostFacts, ignored: frozenset[str] = frozenset()
) -> list[Failure]:
    failures = [f for check in CHECKS if (f := check(req, facts)) is not None]
    for f in failures:
        if ALL in ignored or f.check.value in ignored:
            log.warning("ignoring preflight failure: %s", f.line())
    return [f for f in failures if ALL not in ignored and f.check.value not in ignored]


def require_preflight(
    req: StartRequest, ignored: frozenset[str] = frozenset(), facts: HostFacts | None = None
) -> None:
    """Raise PreflightError listing every failed check that is not ignored. A user other
    than root asking for cni gets that one reason: no other fix would make it start."""
    if ALL in ignored:
        log.debug("preflight checks skipped (--ignore-preflight-checks all)")
        return
    facts = facts or read_host_facts(req)
    for warning in jail_warnings(req, facts):
        log.warning("%s", warning)
    failures = find_failures(req, facts, ignored)
    _warn_tcg_for_access(req, facts)
    root = next((f for f in failures if f.check == Check.ROOT), None)
    if root is not None:
        raise PreflightError(root.what, hint=root.fix[0].lower() + root.fix[1:],
                             checks=[root.check.value])  # fmt: skip
    if failures:
        names = ",".join(f.check.value for f in failures)
        raise PreflightError(
            "preflight checks failed:\n" + "\n".join(f.line() for f in failures),
            hint=f"fix the above, or skip them with --ignore-preflight-checks {names}",
            checks=[f.check.value for f in failures],
        )


def _warn_tcg_for_access(req: StartRequest, facts: HostFacts) -> None:
    if req.vmm == VMMName.QEMU and req.accel != Accel.KVM and only_access_denied(facts.kvm):
        log.warning(
            "QEMU emulates the CPU (TCG, several times slower): /dev/kvm is not open to this "
            "user. %s",
            facts.kvm_access_fix,
        )


# ---- reading the host ---------------------------------------------------------------------


def read_host_facts(req: StartRequest) -> HostFacts:
    from ignitevm import proc

    euid = os.geteuid()
    return HostFacts(
        euid=euid,
        kvm=read_kvm_facts(),
        binaries={n: proc.find_tool(n) for n in (QEMU_BINARY, FIRECRACKER_BINARY)},
        tun_exists=Path("/dev/net/tun").exists(),
        # not root: the Root check says why cni cannot work (its config dir may be unreadable)
        missing_cni=_missing_cni() if req.network == "cni" and euid == 0 else (),
        busy_ports=_busy_ports(req.ports),
        kernel_mmio_cmdline=(
            kernel_has_mmio_cmdline(req.vmlinux) if req.vmm == VMMName.FIRECRACKER else None
        ),
        cgroup_problem=_cgroup_problem() if req.jail else None,
        kvm_access_fix=kvm_access_fix(),
    )


def kvm_access_fix(dev_kvm: Path = DEV_KVM) -> str:
    """The commands that give this user /dev/kvm: membership of the device's group, or first a
    group for the device when only root may open it (Debian's udev gives it to kvm, 0660)."""
    import grp
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    try:
        st = dev_kvm.stat()
        group = grp.getgrgid(st.st_gid).gr_name
    except (OSError, KeyError):
        return f"Fix: sudo usermod -aG kvm {user}, then log in again"
    if st.st_gid != 0 and st.st_mode & 0o060 == 0o060:
        return f"Fix: sudo usermod -aG {group} {user}, then log in again"
    return (
        f"Fix: /dev/kvm is {stat.filemode(st.st_mode)} {group}: give it to group kvm (udev rule "
        'KERNEL=="kvm", GROUP="kvm", MODE="0660"), then sudo usermod -aG kvm '
        f"{user} and log in again"
    )


def _cgroup_problem() -> str | None:
    from ignitevm.vmm.cgroups import problem

    return problem()


def _missing_cni() -> tuple[str, ...]:
    from ignitevm.network import cniconf

    return cniconf.missing_requirements(cniconf.resolve_conf_dir(), cniconf.resolve_bin_dirs())


def _busy_ports(ports: Iterable[PortMapping]) -> tuple[str, ...]:
    from ignitevm.errors import ConflictError
    from ignitevm.network.ports import require_free_ports

    busy = []
    for pm in ports:
        try:
            require_free_ports([pm])
        except ConflictError as exc:
            busy.append(exc.message)
    return tuple(busy)


def kernel_has_mmio_cmdline(vmlinux: Path) -> bool | None:
    """Whether the kernel accepts ``virtio_mmio.device=`` (Firecracker's device declarations):
    from a kernel config stored next to it (``config``), else from the vmlinux itself, which
    carries the parameter's name only when the option is built in. None: unreadable."""
    config = vmlinux.with_name(KernelFiles.CONFIG)
    try:
        if config.is_file():
            return any(line.strip() == _MMIO_CONFIG for line in config.read_text().splitlines())
        with open(vmlinux, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(_MMIO_PARAM) >= 0
    except (OSError, ValueError):
        return None
