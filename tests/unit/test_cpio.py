"""The newc writer: what the kernel (and GNU cpio) reads back."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess

import pytest

from ignitevm.errors import IgniteError
from ignitevm.kernel.cpio import CpioWriter, read_cpio


def _archive() -> bytes:
    buf = io.BytesIO()
    cpio = CpioWriter(buf)
    cpio.directory("root", 0o700)
    cpio.file("/etc/ignitevm/modules", b"a.ko\nb.ko\n")
    cpio.file("init", b"#!/bin/sh\n", 0o755)
    cpio.symlink("bin/sh", "/bin/busybox")
    cpio.device("dev/console", char=True, major=5, minor=1)
    cpio.close()
    return buf.getvalue()


def test_entries_read_back_with_parents_modes_and_types() -> None:
    entries = {e.name: e for e in read_cpio(_archive())}
    assert list(entries) == [
        "root", "etc", "etc/ignitevm", "etc/ignitevm/modules", "init", "bin", "bin/sh",
        "dev", "dev/console",
    ]  # fmt: skip
    assert stat.S_IMODE(entries["root"].mode) == 0o700 and entries["root"].is_dir
    assert entries["etc"].is_dir and stat.S_IMODE(entries["etc"].mode) == 0o755
    assert entries["etc/ignitevm/modules"].data == b"a.ko\nb.ko\n"
    assert stat.S_IMODE(entries["init"].mode) == 0o755
    assert entries["bin/sh"].is_symlink and entries["bin/sh"].data == b"/bin/busybox"
    assert stat.S_ISCHR(entries["dev/console"].mode)


def test_output_is_deterministic_and_4_byte_aligned() -> None:
    first, second = _archive(), _archive()
    assert first == second
    assert len(first) % 4 == 0


def test_concatenated_archives_read_as_one() -> None:
    data = _archive() + _archive()
    assert sum(1 for e in read_cpio(data) if e.name == "init") == 2


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "/", ""])
def test_paths_leaving_the_root_are_refused(bad: str) -> None:
    cpio = CpioWriter(io.BytesIO())
    with pytest.raises(IgniteError):
        cpio.file(bad, b"x")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_gnu_cpio_lists_the_archive() -> None:
    out = subprocess.run(
        ["cpio", "-it", "--quiet"], input=_archive(), capture_output=True, check=True
    ).stdout.decode()
    assert out.split() == [
        "root", "etc", "etc/ignitevm", "etc/ignitevm/modules", "init", "bin", "bin/sh",
        "dev", "dev/console",
    ]  # fmt: skip
