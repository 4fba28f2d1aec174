from __future__ import annotations

import re

from ignitevm.api import generate_name, is_uid, new_uid, uid_from_name


def test_new_uid() -> None:
    uids = {new_uid() for _ in range(200)}
    assert len(uids) == 200
    assert all(re.fullmatch(r"[0-9a-f]{16}", u) for u in uids)
    assert all(is_uid(u) for u in uids)


def test_uid_from_name_is_stable() -> None:
    assert uid_from_name("my-vm") == uid_from_name("my-vm")
    assert uid_from_name("my-vm") != uid_from_name("my-vm2")
    assert is_uid(uid_from_name("my-vm"))


def test_is_uid() -> None:
    assert not is_uid("599615df99804ae") and not is_uid("599615DF99804AE8")
    assert not is_uid("../../etc/passwd") and is_uid("599615df99804ae8")


def test_generate_name() -> None:
    names = {generate_name() for _ in range(100)}
    assert len(names) > 50
    assert all(re.fullmatch(r"[a-z]+_[a-z]+", n) for n in names)
