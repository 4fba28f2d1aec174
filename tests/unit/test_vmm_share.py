"""A shared directory for a VMM running as another uid (the jail): POSIX ACL entries for one
run, restored afterwards; what the VMM made goes back to the directory's owner."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ignitevm.vmm.share import (
    ACCESS,
    DEFAULT,
    GROUP,
    GROUP_OBJ,
    MASK,
    OTHER,
    USER,
    USER_OBJ,
    Grant,
    decode,
    encode,
    from_mode,
    prepare_share,
    release_share,
    with_user,
    without_user,
)

N = 0xFFFFFFFF
VMM_UID = 54321


def test_acl_entries() -> None:
    acl = [(USER_OBJ, 7, N), (GROUP_OBJ, 5, N), (USER, 7, 1000), (MASK, 4, N), (OTHER, 0, N)]
    assert decode(encode(acl)) == sorted(acl, key=lambda e: (e[0], e[2]))
    with pytest.raises(ValueError):
        decode(b"\x01\x00\x00\x00")
    granted = with_user(acl, VMM_UID, 6)
    assert (USER, 6, VMM_UID) in granted and (MASK, 6, N) in granted  # the mask grows by 6
    assert sorted(without_user(granted, VMM_UID, 4)) == sorted(acl)  # and shrinks back
    plain = from_mode(0o640)
    assert plain == [(USER_OBJ, 6, N), (GROUP_OBJ, 4, N), (OTHER, 0, N)]
    granted = with_user(plain, VMM_UID, 6)
    assert (MASK, 6, N) in granted
    assert without_user(granted, VMM_UID, None) == plain  # no named entry left: no mask


def test_no_grant_for_the_owner_or_root(tmp_path: Path) -> None:
    assert prepare_share(tmp_path, os.stat(tmp_path).st_uid, 0, readonly=False) is None
    assert prepare_share(tmp_path, 0, 0, readonly=False) is None


def _xattrs(path: Path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n) for n in os.listxattr(path) if n.startswith("system.")}


def _as_vmm(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={VMM_UID}", f"--regid={VMM_UID}", "--clear-groups",
         "sh", "-c", script],
        cwd=cwd, capture_output=True, text=True, timeout=10,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_a_run_gets_access_and_the_tree_is_as_before_afterwards(tmp_path: Path) -> None:
    share = tmp_path / "share"
    (share / "sub").mkdir(parents=True)
    os.chown(share, 1000, 1000)
    os.chmod(share, 0o750)
    (share / "f").write_text("host\n")
    os.chmod(share / "f", 0o600)
    bob = with_user(from_mode(0o640), 2000, 6)
    bob = [(t, 4 if t == MASK else p, i) for t, p, i in bob]  # a narrow mask the user chose
    os.setxattr(share / "f", ACCESS, encode(bob))
    os.setxattr(share / "sub", DEFAULT, encode([*from_mode(0o750), (GROUP, 7, 3000),
                                                (MASK, 7, N)]))  # fmt: skip
    before = {p: _xattrs(p) for p in (share, share / "f", share / "sub")}
    modes = {p: os.stat(p).st_mode for p in before}
    assert _as_vmm("cat f", share).returncode != 0  # no access without the grant

    grant = prepare_share(share, VMM_UID, VMM_UID, readonly=False)
    assert isinstance(grant, Grant)
    run = _as_vmm("cat f && echo vm >> f && echo new > sub/made && mkdir sub/d", share)
    assert run.returncode == 0, run.stderr
    os.makedirs(share / "sub/host-made")  # the host adds to the tree during the run
    assert os.stat(share / "sub/made").st_uid == VMM_UID

    release_share(grant)
    assert {p: _xattrs(p) for p in before} == before
    assert {p: os.stat(p).st_mode for p in before} == modes
    for path in (share / "sub/made", share / "sub/d"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (1000, 1000)  # the VMM's uid owns nothing
        acl = decode(os.getxattr(path, ACCESS)) if ACCESS in os.listxattr(path) else []
        assert VMM_UID not in [e[2] for e in acl]
    for path in (share / "sub/d", share / "sub/host-made"):  # inherited from sub's default
        entries = decode(os.getxattr(path, DEFAULT))
        assert (GROUP, 7, 3000) in entries and VMM_UID not in [e[2] for e in entries]
    assert _as_vmm("cat f", share).returncode != 0  # and no access after it


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_read_only_grant_and_a_default_acl_made_for_the_run_goes(tmp_path: Path) -> None:
    share = tmp_path / "ro"
    share.mkdir()
    os.chmod(share, 0o700)
    (share / "f").write_text("x")
    grant = prepare_share(share, VMM_UID, VMM_UID, readonly=True)
    assert grant is not None
    assert _as_vmm("cat f", share).returncode == 0
    assert _as_vmm("echo y >> f", share).returncode != 0
    release_share(grant)
    assert DEFAULT not in os.listxattr(share) and ACCESS not in os.listxattr(share / "f")
    assert os.stat(share).st_mode & 0o777 == 0o700
