from __future__ import annotations

from pathlib import Path

from ignitevm.hostinfo import tsc_khz as host_tsc_khz
from ignitevm.kernel import kernel_cmdline
from ignitevm.kernel.cmdline import TRIMS


def test_tcg_cmdline_has_console_trims_tsc_and_cow() -> None:
    words = kernel_cmdline(tsc_khz=2100000).split()
    assert words[0] == "console=ttyS0"
    assert set(TRIMS) <= set(words)
    assert "tsc_early_khz=2100000" in words
    assert "ignite.cow=qcow2" in words
    assert "quiet" in words


def test_kvm_cmdline_has_no_tsc_hint_and_extra_comes_last() -> None:
    line = kernel_cmdline(cow="overlay", tcg=False, quiet=False, extra="  ip=dhcp init=/bin/sh ")
    words = line.split()
    assert not any(w.startswith("tsc_early_khz=") for w in words)
    assert "quiet" not in words
    assert "ignite.cow=overlay" in words
    assert words[-2:] == ["ip=dhcp", "init=/bin/sh"]


def test_host_tsc_khz_reads_cpu_mhz(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2899.998\n")
    assert host_tsc_khz(cpuinfo) == 2899998
    cpuinfo.write_text("processor\t: 0\n")
    assert host_tsc_khz(cpuinfo) is None
    assert host_tsc_khz(tmp_path / "missing") is None
