"""Integration fixtures: a state directory with Debian's kernel and the default image imported
once per session, and an `ignite` runner that drives the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "_out" / "cache"


def _need_root_and_qemu() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests run as root (they start VMs and networks)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed: run hack/setup.sh")


@dataclass
class Ignite:
    """Runs the real `ignite` CLI against one state directory."""

    state_dir: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ignitevm.cli", "--ignite-config", str(self.config), *args]
        env = {**os.environ, "IGNITE_STATE_DIR": str(self.state_dir), **self.env}
        # no input: /dev/null, whatever pytest's own stdin is (exec then asks the guest agent)
        stdin = subprocess.DEVNULL if input is None else None
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            input=input,
            stdin=stdin,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ignite {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def inspect(self, vm: str) -> dict[str, object]:
        data: dict[str, object] = json.loads(self("inspect", "vm", vm).stdout)
        return data

    def console(self, vm: str) -> str:
        return self("logs", vm).stdout

    def kernel_name(self) -> str:
        return self("kernel", "ls").stdout.splitlines()[1].split()[1]

    def remove_all(self) -> None:
        for uid in self("-q", "ps", "-a", check=False).stdout.split():
            self("rm", "-f", uid, check=False)


def _kernel_deb() -> Path:
    out = subprocess.run(
        [sys.executable, "-m", "ignitevm.kernel.apt", str(CACHE / "debs")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip())


def _default_image() -> Path:
    archive = ROOT / "_out" / "images" / "default.oci.tar"
    subprocess.run(
        [sys.executable, str(ROOT / "images" / "build.py"), "--output", f"oci-archive:{archive}",
         "--cache", str(CACHE / "debs")],
        check=True, capture_output=True,
    )  # fmt: skip
    return archive


@pytest.fixture(scope="session")
def ignite_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ignite]:
    """A state dir with the kernel and the default image imported; every VM removed at the end."""
    _need_root_and_qemu()
    base = tmp_path_factory.mktemp("ignite")
    deb = _kernel_deb()
    config = base / "config.yaml"
    config.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n"
        "  networkPlugin: none\n"
        f"  vmDefaults:\n    kernel:\n      oci: deb:{deb}\n"
        "    image:\n      oci: ignitevm/default:latest\n"
    )
    ignite = Ignite(state_dir=base / "state", config=config)
    ignite("kernel", "import", f"deb:{deb}")
    archive = _default_image()
    ignite("image", "import", "--name", "ignitevm/default:latest", f"oci-archive:{archive}")
    try:
        yield ignite
    finally:
        ignite.remove_all()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ignite(ignite_session: Ignite) -> Iterator[Ignite]:
    """The session's ignite; VMs a test creates are removed after it (even when it fails)."""
    before = set(ignite_session("-q", "ps", "-a").stdout.split())
    yield ignite_session
    for uid in set(ignite_session("-q", "ps", "-a", check=False).stdout.split()) - before:
        ignite_session("rm", "-f", uid, check=False)


@pytest.fixture
def vm_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"
