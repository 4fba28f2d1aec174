"""The rest of the CLI against real VMs: attach (pty), logs -f, ps filters and formats, the vm
aliases, --config, boot failures, image rm while in use, a kernel from an OCI-style rootfs."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = pytest.mark.integration


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_attach_logs_ps_and_aliases(ignite: Ignite, vm_name: str) -> None:
    ignite("run", "--name", vm_name, "--memory", "256MB", "-l", "team=qa")

    # attach in a real terminal: the console answers, Ctrl-P Ctrl-Q detaches, the VM lives on
    env = {**os.environ, "IGNITE_STATE_DIR": str(ignite.state_dir)}
    pid, fd = pty.fork()
    if pid == 0:  # the child becomes `ignite attach`
        os.execve(sys.executable, [sys.executable, "-m", "ignitevm.cli", "--ignite-config",
                                   str(ignite.config), "attach", vm_name], env)  # fmt: skip
    try:
        time.sleep(1)
        os.write(fd, b"\r")
        _read_until(fd, b"login:", 30)
        os.write(fd, b"\x10\x11")  # Ctrl-P Ctrl-Q
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
    assert vm_name in ignite("ps").stdout

    # ps filters, -q, -o json; the vm alias
    assert ignite("ps", "-f", f"{{{{.ObjectMeta.Name}}}}={vm_name}").stdout.count("\n") == 2
    assert ignite("ps", "-a", "-f", "{{.ObjectMeta.Labels.team}}=nobody").stdout.count("\n") == 1
    uid = ignite("-q", "vm", "ps", "-f", f"{{{{.ObjectMeta.Name}}}}=~^{vm_name}$").stdout.strip()
    assert len(uid) == 16
    listed = json.loads(ignite("ps", "-o", "json").stdout)
    assert any(v["metadata"]["name"] == vm_name and v["status"]["running"] for v in listed)
    inspected = ignite.inspect(uid[:6])  # a uid prefix finds it
    assert inspected["metadata"]["name"] == vm_name  # type: ignore[index]

    # logs -f follows until the VM stops
    follower = subprocess.Popen(
        [sys.executable, "-m", "ignitevm.cli", "--ignite-config", str(ignite.config), "logs",
         "-f", vm_name], env=env, stdout=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1)
    ignite("vm", "stop", vm_name)
    out, _ = follower.communicate(timeout=60)
    assert b"ignitevm-init: exec" in out and b"power button pressed" in out


def test_completion_and_version(ignite: Ignite) -> None:
    assert "_IGNITE_COMPLETE" in ignite("completion", "bash").stdout
    assert "qemu:" in ignite("version").stdout


def test_scripts_global_flags_and_templates(ignite: Ignite, vm_name: str) -> None:
    """What Ignite's users script: global flags after the command, -aq, Go templates, and
    `ignite rm -f $(ignite ps -aq)`. On a created VM: nothing boots."""
    uid = ignite("create", f"--name={vm_name}", "--ssh", "ignitevm/default:latest", "--memory",
                 "256MB", "-l", f"testName={vm_name}").stdout.strip()  # fmt: skip
    assert len(uid) == 16
    assert uid not in ignite("ps", "-q").stdout.split()  # created, not running
    assert uid in ignite("ps", "-aq").stdout.split()
    assert uid in ignite("vm", "ps", "-a", "-q").stdout.split()
    assert uid not in ignite("vm", "ps", "-q").stdout.split()
    for kind in ("image", "kernel"):
        ids = ignite(kind, "ls", "-q").stdout.split()
        assert ids and all(len(i) == 16 for i in ids), (kind, ids)
    debug = ignite("ps", "--log-level", "debug")
    assert " D ignitevm.cli.app: state dir" in debug.stderr and "VM ID" in debug.stdout

    template = "{{.ObjectMeta.Name}} {{.Spec.Memory}} {{.Status.Running}} {{.Spec.SSH}}"
    listed = ignite("ps", "-a", f"--filter={{{{.ObjectMeta.Labels}}}}=~testName:{vm_name}",
                    "--template", template).stdout  # fmt: skip
    assert listed == f"{vm_name} 256.0 MB false {{true }}\n"
    inspected = ignite("inspect", "vm", vm_name, "-t", "{{.ObjectMeta.UID}} {{.Spec.Image.OCI}}")
    assert inspected.stdout == f"{uid} ignitevm/default:latest\n"
    bad = ignite("inspect", "vm", vm_name, "-t", "{{.Spec.Colour}}", check=False)
    assert bad.returncode == 2 and "can't evaluate field Colour in type VMSpec" in bad.stderr

    removed = ignite("rm", "-f", *ignite("ps", "-aq").stdout.split())
    assert uid in removed.stdout.split()
    assert ignite("ps", "-aq").stdout == ""


def test_config_file_with_flag_override(ignite: Ignite, vm_name: str, tmp_path: Path) -> None:
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\n"
        f"metadata:\n  name: {vm_name}\n"
        "spec:\n  image:\n    oci: ignitevm/default:latest\n  cpus: 2\n  memory: 300MB\n"
        "  diskSize: 3GB\n"
    )
    ignite("create", "--config", str(manifest), "--memory", "200MB")
    spec = ignite.inspect(vm_name)["spec"]
    assert spec["cpus"] == 2 and spec["memory"] == "200MB" and spec["diskSize"] == "3GB"  # type: ignore[index]
    ignite("rm", "--config", str(manifest))
    assert vm_name not in ignite("ps", "-a").stdout


def test_boot_failure_shows_the_console(ignite: Ignite, vm_name: str) -> None:
    proc = ignite("run", "--name", vm_name, "--memory", "256MB", "--kernel-args",
                  "init=/no/such/init", "--boot-timeout", "120", check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "console.log ends with" in proc.stderr
    assert "ignitevm-init" in proc.stderr
    assert "Stopped" in ignite("ps", "-a").stdout  # the VM stays, stopped, for inspection


def test_image_rm_refuses_while_used(ignite: Ignite, vm_name: str, tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    image = f"test/{vm_name}:1"
    ignite("image", "import", "--name", image, f"dir:{root}")
    assert image in ignite("image", "ls").stdout
    ignite("create", image, "--name", vm_name)
    proc = ignite("rmi", image, check=False)
    assert proc.returncode != 0 and vm_name in proc.stderr
    ignite("rm", vm_name)
    ignite("image", "rm", image)
    assert image not in ignite("image", "ls").stdout


def test_kernel_from_an_oci_style_rootfs(ignite: Ignite, tmp_path: Path) -> None:
    """Ignite's kernel image convention: /boot/vmlinuz-<ver> and /lib/modules/<ver>."""
    deb = Path(ignite("kernel", "ls").stdout.splitlines()[1].split()[1].removeprefix("deb:"))
    root = tmp_path / "k"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    if (root / "usr/lib/modules").exists() and not (root / "lib").exists():
        (root / "lib").symlink_to("usr/lib")
    out = ignite("kernel", "import", "--name", "test/kernel:oci", f"dir:{root}").stdout
    uid = out.split()[0]
    listing = ignite("kernel", "ls").stdout
    assert "test/kernel:oci" in listing and "-amd64" in listing
    ignite("kernel", "rm", uid)


def test_volume_is_mounted(ignite: Ignite, vm_name: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello").write_text(f"volume of {vm_name}\n")
    image = tmp_path / "vol.ext4"
    with open(image, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(image)], check=True)
    probe = tmp_path / "S60vol"
    probe.write_text('#!/bin/sh\necho "vol: $(cat /mnt/data/hello)"\n')
    probe.chmod(0o755)
    ignite("run", "--name", vm_name, "--memory", "256MB", "-v", f"{image}:/mnt/data",
           "--copy-files", f"{probe}:/etc/init.d/S60vol")  # fmt: skip
    deadline = time.monotonic() + 60
    while f"vol: volume of {vm_name}" not in ignite.console(vm_name):
        assert time.monotonic() < deadline, ignite.console(vm_name)[-2000:]
        time.sleep(0.5)
