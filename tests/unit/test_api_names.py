from __future__ import annotations

import re

import pytest

from ignitevm.api import generate_name, is_uid, new_uid, uid_from_name
from ignitevm.api.names import name_problem, safe_hostname


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
    assert all(re.fullmatch(r"[a-z]+-[a-z]+", n) for n in names)
    assert all(name_problem(n) is None for n in names)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("my-vm-1", None),
        ("web.prod", None),
        ("a" * 63, None),
        ("a:b", "':' is not allowed"),  # broke the kernel's ip= argument
        ("x\x1b[31my", "'\\x1b' is not allowed"),  # garbled ps
        ("My-VM", "'M' is not allowed"),
        ("e2e_test_ignite_run", None),  # Ignite's own e2e tests' names
        ("_a", "start and end"),
        ("-a", "start and end"),
        ("a.", "'.' must separate"),
        ("a" * 64, "more than 63"),
        ("", "empty"),
    ],
)
def test_vm_name_rule(name: str, problem: str | None) -> None:
    found = name_problem(name)
    assert found is None if problem is None else problem in (found or "")


def test_safe_hostname_of_names_older_versions_allowed() -> None:
    assert safe_hostname("my-vm") == "my-vm"
    assert safe_hostname("a:b") == "a-b"
    assert safe_hostname("Brave_Hopper") == "brave_hopper"
    assert name_problem(safe_hostname("x\x1b[31my")) is None
    assert safe_hostname("::") == "vm"
