"""A VM's own cgroup: memory, CPU and process limits for its VMM (docs/runtime.md "The jail").

cgroup v2 where the host has it with the memory, cpu and pids controllers (the unified
hierarchy at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host); else the v1
hierarchies of those controllers (these machines: hybrid, with every controller bound to v1).
The groups are ``ignitevm/<vm uid>`` in each hierarchy; the VMM joins them before it execs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PARENT = "ignitevm"
CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    vcpus: int
    pids: int

    def files(self, version: int) -> dict[str, dict[str, str]]:
        """controller -> {file: value} for cgroup ``version``."""
        quota = self.vcpus * CPU_PERIOD_US
        if version == 2:
            return {"memory": {"memory.max": str(self.memory_bytes), "memory.swap.max": "0"},
                    "cpu": {"cpu.max": f"{quota} {CPU_PERIOD_US}"},
                    "pids": {"pids.max": str(self.pids)}}  # fmt: skip
        return {"memory": {"memory.limit_in_bytes": str(self.memory_bytes)},
                "cpu": {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)},
                "pids": {"pids.max": str(self.pids)}}  # fmt: skip


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    mounts: dict[str, Path]  # controller -> the hierarchy's root (one path for all in v2)

    def group_dirs(self, name: str) -> dict[str, Path]:
        return {c: m / PARENT / name for c, m in self.mounts.items()}


def find_hierarchy(root: Path = ROOT) -> Hierarchy | None:
    """Where memory, cpu and pids can be limited, or None (no cgroup fs, or controllers
    neither in v2 nor mounted as v1)."""
    for unified in (root, root / "unified"):
        try:
            available = (unified / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if all(c in available for c in CONTROLLERS):
            return Hierarchy(2, dict.fromkeys(CONTROLLERS, unified))
    mounts = {c: root / c for c in CONTROLLERS}
    if all((m / "cgroup.procs").exists() for m in mounts.values()):
        return Hierarchy(1, mounts)
    return None


def problem(root: Path = ROOT) -> str | None:
    """Why a VMM cannot get its own limits here, or None."""
    if os.geteuid() != 0:
        return "cgroups need root here (no delegated cgroup for this user)"
    hierarchy = find_hierarchy(root)
    if hierarchy is None:
        return (f"no cgroup hierarchy with the {', '.join(CONTROLLERS)} controllers under "
                f"{root} (neither cgroup v2 nor v1)")  # fmt: skip
    parent = next(iter(hierarchy.mounts.values()))
    if not os.access(parent, os.W_OK):
        return f"{parent} is not writable (no cgroup delegation)"
    return None


def create(name: str, limits: Limits, root: Path = ROOT) -> tuple[Path, ...]:
    """Make the VM's groups with ``limits``; the ``cgroup.procs`` files its VMM writes itself
    into. OSError when the host refuses (the caller warns and goes on without)."""
    hierarchy = find_hierarchy(root)
    if hierarchy is None:
        raise OSError(errno.ENOENT, "no usable cgroup hierarchy")
    if hierarchy.version == 2:
        _enable_controllers(next(iter(hierarchy.mounts.values())))
    files = limits.files(hierarchy.version)
    procs = []
    for controller, group in hierarchy.group_dirs(name).items():
        group.mkdir(parents=True, exist_ok=True)
        for filename, value in files[controller].items():
            with contextlib.suppress(FileNotFoundError):  # memory.swap.max: no swap accounting
                (group / filename).write_text(value)
        procs.append(group / "cgroup.procs")
    return tuple(dict.fromkeys(procs))  # v2: the one group, once


def _enable_controllers(unified: Path) -> None:
    """v2 delegates a controller to children only when the parent's subtree_control lists it."""
    parent = unified / PARENT
    parent.mkdir(exist_ok=True)
    for d in (unified, parent):
        wanted = " ".join(f"+{c}" for c in CONTROLLERS)
        with contextlib.suppress(OSError):  # already enabled, or set by the host's manager
            (d / "cgroup.subtree_control").write_text(wanted)


def remove(procs: tuple[Path, ...], timeout: float = 2.0) -> None:
    """Remove the groups whose ``cgroup.procs`` files these are. A process still in one is the
    VM's VMM outliving its supervisor (a jailer's child keeps no death signal): it is killed."""
    deadline = time.monotonic() + timeout
    for procs_file in procs:
        with contextlib.suppress(OSError, ValueError):
            for pid in procs_file.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    for group in (p.parent for p in procs if p.parent.exists()):
        while True:
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("cannot remove cgroup %s: %s", group, exc.strerror)
                    break
                time.sleep(0.05)


def group_procs(name: str, root: Path = ROOT) -> tuple[Path, ...]:
    """The ``cgroup.procs`` files the VM ``name``'s groups have (or would have) here."""
    hierarchy = find_hierarchy(root)
    if hierarchy is None:
        return ()
    dirs = hierarchy.group_dirs(name).values()
    return tuple(dict.fromkeys(d / "cgroup.procs" for d in dirs))


def memory_usage(procs: Path) -> int | None:
    """Bytes charged to the group now (v2 memory.current, v1 memory.usage_in_bytes)."""
    for name in ("memory.current", "memory.usage_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            return int((procs.parent / name).read_text())
    return None
