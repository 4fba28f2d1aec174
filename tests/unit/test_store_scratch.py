"""Scratch directories in <state>/tmp (store/scratch.py): held by their owner, and removed
by the next import or delete once that owner is dead (issue 10, defect 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ignitevm import proc
from ignitevm.api import Kind
from ignitevm.ops.images import import_image
from ignitevm.ops.services import Services
from ignitevm.store.scratch import UNHELD_AGE, scratch_dir, sweep
from tests.unit.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]

# a process that works in a scratch directory and runs a tool there (as an import runs
# mkfs.ext4), printing the directory and the tool's pid
_WORKER = """
import sys
from pathlib import Path
from ignitevm import proc
from ignitevm.store.scratch import scratch_dir
with scratch_dir(Path(sys.argv[1]), "import") as work:
    (work / "rootfs").mkdir()
    (work / "rootfs" / "big").write_bytes(b"x" * (1 << 20))
    proc.run(["sh", "-c", "echo " + str(work) + " $$ > " + sys.argv[2] + "; exec sleep 60"])
"""


def _start_worker(tmp: Path, out: Path) -> tuple[subprocess.Popen[bytes], Path, int]:
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp), str(out)], cwd=ROOT)
    wait_for(lambda: out.exists() and len(out.read_text().split()) == 2, timeout=10)
    work, pid = out.read_text().split()
    return worker, Path(work), int(pid)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(proc.find_tool("mkfs.ext4") is None, reason="needs mkfs.ext4")
def test_a_killed_import_is_cleaned_by_the_next_one_and_a_live_one_is_not(
    svc: Services, tmp_path: Path
) -> None:
    tmp = svc.store.tmp_dir()
    dead, dead_dir, dead_tool = _start_worker(tmp, tmp_path / "dead")
    live, live_dir, live_tool = _start_worker(tmp, tmp_path / "live")
    try:
        dead.send_signal(signal.SIGKILL)  # kill -9 of `ignite image import`
        dead.wait()
        wait_for(lambda: _gone(dead_tool), timeout=5)  # its tool died with it
        assert dead_dir.exists()
        rootfs = tmp_path / "rootfs"
        (rootfs / "etc").mkdir(parents=True)
        (rootfs / "etc" / "hostname").write_text("vm\n")
        image = import_image(svc, f"dir:{rootfs}", name="next")
        assert svc.store.find(Kind.IMAGE, image.metadata.uid) is not None
        assert not dead_dir.exists()  # the dead import's 1 MiB went with the next import
        assert live_dir.exists() and (live_dir / "rootfs" / "big").exists()  # in use
        assert sorted(p.name for p in tmp.iterdir()) == [".lock", live_dir.name]
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    wait_for(lambda: _gone(live_tool), timeout=5)
    sweep(tmp)
    assert [p.name for p in tmp.iterdir()] == [".lock"]


def test_scratch_dirs_are_private_and_removed_after_use(svc: Services) -> None:
    tmp = svc.store.tmp_dir()
    assert tmp.stat().st_mode & 0o777 == 0o700
    with scratch_dir(tmp, "kernel") as work:
        assert work.stat().st_mode & 0o777 == 0o700
        assert sweep(tmp) == 0 and work.exists()  # held by this process
    assert not work.exists()


def test_a_delete_killed_midway_is_finished_by_the_next_sweep(svc: Services) -> None:
    tmp = svc.store.tmp_dir()
    grave = tmp / "deleted-vm-0123456789abcdef-0badcafe"
    (grave / "sub").mkdir(parents=True)
    assert sweep(tmp) == 1 and not grave.exists()


def test_what_is_not_a_scratch_dir_stays(svc: Services) -> None:
    tmp = svc.store.tmp_dir()
    build = tmp / "kernel-build"  # `ignite kernel build`'s cache, kept between builds
    build.mkdir()
    young = tmp / "import-abcd_123"  # an older version's import: maybe still running
    young.mkdir()
    old = tmp / "import-zzzz_999"
    old.mkdir()
    then = time.time() - UNHELD_AGE - 60
    os.utime(old, (then, then))
    sweep(tmp)
    assert build.exists() and young.exists() and not old.exists()


def test_delete_refuses_a_directory_a_process_holds(svc: Services) -> None:
    from ignitevm.api import VM, ObjectMeta
    from ignitevm.errors import ConflictError
    from ignitevm.store.locks import try_hold_lock

    vm = VM(metadata=ObjectMeta(name="held", uid="0123456789abcdef"))
    svc.store.save(vm)
    d = svc.store.object_dir(Kind.VM, vm.metadata.uid)
    fd = try_hold_lock(d)  # what a running VM's supervisor holds
    try:
        with pytest.raises(ConflictError, match="in use"):
            svc.store.delete(Kind.VM, vm.metadata.uid)
        assert (d / "metadata.json").exists()
    finally:
        assert fd is not None
        os.close(fd)
    svc.store.delete(Kind.VM, vm.metadata.uid)
    assert not d.exists()
