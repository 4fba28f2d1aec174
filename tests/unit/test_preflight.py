"""Preflight checks with injected host facts: which checks apply to which start, the
``[ERROR Name]: ...`` lines, --ignore-preflight-checks, and the kernel's virtio-mmio test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ignitevm.errors import IgniteError
from ignitevm.network.base import PortMapping
from ignitevm.ops.preflight import (
    Check,
    HostFacts,
    PreflightError,
    StartRequest,
    find_failures,
    kernel_has_mmio_cmdline,
    kvm_access_fix,
    parse_ignored,
    require_preflight,
)
from ignitevm.vmm.base import Accel, VMMName
from ignitevm.vmm.choose import KVMFacts

GOOD_KVM = KVMFacts(True, True, False, True)
PVM = KVMFacts(True, True, True, False)
ALL_BINARIES: dict[str, str | None] = {
    "qemu-system-x86_64": "/usr/bin/qemu-system-x86_64",
    "firecracker": "/usr/local/bin/firecracker",
}


def _facts(**kw: object) -> HostFacts:
    values: dict[str, object] = {
        "euid": 0,
        "kvm": GOOD_KVM,
        "binaries": ALL_BINARIES,
        "tun_exists": True,
        "kernel_mmio_cmdline": True,
    }
    values.update(kw)
    return HostFacts(**values)  # type: ignore[arg-type]


def _req(vmm: VMMName = VMMName.FIRECRACKER, network: str = "cni", **kw: object) -> StartRequest:
    return StartRequest(vmm, network, Path("/k/vmlinux"), **kw)  # type: ignore[arg-type]


def test_all_good() -> None:
    assert find_failures(_req(), _facts()) == []


def test_firecracker_on_nested_pvm_fails_kvm_with_a_fix() -> None:
    (failure,) = find_failures(_req(network="none"), _facts(kvm=PVM))
    assert failure.check == Check.KVM
    line = failure.line()
    assert line.startswith(
        "[ERROR KVM]: Firecracker needs hardware KVM, but /dev/kvm is nested PVM"
    )
    assert "--vmm qemu" in line


def test_qemu_needs_kvm_only_when_asked() -> None:
    assert find_failures(_req(VMMName.QEMU, "none"), _facts(kvm=PVM)) == []
    (failure,) = find_failures(_req(VMMName.QEMU, "none", accel=Accel.KVM), _facts(kvm=PVM))
    assert failure.check == Check.KVM and "QEMU with --accel kvm" in failure.what


def test_every_failure_is_listed_in_one_error() -> None:
    facts = _facts(
        euid=0,
        kvm=KVMFacts(False, False, False, False),
        binaries={"qemu-system-x86_64": None, "firecracker": None},
        tun_exists=False,
        missing_cni=("bridge", "portmap"),
        busy_ports=("host port 0.0.0.0:8080/tcp is not free: Address already in use",),
        kernel_mmio_cmdline=False,
    )
    req = _req(ports=(PortMapping(8080, 80),))
    with pytest.raises(PreflightError) as info:
        require_preflight(req, facts=facts)
    lines = str(info.value).splitlines()
    assert lines[0] == "preflight checks failed:"
    assert [line.split("]")[0] for line in lines[1:]] == [
        "[ERROR KVM",
        "[ERROR VMMBinary",
        "[ERROR TunDevice",
        "[ERROR CNIPlugins",
        "[ERROR HostPorts",
        "[ERROR KernelFitsVMM",
    ]
    assert "bridge, portmap" in lines[4] and "0.0.0.0:8080/tcp" in lines[5]
    assert (
        info.value.hint is not None
        and "--ignore-preflight-checks KVM,VMMBinary," in info.value.hint
    )


def test_cni_without_root_is_one_line_naming_the_reason() -> None:
    facts = _facts(euid=1000, tun_exists=False, missing_cni=("bridge",))
    with pytest.raises(PreflightError) as info:
        require_preflight(_req(VMMName.QEMU, "cni"), facts=facts)
    assert str(info.value) == (
        "the cni network plugin needs root: it creates network namespaces, bridges and "
        "iptables rules"
    )
    assert info.value.hint is not None and info.value.hint.startswith("use --network-plugin user")
    require_preflight(_req(VMMName.QEMU, "user"), facts=facts)
    require_preflight(_req(VMMName.QEMU, "cni"), parse_ignored("Root,TunDevice,CNIPlugins"),
                      facts=facts)  # fmt: skip


def test_a_users_cni_facts_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """/etc/cni/net.d may be root's alone: reading it as a user was a traceback, not the
    one-line Root error."""
    from ignitevm.ops import preflight

    def unreadable() -> tuple[str, ...]:
        raise PermissionError(13, "Permission denied", "/etc/cni/net.d")

    monkeypatch.setattr(preflight, "_missing_cni", unreadable)
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(PreflightError, match="cni network plugin needs root"):
        require_preflight(_req(VMMName.QEMU, "cni"))


def test_kvm_closed_to_the_user_says_how_to_open_it(caplog: pytest.LogCaptureFixture) -> None:
    closed = KVMFacts(True, False, False, True)  # KVM works, but not for this user
    facts = _facts(euid=1000, kvm=closed, kvm_access_fix="Fix: sudo usermod -aG kvm alice")
    (failure,) = find_failures(_req(network="none"), facts)
    assert failure.check == Check.KVM and failure.fix == "Fix: sudo usermod -aG kvm alice"
    with caplog.at_level("WARNING"):
        require_preflight(_req(VMMName.QEMU, "user", accel=Accel.TCG), facts=facts)
    assert "TCG" in caplog.text and "usermod -aG kvm alice" in caplog.text
    caplog.clear()
    pvm_closed = KVMFacts(True, False, True, False)  # access would not help: no advice
    with caplog.at_level("WARNING"):
        require_preflight(_req(VMMName.QEMU, "user", accel=Accel.TCG), facts=_facts(kvm=pvm_closed))
    assert caplog.text == ""
    (failure,) = find_failures(_req(network="none"), _facts(kvm=pvm_closed))
    assert "usermod" not in failure.fix


def test_kvm_access_fix_reads_the_device(tmp_path: Path) -> None:
    import grp
    import os

    dev = tmp_path / "kvm"
    dev.touch()
    group = os.getgid() or 65534  # root may give it to any group, a user to their own
    if os.geteuid() != 0 and group == 0:
        pytest.skip("needs a group other than root")
    os.chown(dev, -1, group)
    os.chmod(dev, 0o660)
    name = grp.getgrgid(group).gr_name
    assert kvm_access_fix(dev).startswith(f"Fix: sudo usermod -aG {name} ")
    os.chmod(dev, 0o600)  # only its owner: a group for the device first
    fix = kvm_access_fix(dev)
    assert 'GROUP="kvm", MODE="0660"' in fix and "usermod -aG kvm" in fix
    assert kvm_access_fix(tmp_path / "absent").startswith("Fix: sudo usermod -aG kvm ")


def test_network_checks_apply_to_cni_only() -> None:
    facts = _facts(euid=1000, tun_exists=False, missing_cni=("bridge",))
    assert find_failures(_req(VMMName.QEMU, "user"), facts) == []
    names = {f.check for f in find_failures(_req(VMMName.QEMU, "cni"), facts)}
    assert names == {Check.ROOT, Check.TUN_DEVICE, Check.CNI_PLUGINS}


def test_kernel_check_is_for_firecracker_and_unknown_passes() -> None:
    assert find_failures(_req(VMMName.QEMU, "none"), _facts(kernel_mmio_cmdline=False)) == []
    assert find_failures(_req(network="none"), _facts(kernel_mmio_cmdline=None)) == []
    (failure,) = find_failures(_req(network="none"), _facts(kernel_mmio_cmdline=False))
    assert failure.check == Check.KERNEL_FITS_VMM and "ignite kernel build" in failure.fix


def test_ignored_checks() -> None:
    facts = _facts(kvm=PVM, kernel_mmio_cmdline=False)
    req = _req(network="none")
    require_preflight(req, parse_ignored("all"), facts=facts)
    require_preflight(req, parse_ignored("kvm,KernelFitsVMM"), facts=facts)
    with pytest.raises(PreflightError, match="KernelFitsVMM") as info:
        require_preflight(req, parse_ignored("KVM"), facts=facts)
    assert "[ERROR KVM]" not in str(info.value)
    assert parse_ignored(["Root", "HostPorts,TunDevice"]) == {"Root", "HostPorts", "TunDevice"}
    assert parse_ignored("") == frozenset() and parse_ignored(None) == frozenset()
    with pytest.raises(IgniteError, match="unknown preflight check 'Nope'"):
        parse_ignored("Nope")


def test_kernel_has_mmio_cmdline(tmp_path: Path) -> None:
    built = tmp_path / "a" / "vmlinux"
    built.parent.mkdir()
    built.write_bytes(b"\x7fELF" + b"\0" * 100 + b"virtio_mmio.device\0" + b"\0" * 10)
    debian = tmp_path / "b" / "vmlinux"
    debian.parent.mkdir()
    debian.write_bytes(b"\x7fELF" + b"\0" * 100 + b"virtio_mmio.c\0")
    assert kernel_has_mmio_cmdline(built) is True
    assert kernel_has_mmio_cmdline(debian) is False
    assert kernel_has_mmio_cmdline(tmp_path / "missing") is None
    # a stored kernel config is the authority when present
    (debian.parent / "config").write_text(
        "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n"
    )
    assert kernel_has_mmio_cmdline(debian) is True


def test_requested_vmm_precedence(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ignitevm.api import VM
    from ignitevm.api.types import Vmm
    from ignitevm.ops.vmmchoice import requested_vmm, resolve_vmm

    svc: Any = SimpleNamespace(config=SimpleNamespace(spec=SimpleNamespace(vmm=None)))
    vm = VM()
    assert requested_vmm(svc, vm) == ("auto", "the default")
    svc.config.spec.vmm = Vmm.QEMU
    assert requested_vmm(svc, vm) == ("qemu", "the configuration's spec.vmm")
    vm.spec.vmm = Vmm.FIRECRACKER
    assert requested_vmm(svc, vm) == ("firecracker", "the VM's spec.vmm")
    assert requested_vmm(svc, vm, "auto") == ("auto", "--vmm")
    choice = resolve_vmm(svc, vm, "auto", facts=PVM, firecracker="/bin/firecracker")
    assert (choice.vmm, choice.accel) == (VMMName.QEMU, Accel.TCG)
    choice = resolve_vmm(svc, vm, "auto", facts=GOOD_KVM, firecracker="/bin/firecracker")
    assert (choice.vmm, choice.accel) == (VMMName.FIRECRACKER, Accel.KVM)
    debian = tmp_path / "vmlinux"
    debian.write_bytes(b"\x7fELF virtio_mmio.c")
    choice = resolve_vmm(
        svc, vm, "auto", vmlinux=debian, facts=GOOD_KVM, firecracker="/bin/firecracker"
    )
    assert (choice.vmm, choice.accel) == (VMMName.QEMU, Accel.KVM)


def test_kernel_import_keeps_the_config(tmp_path: Path) -> None:
    from ignitevm.layout import KernelFiles
    from ignitevm.ops.kernels import keep_kernel_config

    boot = tmp_path / "deb" / "rootfs" / "boot"
    boot.mkdir(parents=True)
    (boot / "config-6.1.0-1-amd64").write_text("# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n")
    obj = tmp_path / "object"
    obj.mkdir()
    (obj / "vmlinux").write_bytes(b"\x7fELF virtio_mmio.device")  # the config wins
    keep_kernel_config(tmp_path, "6.1.0-1-amd64", obj)
    assert (obj / KernelFiles.CONFIG).is_file()
    assert kernel_has_mmio_cmdline(obj / "vmlinux") is False
    other = tmp_path / "other"
    other.mkdir()
    keep_kernel_config(tmp_path, "6.2.0", other)  # no config for that version: nothing
    assert not (other / KernelFiles.CONFIG).exists()


def test_cni_host_checks_say_how_to_fix() -> None:
    # the supervisor checks nothing itself: these are the only checks before a cni start
    facts = _facts(euid=1000, missing_cni=("bridge", "iptables"))
    root, cni = find_failures(_req(VMMName.QEMU, "cni"), facts)
    assert root.check == Check.ROOT and "--network-plugin user" in root.fix
    assert cni.check == Check.CNI_PLUGINS and "bridge, iptables" in cni.what
    assert "apt-get install containernetworking-plugins" in cni.fix


def test_busy_host_port_is_read_from_the_host() -> None:
    import socket

    from ignitevm.ops.preflight import read_host_facts

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        req = _req(VMMName.QEMU, "user", ports=(PortMapping(port, 22, host_ip="127.0.0.1"),))
        facts = read_host_facts(req)
    assert len(facts.busy_ports) == 1 and f"127.0.0.1:{port}/tcp" in facts.busy_ports[0]
    assert facts.missing_cni == ()  # not a cni start: its tools are not looked for
    (failure,) = [f for f in find_failures(req, facts) if f.check == Check.HOST_PORTS]
    assert "not free" in failure.what


def test_jail_check_and_warning() -> None:
    from ignitevm.ops.preflight import jail_warnings

    low = (PortMapping(80, 80), PortMapping(2222, 22))
    jailed = StartRequest(VMMName.QEMU, "user", Path("/k"), ports=low, jail=True)
    (failure,) = find_failures(jailed, _facts())
    assert failure.check == Check.JAIL and "80" in failure.what and "2222" not in failure.what
    assert "--ignore-preflight-checks Jail" in failure.fix
    unjailed = StartRequest(VMMName.QEMU, "user", Path("/k"), ports=low, jail=False)
    assert find_failures(unjailed, _facts()) == []
    cni = StartRequest(VMMName.QEMU, "cni", Path("/k"), ports=low, jail=True)
    assert [f.check for f in find_failures(cni, _facts())] == []  # portmap binds nothing
    facts = _facts(cgroup_problem="no cgroup hierarchy")
    (warning,) = jail_warnings(jailed, facts)
    assert warning.startswith("[WARNING Jail]") and "no cgroup hierarchy" in warning
    assert jail_warnings(unjailed, facts) == []
