"""hack/install-ignited.sh and hack/ignited.service: the opt-in systemd service that runs
`ignited daemon` at boot (docs/gitops.md "Running ignited as a service"). Installed into a
temporary root here: nothing is enabled or started."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "install-ignited.sh"


def _install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def test_the_installed_unit_runs_the_daemon_and_never_kills_the_vms(tmp_path: Path) -> None:
    done = _install(tmp_path, "--manifest-dir", "/srv/manifests", "--state-dir", "/srv/state")
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "etc" / "systemd" / "system" / "ignited.service"
    text = unit.read_text()
    assert "@" not in text.replace("file://", "")  # every placeholder filled in
    assert f"ExecStart={ROOT}/.venv/bin/ignited daemon --manifest-dir /srv/manifests" in text
    assert "Environment=IGNITE_STATE_DIR=/srv/state" in text
    # the supervisors are in the unit's cgroup: a restart of ignited must not stop the VMs
    assert "KillMode=process" in text and "WantedBy=multi-user.target" in text
    assert (tmp_path / "srv" / "manifests").is_dir()
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(unit)],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert verify.returncode == 0, verify.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--manifest-dir", "relative"], "error: relative is not an absolute path"),
        (["--bogus"], "error: unknown argument --bogus"),
    ],
)
def test_bad_arguments_are_one_error_and_a_hint(
    tmp_path: Path, args: list[str], error: str
) -> None:
    done = _install(tmp_path, *args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == error and lines[1].startswith("hint: ") and len(lines) == 2
