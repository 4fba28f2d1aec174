"""The whole flow as an ordinary user (Ignite #24 #137 #406 #672) and host directories in VMs
(#76 #829), with real VMs: a user made for the test imports a kernel and an image whose files
belong to three uids (setuid, setgid, a device node), has ignited run a VM with SSH, a port
and a share from a manifest, and finds the image's owners in the guest; exec, cp both ways,
stop, rm; a second user sees none of it; nothing is written outside the user's state dir and
/tmp. A root VM shares a directory read-write and read-only and the guest tries to leave them."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Ignite, _kernel_deb
from tests.integration.owned_image import build_owned_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("runuser") is None, reason="no runuser (util-linux)"),
]

# /root (the venv's interpreter) is private: a user runs the system Python with the venv's
# packages, as with a system-wide install
SYSTEM_PYTHON = "/usr/bin/python3"
SITE = ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"


@dataclass
class User:
    name: str
    home: Path

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @property
    def state_dir(self) -> Path:
        return self.home / ".local/share/ignitevm"

    def run(
        self, *argv: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", f"HOME={self.home}",
               f"USER={self.name}", f"PYTHONPATH={ROOT}:{SITE / 'site-packages'}"]  # fmt: skip
        proc = subprocess.run(["runuser", "-u", self.name, "--", *env, *argv], input=input,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} as {self.name}: {proc.returncode}\n{proc.stderr}")
        return proc

    def ignite(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(SYSTEM_PYTHON, "-m", "ignitevm.cli", *args, check=check)


def _make_user() -> User:
    name = f"ign{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    return User(name, Path(pwd.getpwnam(name).pw_dir))


def _processes_of(uid: int) -> list[int]:
    pids = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                pids.append(int(pid))
        except FileNotFoundError:
            pass
    return pids


def _remove_user(user: User) -> None:
    """Its VMs, then whatever of it still runs (what the test started), then the user and its
    home; userdel refuses while a process of the user is alive, so wait for them to go."""
    user.ignite("rm", "-f", *user.ignite("-q", "ps", "-a", check=False).stdout.split(),
                check=False)  # fmt: skip
    uid = user.uid
    deadline = time.monotonic() + 15
    while (pids := _processes_of(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    done = subprocess.run(["userdel", "--remove", user.name], capture_output=True, text=True)
    assert done.returncode == 0, f"userdel {user.name}: {done.stderr}"


@pytest.fixture
def user() -> Iterator[User]:
    if subprocess.run([SYSTEM_PYTHON, "-c", "import sys; assert sys.version_info >= (3, 11)"],
                      capture_output=True).returncode:  # fmt: skip
        pytest.skip(f"{SYSTEM_PYTHON} is not Python >= 3.11")
    made = _make_user()
    try:
        yield made
    finally:
        _remove_user(made)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory in /tmp every user may read (the image archive, the kernel package)."""
    path = Path(tempfile.mkdtemp(prefix="ignite-rootless-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _owned_by(uid: int) -> set[str]:
    """Every path of the root filesystem (and /dev/shm) owned by ``uid``."""
    found = set()
    for top in ("/", "/dev/shm"):
        out = subprocess.run(["find", top, "-xdev", "-user", str(uid)],
                             capture_output=True, text=True)  # fmt: skip
        found |= set(out.stdout.split("\n")) - {""}
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


GUEST_STAT = (
    "stat -c '%n %u %g %a' /home/alice /home/alice/notes /var/lib/nobody/file "
    "/usr/local/bin/suid-tool /usr/local/bin/sgid-tool /bin/busybox && mkdir -p /mnt/r && "
    # devtmpfs hides the image's /dev: look below it through a bind mount of the root
    "mount --bind / /mnt/r && stat -c '%n %u %g %a %t:%T %F' /mnt/r/dev/ignite-null && "
    "umount /mnt/r"
)
IMAGE_IN_GUEST = [
    "/home/alice 1000 1000 750",
    "/home/alice/notes 1000 1000 640",
    "/var/lib/nobody/file 65534 65534 600",
    "/usr/local/bin/suid-tool 0 0 4755",
    "/usr/local/bin/sgid-tool 0 50 2755",
    "/bin/busybox 0 0 755",
    "/mnt/r/dev/ignite-null 0 0 666 1:3 character special file",
]
CNI_REFUSED = [
    "error: the cni network plugin needs root: it creates network namespaces, bridges and "
    "iptables rules",
    "hint: use --network-plugin user (the default for users other than root: ports are "
    "forwarded on the host's loopback), or run ignite as root",
]


def _ignited_runs(user: User, deb: Path, share: Path, port: int) -> None:
    """ignited creates and starts the VM from the user's default manifest directory, through
    the same use cases as `ignite run` (the share included)."""
    manifests = user.home / ".config/ignite/manifests"
    user.run("mkdir", "-p", str(manifests))
    manifest = (
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: rl\n"
        f"spec:\n  image:\n    oci: owned\n  kernel:\n    oci: deb:{deb}\n  memory: 256MB\n"
        f"  ssh: true\n  network:\n    ports:\n    - {{hostPort: {port}, vmPort: 2222, "
        "bindAddress: 127.0.0.1}\n"
        f"  storage:\n    shares:\n    - {{hostPath: {share}, vmPath: /mnt/share}}\n"
    )
    user.run("sh", "-c", f"cat > {manifests}/rl.yaml", input=manifest)
    user.run(SYSTEM_PYTHON, "-m", "ignitevm.cli.ignited", "daemon", "--once")


def _copies_and_shares(user: User, scratch: Path, share: Path) -> None:
    (scratch / "in.txt").write_text("to the guest\n")
    (scratch / "in.txt").chmod(0o644)
    user.ignite("cp", str(scratch / "in.txt"), "rl:/root/in.txt")
    assert user.ignite("exec", "rl", "cat /root/in.txt").stdout == "to the guest\n"
    user.ignite("cp", "rl:/etc/hostname", str(user.home / "hostname.txt"))
    assert (user.home / "hostname.txt").read_text().strip() == "rl"
    # the share is live both ways, and what the guest makes is the user's on the host
    out = user.ignite("exec", "rl", "cat /mnt/share/host.txt; echo from-guest > /mnt/share/g.txt")
    assert out.stdout == "from-host\n"
    made = share / "g.txt"
    assert made.read_text() == "from-guest\n" and made.stat().st_uid == user.uid


def _others_see_nothing(user: User) -> None:
    other = _make_user()
    try:
        assert other.ignite("-q", "ps", "-a").stdout.strip() == ""
        assert other.ignite("inspect", "vm", "rl", check=False).returncode != 0
        assert other.run("ls", str(user.state_dir), check=False).returncode != 0
    finally:
        _remove_user(other)


def test_the_whole_flow_as_a_user(user: User, scratch: Path) -> None:
    deb = scratch / "kernel.deb"
    shutil.copy(_kernel_deb(), deb)
    default = ROOT / "_out/images/default.oci.tar"
    if not default.exists():
        pytest.skip("run the integration session once: it builds the default image")
    image = build_owned_image(default, scratch / "owned.oci.tar")
    before = _owned_by(user.uid)
    user.ignite("kernel", "import", f"deb:{deb}")
    user.ignite("image", "import", "--name", "owned", f"oci-archive:{image}")
    share = user.home / "share"  # the user's own directory, shared read-write
    user.run("mkdir", str(share))
    user.run("sh", "-c", f"echo from-host > {share}/host.txt")
    port = _free_port()
    _ignited_runs(user, deb, share, port)
    # user networking is a user's default; the SSH port and the published one are loopback
    ps = user.ignite("ps").stdout
    assert "rl" in ps and f"127.0.0.1:{port}->2222/tcp" in ps and "10.0.2.15" in ps
    assert user.ignite("exec", "rl", GUEST_STAT).stdout.splitlines() == IMAGE_IN_GUEST
    _copies_and_shares(user, scratch, share)
    # cni needs root: one line says so, and how to do without
    user.ignite("create", "owned", "--name", "c", "-k", f"deb:{deb}", "--network-plugin", "cni")
    refused = user.ignite("start", "c", check=False)
    assert refused.returncode != 0 and refused.stderr.splitlines() == CNI_REFUSED
    user.ignite("rm", "c")
    _others_see_nothing(user)
    user.ignite("stop", "rl")
    assert "Stopped" in user.ignite("ps", "-a").stdout
    user.ignite("rm", "rl")
    assert user.ignite("-q", "ps", "-a").stdout.strip() == ""
    # nothing written outside the state dir and /tmp, but what the test made
    made = (share, user.home / "hostname.txt", user.home / ".config")
    allowed = (str(user.state_dir), "/tmp/", *(str(p) for p in made))
    parents = {str(user.home / ".local"), str(user.home / ".local/share")}
    new = _owned_by(user.uid) - before - parents
    assert sorted(p for p in new if not p.startswith(allowed)) == []


def test_shares_live_read_only_and_closed(ignite: Ignite, vm_name: str, tmp_path: Path) -> None:
    rw, ro, outside = tmp_path / "rw", tmp_path / "ro", tmp_path / "outside"
    for d in (rw, ro, outside):
        d.mkdir()
    (ro / "keep.txt").write_text("read-only\n")
    (outside / "secret").write_text("host secret\n")
    (rw / "abs").symlink_to(outside / "secret")
    (rw / "rel").symlink_to("../outside/secret")
    (rw / "etc").symlink_to("/etc")
    ignite("run", "--name", vm_name, "--ssh", "--memory", "256MB", "--network-plugin", "user",
           "--share", f"{rw}:/mnt/rw", "--share", f"{ro}:/mnt/ro:ro")  # fmt: skip

    def guest(cmd: str) -> str:
        return ignite("exec", vm_name, cmd).stdout

    # live both ways, without a restart
    (rw / "a.txt").write_text("one\n")
    assert guest("cat /mnt/rw/a.txt; echo two >> /mnt/rw/a.txt") == "one\n"
    assert (rw / "a.txt").read_text() == "one\ntwo\n"
    (rw / "a.txt").write_text("three\n")
    assert guest("cat /mnt/rw/a.txt") == "three\n"
    # read-only: refused by QEMU even when the guest remounts it read-write
    out = guest(
        "cat /mnt/ro/keep.txt; mount -o remount,rw /mnt/ro; "
        "echo x > /mnt/ro/keep.txt; echo rc=$?; echo y > /mnt/ro/new; echo rc=$?"
    )
    assert out.splitlines() == ["read-only", "rc=1", "rc=1"]
    assert sorted(p.name for p in ro.iterdir()) == ["keep.txt"]
    assert (ro / "keep.txt").read_text() == "read-only\n"
    # nothing outside the directory: host symlinks are not followed, hard links cannot cross
    out = guest("cat /mnt/rw/abs /mnt/rw/rel /mnt/rw/etc/hostname 2>&1; echo pwned > "
                "/mnt/rw/abs; ln /etc/passwd /mnt/rw/passwd; echo rc=$?; "
                "ln -s /etc/shadow /mnt/rw/made-link; cat /mnt/rw/../rw/a.txt")  # fmt: skip
    assert "host secret" not in out and "rc=1" in out and out.endswith("three\n")
    assert (outside / "secret").read_text() == "host secret\n"
    assert not (rw / "passwd").exists()
    made = rw / "made-link"  # a guest's symlink is a plain file on the host (mapped-xattr)
    assert made.is_file() and not made.is_symlink() and made.read_text() == "/etc/shadow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "ro", "rw"]
