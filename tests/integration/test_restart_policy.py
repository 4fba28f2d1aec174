"""VMs come back after a host reboot (issue 10 part 3; docs/gitops.md "Restart policies"):
two real VMs under QEMU, one `--restart always`, one `--restart no`; a simulated reboot
(every supervisor and QEMU killed with SIGKILL, their network namespaces deleted); then one
`ignited daemon --once` over a manifest directory. The `always` VM runs again, the `no` VM
stays stopped, and nothing of the dead runs is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = pytest.mark.integration


def _runtime(ignite: Ignite, uid: str) -> dict[str, object] | None:
    path = ignite.state_dir / "vm" / uid / "runtime.json"
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _simulate_reboot(ignite: Ignite, uids: list[str]) -> list[int]:
    """SIGKILL every supervisor and VMM at once (no cleanup runs, as at a power loss) and
    delete their network namespaces (a reboot empties /run/netns); the pids killed."""
    runs = [_runtime(ignite, uid) for uid in uids]
    pids = [int(p) for r in runs if r for p in (r["supervisor_pid"], r.get("vmm_pid")) if p]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for run in runs:
        if run and run.get("netns"):
            subprocess.run(["ip", "netns", "delete", str(run["netns"])], check=False)
    return pids


def test_always_vms_run_again_after_a_reboot_and_no_vms_stay_stopped(
    ignite: Ignite, vm_name: str, tmp_path: Path
) -> None:
    always, never = f"{vm_name}-always", f"{vm_name}-no"
    uids = {}
    for name, policy in ((always, "always"), (never, "no")):
        ignite("run", "--name", name, "--restart", policy, "--memory", "160MB",
               "--size", "1GB", "--network-plugin", "user")  # fmt: skip
        uids[name] = ignite("-q", "ps", "-f", f"{{{{.ObjectMeta.Name}}}}={name}").stdout.strip()
    assert ignite.inspect(always)["spec"]["restartPolicy"] == "always"  # type: ignore[index]
    killed = _simulate_reboot(ignite, list(uids.values()))
    assert len(killed) == 4
    ps = ignite("ps", "-a").stdout
    assert "Up " not in ps  # the truth after the "reboot": both stopped

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    env = {**os.environ, "IGNITE_STATE_DIR": str(ignite.state_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "ignitevm.cli.ignited", "daemon", "--once", "--manifest-dir",
         str(manifests), "--ignite-config", str(ignite.config)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"restart {always}" in done.stderr and f"restart {never}" not in done.stderr

    running = ignite("ps").stdout
    assert always in running and never not in running
    assert "ignitevm-init: exec" in ignite.console(always)  # booted again, to its init
    status = ignite.inspect(never)["status"]
    assert status["running"] is False  # type: ignore[index]
    assert status["lastRun"]["outcome"] == "lost"  # type: ignore[index]
    # nothing of the dead runs leaks: no runtime record left, no process of theirs
    assert _runtime(ignite, uids[never]) is None
    assert not any(_alive(p) for p in killed)
    assert [p.name for p in (ignite.state_dir / "tmp").iterdir()] in ([], [".lock"])
