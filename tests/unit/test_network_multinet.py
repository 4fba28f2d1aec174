"""Extra interfaces (issue 14 item 8): the annotations, the wait for the user's interfaces, the
VMM's extra NICs, the guest's ignite.nic= words, and the launcher hearing that the supervisor
waits (so ``ignite run --wait=false`` returns while the interfaces are still to be made)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from ignitevm.errors import IgniteError, ValidationError
from ignitevm.network import multinet
from ignitevm.network.base import Attachment, GuestNIC
from ignitevm.network.multinet import Link, annotated_interfaces, wait_for_interfaces
from ignitevm.spawn.protocol import Ready, read_ready
from ignitevm.vmm.base import with_guest_ip
from ignitevm.vmm.firecracker import config_calls
from ignitevm.vmm.qemu import build_qemu_argv
from tests.unit.conftest import make_machine

A = "ignite.weave.works/interface/"


def test_annotations_sorted_modes_mapped_bad_names_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    annotations = {
        A + "foo": "tc-redirect",
        A + "bar": "tc-redirect",
        A + "mv": "macvtap",  # done as tc-redirect, with a warning
        A + "odd": "bridge-me",  # unknown mode: ignored, as Ignite does
        A + "eth0": "tc-redirect",  # the CNI interface: not an extra one
        A + "a/b": "tc-redirect",
        A + "x" * 16: "tc-redirect",  # longer than an interface name can be
        "ignite.weave.works/other": "x",
    }
    with caplog.at_level(logging.WARNING):
        assert annotated_interfaces(annotations) == ("bar", "foo", "mv")
    text = caplog.text
    assert "macvtap is done as tc-redirect" in text and "'bridge-me' ignored" in text
    assert "'eth0'" in text and "'a/b'" in text


def _reader(script: list[dict[str, Link]]) -> tuple[list[int], object]:
    calls = [0]

    def read(ns: str) -> dict[str, Link]:
        calls[0] += 1
        return script[min(calls[0] - 1, len(script) - 1)]

    return calls, read


def test_wait_reports_then_takes_the_late_interface_with_its_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(multinet, "POLL", 0.0)
    bare = Link("foo", "aa:ca:e9:12:34:56", ())
    full = Link("foo", "aa:ca:e9:12:34:56", ("10.9.0.2/24",))
    _, read = _reader([{}, {"foo": bare}, {"foo": full}])
    heard: list[tuple[str, float]] = []
    links = wait_for_interfaces("ns", ("foo",), lambda w, t: heard.append((w, t)) or True,
                                timeout=5, reader=read)  # type: ignore[arg-type]  # fmt: skip
    assert links == [full]  # one more poll after it appeared: the address came along
    assert len(heard) == 1 and "foo" in heard[0][0] and 0 < heard[0][1] <= 5


def test_wait_gives_up_on_a_stop_and_on_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multinet, "POLL", 0.0)
    _, read = _reader([{}])
    with pytest.raises(IgniteError, match="stopped while waiting for interfaces foo"):
        wait_for_interfaces("ns", ("foo",), lambda w, t: False, reader=read)  # type: ignore[arg-type]
    with pytest.raises(IgniteError, match="waited 0 s for interfaces foo") as err:
        wait_for_interfaces("ns", ("foo",), None, timeout=0, reader=read)  # type: ignore[arg-type]
    assert "--wait=false" in (err.value.hint or "")


def test_present_interfaces_are_taken_at_once() -> None:
    calls, read = _reader([{"a": Link("a", "m1", ()), "b": Link("b", "m2", ("1.2.3.4/8",))}])
    links = wait_for_interfaces("ns", ("a", "b"), None, reader=read)  # type: ignore[arg-type]
    assert [link.name for link in links] == ["a", "b"] and calls == [1]
    nics = multinet.guest_nics(links)
    assert nics == (GuestNIC("eth1", "tap1", "m1"), GuestNIC("eth2", "tap2", "m2", ("1.2.3.4/8",)))


def test_records_give_back_only_sane_names() -> None:
    good = multinet.nic_to_dict("foo", GuestNIC("eth1", "tap1", "m", ("10.0.0.2/24",)))
    assert multinet.pairs([good, {"name": "x; rm -rf /", "tap": "tap2"}, {"name": 3}]) == [
        ("foo", "tap1", ("10.0.0.2/24",))
    ]


NICS = (GuestNIC("eth1", "tap1", "aa:ca:e9:12:34:78", ("10.9.0.2/24",)),
        GuestNIC("eth2", "tap2", "aa:ca:e9:12:34:56"))  # fmt: skip


def test_qemu_and_firecracker_get_one_nic_per_interface(tmp_path: Path) -> None:
    spec = make_machine(tmp_path)
    att = Attachment(netns="ns", tap="tap0", extra_nics=NICS)
    argv = build_qemu_argv(spec, att, kvm_ok=False)
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a.startswith("virtio-net") or
               (a == "-device" and "virtio-net" in argv[i + 1])]  # fmt: skip
    assert netdevs == [f"tap,id=n{i},ifname=tap{i},script=no,downscript=no" for i in range(3)]
    assert [d.split("mac=")[1] for d in devices if "mac=" in d] == [
        spec.mac,
        "aa:ca:e9:12:34:78",
        "aa:ca:e9:12:34:56",
    ]
    raw = make_machine(tmp_path, disks=())  # Firecracker takes raw disks only
    calls = [c for c in config_calls(raw, att) if c.path.startswith("/network-interfaces/")]
    assert [c.body["host_dev_name"] for c in calls] == ["tap0", "tap1", "tap2"]  # type: ignore[index]


def test_guest_command_line_names_every_nic_by_mac() -> None:
    att = Attachment(tap="tap0", ip="10.61.0.5", prefix_len=24, gateway="10.61.0.1",
                     extra_nics=NICS)  # fmt: skip
    words = with_guest_ip("console=ttyS0", att, "vm", "02:00:00:00:00:01").split()
    assert words[1].startswith("ip=10.61.0.5::10.61.0.1:255.255.255.0:vm:eth0:off")
    assert words[2:] == [
        "ignite.nic=eth0,02:00:00:00:00:01",
        "ignite.nic=eth1,aa:ca:e9:12:34:78,10.9.0.2/24",
        "ignite.nic=eth2,aa:ca:e9:12:34:56",
    ]
    plain = with_guest_ip("console=ttyS0", Attachment(tap="tap0"), "vm", "02:00:00:00:00:01")
    assert plain == "console=ttyS0"  # no extra NIC: no ignite.nic= words


def test_the_launcher_hears_the_supervisor_wait() -> None:
    r, w = os.pipe()
    try:
        ready = Ready(w)
        ready.waiting("interfaces foo in network namespace ns", 120.0)
        ready.waiting("again", 1.0)  # said once only
        early = read_ready(r, 5, early=True)
        assert early is not None and early["waiting"].startswith("interfaces foo")
        ready.ok(1234)
        w = -1
        final = read_ready(r, 5)
        assert final is not None and final["ok"] and final["vmm_pid"] == 1234
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_a_waiting_launcher_waits_for_the_final_word() -> None:
    r, w = os.pipe()
    try:
        lines = [{"ok": True, "pid": 1, "waiting": "x", "timeout": 60},
                 {"ok": False, "error": "gave up"}]  # fmt: skip
        os.write(w, b"".join(json.dumps(m).encode() + b"\n" for m in lines))
        msg = read_ready(r, 5)
        assert msg == {"ok": False, "error": "gave up"}
    finally:
        os.close(r)
        os.close(w)


def test_interfaces_need_the_cni_plugin(fake_host: object) -> None:
    from ignitevm.api import VM
    from ignitevm.ops.launchplan import extra_interfaces

    vm = VM()
    vm.metadata.name = "m"
    vm.metadata.annotations = {A + "foo": "tc-redirect"}
    assert extra_interfaces(vm, "cni") == ("foo",)
    with pytest.raises(ValidationError, match="need the cni network plugin"):
        extra_interfaces(vm, "user")
