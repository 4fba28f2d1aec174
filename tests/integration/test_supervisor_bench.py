"""Bench (not a test): ``launch()`` to the guest's marker vs the bare QEMU command line with
the same kernel, initramfs and disk, plus the supervisor's and QEMU's memory.

    .venv/bin/python -m tests.integration.test_supervisor_bench [ROUNDS]

Runs one QEMU at a time, alternating bare and supervised boots; prints medians and the ratio."""

from __future__ import annotations

import os
import select
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ignitevm import proc
from ignitevm.kernel.cmdline import kernel_cmdline
from ignitevm.network.base import Attachment
from ignitevm.spawn import LaunchPlan, kill, launch, read_plan, wait_for_boot
from ignitevm.spawn.runtime import read_runtime
from ignitevm.vmm.base import Disk, MachineSpec, mac_for_uid
from ignitevm.vmm.qemuargs import build_qemu_argv
from tests.integration.test_supervisor_guest import MARKER, ensure_guest, make_disk


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_outside_guest_mib(pid: int, guest_mib: int) -> float:
    """QEMU's RSS minus the guest RAM mapping (the one anonymous mapping of guest_mib)."""
    total = guest = 0
    size = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Size":
            size = int(value.split()[0])
        elif key == "Rss":
            rss = int(value.split()[0])
            total += rss
            if size == guest_mib * 1024:
                guest += rss
    return (total - guest) / 1024


def bare_boot(vm_dir: Path) -> float:
    """Seconds from starting QEMU by hand to the marker on its serial console."""
    argv = build_qemu_argv(read_plan(vm_dir).machine, Attachment())
    start = time.monotonic()
    qemu = proc.start(argv, stdin=proc.PIPE, stdout=proc.PIPE, cwd=vm_dir)
    assert qemu.stdout is not None
    seen = b""
    try:
        while MARKER.encode() not in seen:
            if not select.select([qemu.stdout], [], [], 120)[0]:
                raise RuntimeError("bare QEMU did not boot in 120 s")
            chunk = os.read(qemu.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"bare QEMU exited: {seen[-500:]!r}")
            seen = seen[-4096:] + chunk
        return time.monotonic() - start
    finally:
        qemu.kill()
        qemu.wait()


def supervised_boot(plan: LaunchPlan) -> tuple[float, float, float, float, float]:
    """Seconds from launch() to the marker and to QEMU's start; supervisor and QEMU RSS (MiB)."""
    wall, start = time.time(), time.monotonic()
    pid = launch(plan)
    try:
        wait_for_boot(plan.vm_dir, MARKER, 120)
        elapsed = time.monotonic() - start
        status = read_runtime(plan.vm_dir)
        assert status is not None and status.vmm_pid and status.vmm_started_at
        to_qemu = status.vmm_started_at - wall
        outside = _rss_outside_guest_mib(status.vmm_pid, plan.memory_mib)
        return elapsed, to_qemu, _rss_mib(pid), _rss_mib(status.vmm_pid), outside
    finally:
        kill(plan.vm_dir)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def _ms(values: list[float]) -> str:
    return ", ".join(f"{x * 1000:.0f}" for x in values)


def main(rounds: int) -> None:
    guest = ensure_guest()
    with tempfile.TemporaryDirectory() as tmp:
        vm_dir = Path(tmp) / "vm" / "0123456789abcdef"
        vm_dir.mkdir(parents=True)
        plan = LaunchPlan(
            MachineSpec(
                uid=vm_dir.name,
                name="bench",
                vm_dir=vm_dir,
                vcpus=1,
                memory_mib=256,
                vmlinux=guest.vmlinux,
                initrd=guest.initrd,
                cmdline=kernel_cmdline(),
                disks=(Disk(make_disk(vm_dir / "disk.raw"), "raw"),),
                mac=mac_for_uid(vm_dir.name),
            ),
            boot_marker=MARKER,
        )
        plan.write()
        bare, supervised, to_qemu, sup_rss, vmm_rss, outside = [], [], [], [], [], []
        load_before = os.getloadavg()[0]
        for _ in range(rounds):
            bare.append(bare_boot(vm_dir))
            t, q, s_rss, q_rss, o_rss = supervised_boot(plan)
            outside.append(o_rss)
            supervised.append(t)
            to_qemu.append(q)
            sup_rss.append(s_rss)
            vmm_rss.append(q_rss)
    b, s = statistics.median(bare), statistics.median(supervised)
    print(f"rounds                      {rounds}")
    print(f"load average                {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"bare QEMU to marker         {b:.2f} s  (all: {_fmt(bare)})")
    print(f"launch() to marker          {s:.2f} s  (all: {_fmt(supervised)})")
    print(f"ratio                       {s / b:.3f}  (goal <= 1.10)")
    q = statistics.median(to_qemu) * 1000
    print(f"launch() until QEMU starts  {q:.0f} ms  (all: {_ms(to_qemu)})")
    print(f"supervisor RSS              {statistics.median(sup_rss):.1f} MiB")
    print(f"QEMU RSS (256 MiB guest)    {statistics.median(vmm_rss):.1f} MiB")
    print(f"  of which not guest RAM    {statistics.median(outside):.1f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
