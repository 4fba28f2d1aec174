"""Bench: the library (issue 12), against baselines measured in the same run.

    .venv/bin/python bench/library.py [--rounds N]       (seconds; no VM is started)

1. `python -c "import ignitevm"` against `python -c pass`. Goal: <= 1.1x + 40 ms.
2. `client.vms.list()` over 30 VMs, inside one process, against reading their 30 metadata.json
   files with json.load (the floor) and `ignite ps -a` (a process per call). Goal: < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import PY, median_of, print_rows

VMS = 30


def python(code: str) -> None:
    subprocess.run([PY, "-c", code], check=True)


def fill(state: Path) -> None:
    """30 stored VMs (stopped; the store's own format), as `ignite create` leaves them."""
    from ignitevm.api import VM, ObjectMeta
    from ignitevm.api.names import new_uid
    from ignitevm.store import Store

    store = Store(state)
    for i in range(VMS):
        vm = VM(metadata=ObjectMeta(name=f"bench-{i}", uid=new_uid()))
        vm.spec.image.oci = "ignitevm/default:latest"
        vm.spec.kernel.oci = "deb:linux-image-amd64"
        store.save(vm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    n = parser.parse_args().rounds
    bare = median_of(n, lambda: python("pass"))
    imported = median_of(n, lambda: python("import ignitevm"))
    with tempfile.TemporaryDirectory(prefix="ignitevm-bench-") as tmp:
        state = Path(tmp) / "state"
        fill(state)
        import ignitevm

        client = ignitevm.Client(state_dir=state)
        assert len(client.vms.list()) == VMS  # warm: the first call imports the modules
        listed = median_of(n, client.vms.list)
        files = sorted(state.glob("vm/*/metadata.json"))
        floor = median_of(n, lambda: [json.loads(f.read_text()) for f in files])
        env = {**os.environ, "IGNITE_STATE_DIR": str(state)}
        ps = median_of(max(3, n // 3), lambda: subprocess.run(
            [str(Path(PY).parent / "ignite"), "ps", "-a"], env=env, check=True,
            capture_output=True))  # fmt: skip
    goal_import = 1.1 * bare + 0.040
    rows = [
        ["figure", "value", "baseline (same run)", "goal", "met"],
        ["python -c 'import ignitevm'", f"{imported * 1000:.1f} ms",
         f"python -c pass {bare * 1000:.1f} ms", f"<= {goal_import * 1000:.1f} ms",
         "yes" if imported <= goal_import else "NO"],
        [f"client.vms.list() ({VMS} VMs)", f"{listed * 1000:.1f} ms",
         f"json.load x{VMS} {floor * 1000:.1f} ms; ignite ps -a {ps * 1000:.0f} ms",
         "< 50 ms", "yes" if listed < 0.050 else "NO"],
    ]  # fmt: skip
    print_rows(rows)
    sys.exit(0 if imported <= goal_import and listed < 0.050 else 1)


if __name__ == "__main__":
    main()
