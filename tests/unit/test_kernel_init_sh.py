"""init.sh's parsing functions, run with busybox sh on the host (IGNITEVM_INIT_LIB=1 sources only
the functions)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ignitevm.kernel import init_script

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")


def run_lib(snippet: str) -> str:
    assert BUSYBOX is not None
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "init.sh"
        script.write_bytes(init_script())
        env = {"PATH": os.environ["PATH"], "IGNITEVM_INIT_LIB": "1"}
        proc = subprocess.run(
            [BUSYBOX, "sh", "-c", f'. "{script}"; {snippet}'],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=10,
        )
    return proc.stdout


def net(value: str) -> dict[str, str]:
    out = run_lib(
        f"parse_ip '{value}' || echo FAILED=1; "
        "for v in NET_MODE NET_ADDR NET_GW NET_PREFIX NET_HOST NET_DEV NET_DNS0 NET_DNS1; do "
        'eval echo "$v=\\$$v"; done'
    )
    return dict(line.split("=", 1) for line in out.splitlines())


def test_static_nfsroot_syntax_with_dns() -> None:
    got = net("10.61.0.5::10.61.0.1:255.255.255.0:web-1:eth0:off:1.1.1.1:8.8.8.8")
    assert got == {
        "NET_MODE": "static", "NET_ADDR": "10.61.0.5", "NET_GW": "10.61.0.1", "NET_PREFIX": "24",
        "NET_HOST": "web-1", "NET_DEV": "eth0", "NET_DNS0": "1.1.1.1", "NET_DNS1": "8.8.8.8",
    }  # fmt: skip


def test_static_without_gateway_hostname_or_dns() -> None:
    got = net("192.168.7.2:::255.255.0.0::eth1:off")
    assert got["NET_MODE"] == "static"
    assert (got["NET_ADDR"], got["NET_PREFIX"], got["NET_DEV"]) == ("192.168.7.2", "16", "eth1")
    assert got["NET_GW"] == got["NET_HOST"] == got["NET_DNS0"] == ""


@pytest.mark.parametrize("value", ["dhcp", "on", "::::vm::dhcp"])
def test_dhcp(value: str) -> None:
    assert net(value)["NET_MODE"] == "dhcp"


@pytest.mark.parametrize("value", ["", "off", "none"])
def test_no_network(value: str) -> None:
    assert net(value)["NET_MODE"] == "none"


def test_bad_netmask_fails() -> None:
    assert net("10.0.0.2::10.0.0.1:255.0.255.0::eth0:off").get("FAILED") == "1"


@pytest.mark.parametrize(
    ("mask", "prefix"),
    [("255.255.255.255", "32"), ("255.255.252.0", "22"), ("0.0.0.0", "0"), ("20", "20")],
)
def test_mask2prefix(mask: str, prefix: str) -> None:
    assert run_lib(f"mask2prefix {mask}").strip() == prefix


def test_parse_cmdline_picks_ignite_words_and_ignores_others() -> None:
    out = run_lib(
        "parse_cmdline console=ttyS0 quiet ignite.cow=overlay ip=dhcp ignite.hostname=box "
        "init=/lib/systemd/systemd ignite.debug root=/dev/vda; "
        'echo "$IGNITE_COW|$IGNITE_IP|$IGNITE_HOSTNAME|$IGNITE_INIT|$IGNITE_DEBUG"'
    )
    assert out.strip() == "overlay|dhcp|box|/lib/systemd/systemd|1"


def test_defaults_when_words_are_absent() -> None:
    out = run_lib('parse_cmdline console=ttyS0; echo "[$IGNITE_COW][$IGNITE_IP][$IGNITE_DEBUG]"')
    assert out.strip() == "[][][]"


def test_parse_cmdline_collects_nics() -> None:
    out = run_lib(
        "parse_cmdline quiet ignite.nic=eth0,02:00:00:00:00:01 "
        "ignite.nic=eth1,aa:ca:e9:12:34:78,10.9.0.2/24,10.9.1.2/24 "
        "ignite.nic=eth2,aa:ca:e9:12:34:56; "
        'echo "$IGNITE_NICS"'
    )
    assert out.strip() == (
        "eth0,02:00:00:00:00:01 eth1,aa:ca:e9:12:34:78,10.9.0.2/24,10.9.1.2/24 "
        "eth2,aa:ca:e9:12:34:56"
    )


FAKE_IP = """
ip() {  # records the call; renames move the fake sysfs entries
    echo "ip $*" >>"$SYS_NET.log"
    if [ "$1 $2" = "link set" ] && [ "$5" = name ]; then mv "$SYS_NET/$4" "$SYS_NET/$6"; fi
}
"""


def test_nics_are_named_by_mac_and_get_their_addresses(tmp_path: Path) -> None:
    """The kernel probed the NICs in another order than the command line lists them: eth0 has
    the extra NIC's MAC and eth1 eth0's. /init swaps them by MAC, then sets eth1's addresses."""
    sys_net = tmp_path / "net"
    for dev, mac in (("eth0", "aa:ca:e9:12:34:78"), ("eth1", "02:00:00:00:00:01")):
        (sys_net / dev).mkdir(parents=True)
        (sys_net / dev / "address").write_text(mac + "\n")
    run_lib(
        f"SYS_NET={sys_net}; {FAKE_IP} "
        "IGNITE_NICS='eth0,02:00:00:00:00:01 eth1,aa:ca:e9:12:34:78,10.9.0.2/24,10.9.1.2/24'; "
        'say() { echo "$*" >>"$SYS_NET.log"; }; name_nics; setup_nics'
    )
    assert (sys_net / "eth0/address").read_text().strip() == "02:00:00:00:00:01"
    assert (sys_net / "eth1/address").read_text().strip() == "aa:ca:e9:12:34:78"
    assert Path(f"{sys_net}.log").read_text().splitlines() == [
        "ip link set dev eth0 name ignitenic1",
        "ip link set dev eth1 name eth0",
        "ip link set dev ignitenic1 name eth1",
        "ip link set dev eth1 up",
        "ip addr add 10.9.0.2/24 dev eth1",
        "ip addr add 10.9.1.2/24 dev eth1",
    ]


def test_parse_share() -> None:
    out = run_lib(
        "for s in ignite_share0:rw:/mnt/src ignite_share1:ro:/data:x bad:xx:/a t:rw:rel; do "
        'if parse_share "$s"; then echo "$SHARE_TAG|$SHARE_OPTS|$SHARE_PATH"; '
        'else echo "refused $s"; fi; done'
    )
    opts = "trans=virtio,version=9p2000.L,cache=mmap,msize=512000"
    assert out.splitlines() == [
        f"ignite_share0|{opts}|/mnt/src",
        f"ignite_share1|{opts},ro|/data:x",
        "refused bad:xx:/a",
        "refused t:rw:rel",
    ]
