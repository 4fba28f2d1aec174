"""The kernel command line for ignitevm guests (what /init understands: docs/internals.md)."""

from __future__ import annotations

from ignitevm import hostinfo

# Each saves 0.3-1 s of boot under TCG (docs/kernel.md, measured).
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
        khz = tsc_khz if tsc_khz is not None else hostinfo.tsc_khz()
        if khz:
            words.append(f"tsc_early_khz={khz}")
    if quiet:
        words.append("quiet")
    words.append(f"ignite.cow={cow}")
    if extra.strip():
        words.extend(extra.split())
    return " ".join(words)
