"""The kernel command line for ignitevm guests (what /init understands: docs/internals.md)."""

from __future__ import annotations

from pathlib import Path

# Each saves 0.3-1 s of boot under TCG (DESIGN.md, measured).
TRIMS = (
    "mitigations=off",
    "nowatchdog",
    "pci=off",
    "audit=0",
    "i8042.noaux",
    "i8042.nokbd",
    "i8042.nopnp",
    "8250.nr_uarts=1",
    "cryptomgr.notests",
)


def host_tsc_khz(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """The host CPU clock in kHz from the first "cpu MHz" line, or None."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "cpu MHz":
            try:
                return round(float(value.strip()) * 1000)
            except ValueError:
                return None
    return None


def kernel_cmdline(
    *,
    cow: str = "qcow2",
    extra: str = "",
    tcg: bool = True,
    quiet: bool = True,
    tsc_khz: int | None = None,
) -> str:
    """``console=ttyS0`` + the TCG trims + ``ignite.cow`` + ``extra`` (the user's words last).

    Under TCG the kernel can hang calibrating the TSC on ``microvm`` unless it is told the rate.
    ``quiet`` keeps printk off the slow emulated serial port; /init prints its markers anyway.
    """
    words = ["console=ttyS0", "reboot=k", "panic=1", *TRIMS]
    if tcg:
        khz = tsc_khz if tsc_khz is not None else host_tsc_khz()
        if khz:
            words.append(f"tsc_early_khz={khz}")
    if quiet:
        words.append("quiet")
    words.append(f"ignite.cow={cow}")
    if extra.strip():
        words.extend(extra.split())
    return " ".join(words)
