"""The jail (docs/runtime.md "The jail") around a real QEMU: an unprivileged uid, no
capabilities, seccomp, a mount namespace with only what QEMU needs, a cgroup whose memory cap
holds while the guest allocates beyond its RAM, and nothing of it left after rm or a kill -9."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = pytest.mark.integration


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _runtime(ignite: Ignite, vm: str) -> tuple[Path, dict[str, object]]:
    uid = ignite.inspect(vm)["metadata"]["uid"]  # type: ignore[index]
    d = ignite.state_dir / "vm" / str(uid)
    return d, json.loads((d / "runtime.json").read_text())


def _memory_group(pid: int) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            unified = Path("/sys/fs/cgroup") / path.lstrip("/")
            if (unified / "memory.max").exists():
                return unified
    raise AssertionError(f"QEMU {pid} is in no memory cgroup")


def _limit_and_peak(group: Path) -> tuple[int, int]:
    if (group / "memory.max").exists():
        return int((group / "memory.max").read_text()), int((group / "memory.peak").read_text())
    return (
        int((group / "memory.limit_in_bytes").read_text()),
        int((group / "memory.max_usage_in_bytes").read_text()),
    )


def test_qemu_runs_jailed_and_capped(ignite: Ignite, vm_name: str) -> None:
    ignite("run", "--name", vm_name, "--memory", "256MB", "--ssh", "--network-plugin", "user")
    d, rt = _runtime(ignite, vm_name)
    pid = int(str(rt["vmm_pid"]))
    st = _status(pid)
    assert st["Uid"].split()[0] != "0" and st["Uid"].split()[0] == str(rt["jail_uid"])
    assert st["CapEff"] == "0000000000000000" and st["CapBnd"] == "0000000000000000"
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"
    # its root is the jail: /usr, a few devices, its kernel and initramfs; not the VM's keys
    root = Path(f"/proc/{pid}/root")
    assert (root / "usr" / "bin").is_dir() and (root / str(d / "initrd")[1:]).exists()
    assert not (root / str(d / "id_ed25519")[1:]).exists()
    assert not (root / str(ignite.state_dir)[1:] / "image").exists()
    assert sorted(p.name for p in (root / "dev").iterdir()) == [
        "full", "null", "random", "urandom", "zero"]  # fmt: skip
    group = _memory_group(pid)
    limit, _ = _limit_and_peak(group)
    assert limit == (256 + 192) << 20  # guest RAM + the documented overhead
    # the guest asks for more than its RAM: the guest's OOM killer answers, QEMU stays capped
    ignite("exec", vm_name, "dd if=/dev/zero of=/dev/null bs=400M count=1; true", check=False,
           timeout=300)  # fmt: skip
    ignite("exec", vm_name, "cat /dev/zero | head -c 600m | tail -c 1 >/dev/null; true",
           check=False, timeout=300)  # fmt: skip
    _, peak = _limit_and_peak(group)
    assert peak <= limit
    assert int(_status(pid)["VmRSS"].split()[0]) * 1024 <= limit
    assert "Linux" in ignite("exec", vm_name, "uname -s").stdout  # still there, still working
    groups = [Path(p).parent for p in rt["cgroups"]]  # type: ignore[attr-defined]
    assert groups and all(g.is_dir() for g in groups)
    claim = Path(f"/run/ignitevm/jail/{rt['jail_uid']}.lock")
    assert claim.exists()  # its id is held for the run
    ignite("rm", "-f", vm_name)
    assert not any(g.exists() for g in groups)
    assert not claim.exists()  # and given back without a file left behind


def test_kill9_of_the_supervisor_leaves_no_cgroup(ignite: Ignite, vm_name: str) -> None:
    ignite("run", "--name", vm_name, "--memory", "160MB")
    _, rt = _runtime(ignite, vm_name)
    groups = [Path(p).parent for p in rt["cgroups"]]  # type: ignore[attr-defined]
    assert groups and all(g.is_dir() for g in groups)
    os.kill(int(str(rt["supervisor_pid"])), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{rt['vmm_pid']}").exists():  # QEMU dies with its supervisor
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ignite("rm", vm_name)  # not running any more: no -f needed; the cleanup takes the groups
    assert not any(g.exists() for g in groups)
