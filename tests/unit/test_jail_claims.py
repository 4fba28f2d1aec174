"""The jail's per-VM ids (vmm/jail.py): claimed with flock on /run/ignitevm/jail/<id>.lock, given
back by unlinking the file first (one file per id ever used piled up in /run)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from ignitevm.vmm import jail
from ignitevm.vmm.jail import JAIL_ID_BASE, JAIL_ID_COUNT, claim_id, release_id

UID = "0000000500000000"  # prefers JAIL_ID_BASE + 5


def test_a_released_id_leaves_no_file_and_can_be_claimed_again(tmp_path: Path) -> None:
    first = claim_id(UID, tmp_path)
    assert first is not None and first[0] == JAIL_ID_BASE + 5
    second = claim_id(UID, tmp_path)  # held: the next id
    assert second is not None and second[0] == JAIL_ID_BASE + 6
    release_id(*first, tmp_path)
    release_id(*second, tmp_path)
    assert list(tmp_path.iterdir()) == []
    again = claim_id(UID, tmp_path)
    assert again is not None and again[0] == JAIL_ID_BASE + 5
    release_id(*again, tmp_path)


def test_a_lock_won_on_a_file_just_released_is_taken_again_on_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The releaser unlinks between our open and our flock: the lock we win is on a file no
    one else will open, so we must lock the one at the path."""
    path = tmp_path / f"{JAIL_ID_BASE + 5}.lock"
    real_flock = fcntl.flock
    calls = []

    def flock_after_a_release(fd: int, op: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            path.unlink()  # the holder gave it back just now
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_release)
    claimed = claim_id(UID, tmp_path)
    assert claimed is not None and len(calls) == 2
    ident, fd = claimed
    assert os.fstat(fd).st_ino == path.stat().st_ino  # the lock is on the file at the path
    monkeypatch.setattr(fcntl, "flock", real_flock)
    other = os.open(path, os.O_RDWR)
    with pytest.raises(BlockingIOError):  # and it really holds it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(other)
    release_id(ident, fd, tmp_path)


def test_the_range_exhausted_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jail, "_try_claim", lambda path: None)
    assert claim_id(UID, tmp_path) is None
    assert JAIL_ID_COUNT > 0
