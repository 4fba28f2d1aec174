"""`ignite cp` against a real VM whose guest is hostile (issue 10 defect 1) and Ignite's cp
cases (issue 14 item 6): the guest makes a device node (mknod c 1 3, owned by uid 1234), a FIFO,
a link to /etc/shadow, links that leave the copy, a setuid file; the copy out keeps none of
it but the plain files (and, with -a, owners and the setuid bit, still no device). A /proc
pseudo-file comes out with its content; a host symlink goes in as its target's content.

User-mode networking: the VM is reached through a loopback SSH forward, no host network is
touched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite

pytestmark = pytest.mark.integration

HOSTILE = (
    "set -e; mkdir -p /tmp/evil/sub && cd /tmp/evil && "
    "mknod null c 1 3 && chown 1234:1234 null && chmod 666 null && mkfifo fifo && "
    "ln -s /etc/shadow shadow && ln -s ../../../../../etc etc-up && ln -s . self && "
    "ln -s self/.. esc && ln -s sub inner && echo plain > sub/plain && "
    "echo '#!/bin/sh' > suid && chown 1234:1234 suid && chmod 4755 suid"
)


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = ("link->" + os.readlink(p)) if p.is_symlink() else stat.filemode(st.st_mode)
        out[str(p.relative_to(root))] = f"{kind} {st.st_uid}"
    return out


def test_cp_out_of_a_hostile_guest(ignite: Ignite, vm_name: str, tmp_path: Path) -> None:
    ignite("run", "--name", vm_name, "--ssh", "--network-plugin", "user", "--memory", "256MB")
    ignite("exec", vm_name, HOSTILE)
    shadow_before = Path("/etc/shadow").stat()

    out = tmp_path / "out"
    out.mkdir()
    ignite("cp", f"{vm_name}:/tmp/evil", str(out))
    uid = os.getuid()
    assert _tree(out / "evil") == {
        "inner": f"link->sub {uid}",
        "self": f"link->. {uid}",
        "sub": f"drwxr-xr-x {uid}",
        "sub/plain": f"-rw-r--r-- {uid}",
        "suid": f"-rwxr-xr-x {uid}",  # no setuid bit, not the guest's owner
    }
    assert (out / "evil/inner/plain").read_text() == "plain\n"
    assert Path("/etc/shadow").stat() == shadow_before
    assert sorted(p.name for p in out.iterdir()) == ["evil"]  # no scratch directory left

    archived = tmp_path / "archived"
    archived.mkdir()
    ignite("cp", "-a", f"{vm_name}:/tmp/evil", str(archived))
    tree = _tree(archived / "evil")
    assert tree["suid"] == "-rwsr-xr-x 1234" and "null" not in tree and "fifo" not in tree
    assert "shadow" not in tree and "etc-up" not in tree and "esc" not in tree

    # Ignite's TestCopyFileFromVMToHost: /proc/version has stat size 0, its content is not empty
    version = tmp_path / "ignite-os-version"
    ignite("cp", f"{vm_name}:/proc/version", str(version))
    want = ignite("exec", vm_name, "cat", "/proc/version").stdout.strip()
    assert want.startswith("Linux version") and version.read_text().strip() == want

    # Ignite's TestCopySymlinkedFileFromHostToVM: the link's target content, at the given path
    target = tmp_path / "ignite-symlink-cp-test"
    target.write_text("Some file content.")
    link = tmp_path / "ignite-symlink-cp-test-link"
    link.symlink_to(target)
    ignite("cp", str(link), f"{vm_name}:/tmp/linked")
    assert ignite("exec", vm_name, "cat", "/tmp/linked").stdout == "Some file content."
    assert ignite("exec", vm_name, "test ! -L /tmp/linked && echo regular").stdout == "regular\n"
