"""`ignite kernel build` for real: Debian's linux-source -> microVM vmlinux (everything built
in) -> stored kernel -> OCI archive -> `ignite kernel import` -> boots the default image under
QEMU TCG to SSH, and powers off on the ACPI power button.

Slow (a kernel build is 10-30 min on 2 shared cores the first time): IGNITE_SLOW_TESTS=1.
The build directory is kept in _out/kbuild (or $IGNITE_KERNEL_BUILD_WORKDIR), so a second run
reuses the build.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Ignite

pytestmark = pytest.mark.integration

WORKDIR = Path(os.environ.get("IGNITE_KERNEL_BUILD_WORKDIR", ROOT / "_out" / "kbuild"))


def _need_source() -> None:
    if not list(Path("/usr/src").glob("linux-source-*.tar.xz")):
        pytest.skip("Debian's linux-source is not installed: apt-get install -y linux-source")


def test_export_follows_the_kernel_image_convention(
    ignite: Ignite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `--output` writer, on the session's (Debian) kernel: /boot/vmlinux only, and
    `ignite kernel import oci-archive:` / `docker-archive:` read it back to the same vmlinux."""
    from ignitevm.api import Kind
    from ignitevm.ops.kernel_build import export_kernel
    from ignitevm.ops.kernels import kernel_files
    from ignitevm.ops.services import build_services

    monkeypatch.setenv("IGNITE_STATE_DIR", str(ignite.state_dir))
    svc = build_services(ignite.config)
    kernel = svc.store.require(Kind.KERNEL, ignite.kernel_name())
    oci = export_kernel(svc, kernel, "oci-archive", tmp_path / "k.oci.tar")
    docker = export_kernel(svc, kernel, "docker-archive", tmp_path / "k.docker.tar")
    try:
        for name, archive in (("t-rt:oci", oci), ("t-rt:docker", docker)):
            uid = ignite("-q", "kernel", "import", "--name", name, f"{archive.name.split('.')[1]}"
                         f"-archive:{archive}").stdout.strip()  # fmt: skip
            back = svc.store.require(Kind.KERNEL, uid)
            assert back.status.version == kernel.status.version
            assert (
                kernel_files(svc, back)[0].read_bytes() == kernel_files(svc, kernel)[0].read_bytes()
            )
            config = kernel_files(svc, kernel)[0].with_name("config")  # Debian ships one
            assert kernel_files(svc, back)[0].with_name("config").read_bytes() == (
                config.read_bytes()
            )
    finally:
        ignite("kernel", "rm", "-f", "t-rt:oci", check=False)


@pytest.mark.slow
def test_build_export_import_boot_to_ssh(ignite: Ignite, vm_name: str, tmp_path: Path) -> None:
    _need_source()
    archive = tmp_path / "kernel.oci.tar"
    out = ignite("kernel", "build", "--workdir", str(WORKDIR), "--output",
                 f"oci-archive:{archive}", timeout=3 * 3600).stdout  # fmt: skip
    uid, name, version = out.splitlines()[0].split()[:3]
    assert name == f"ignitevm/kernel:{version}" and version.endswith("-microvm")
    assert archive.is_file()

    # Built once: the same source + config is the same stored kernel, without building.
    again = ignite("kernel", "build", "--workdir", str(WORKDIR), timeout=600).stdout
    assert again.split()[:2] == [uid, name] and "(reused)" in again

    imported = ignite("kernel", "import", "--name", "t-imported:microvm", f"oci-archive:{archive}")
    assert imported.stdout.split()[1] == "t-imported:microvm"
    listing = ignite("kernel", "ls").stdout
    assert sum(version in line for line in listing.splitlines()) == 2, listing
    # The kernel config travels with it (stored, exported, imported): preflight reads it to
    # tell that Firecracker's command-line virtio-mmio devices are visible to this kernel.
    from ignitevm.ops.preflight import kernel_has_mmio_cmdline

    for stored in (uid, imported.stdout.split()[0]):
        assert kernel_has_mmio_cmdline(ignite.state_dir / "kernel" / stored / "vmlinux") is True

    try:
        ignite("run", "ignitevm/default:latest", "--name", vm_name, "--kernel-image",
               "t-imported:microvm", "--memory", "256MB", "--ssh", "--network-plugin", "user",
               timeout=300)  # fmt: skip
        ignite("exec", "--timeout", "120", vm_name, "true")  # waits for sshd
        assert ignite("exec", vm_name, "uname", "-r").stdout.strip() == version
        # No modules anywhere: the initramfs had none to load, the kernel cannot load any.
        assert ignite("exec", vm_name, "ls /proc/modules || echo none").stdout.strip() == "none"
        ignite("stop", vm_name, "--timeout", "60")
        console = ignite.console(vm_name)
        assert "power button pressed" in console, console[-2000:]
    finally:
        ignite("rm", "-f", vm_name, check=False)
        ignite("kernel", "rm", "-f", "t-imported:microvm", check=False)
