"""The tree keeps its shape (docs/architecture.md): imports point down, no import cycle, no
module over 400 lines, every state-dir file name comes from layout.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ignitevm"


def test_layers_and_no_import_cycle() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "hack" / "imports.py")],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_module_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_state_dir_file_names_come_from_layout() -> None:
    from ignitevm import layout

    names = {
        v
        for cls in (layout.VMFiles, layout.ImageFiles, layout.KernelFiles)
        for k, v in vars(cls).items()
        if k.isupper() and isinstance(v, str)
    }
    names -= {"config", "vmlinux"}  # words of kernel builds and images too, not only the store
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "layout.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for name in names:
                if re.search(rf"""["']{re.escape(name)}["']""", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {name}")
    assert offenders == []
