"""`ignite run --network-plugin cni` end to end: the real CLI, the detached supervisor, QEMU and
the cni plugin. The CLI runs in a thread that entered the test's own "host" namespace, so the
supervisor (and with it the bridge, veths and iptables chains) lives there too; the CNI config
comes from IGNITE_CNI_CONF_DIR. One VM at a time.

Checks what issue 4 asks of teardown: after stop, kill -9 of the supervisor and rm -f, no
namespace, bridge port, chain or lease is left, and the VM keeps its address across restarts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite
from tests.integration.test_network_cni import Env, env, ping

__all__ = ["env"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins"),
]


def _cli(ignite: Ignite, env: Env) -> Ignite:
    extra = {**ignite.env, "IGNITE_CNI_CONF_DIR": str(env.conf_dir)}
    return Ignite(state_dir=ignite.state_dir, config=ignite.config, env=extra)


def _vm_dir(cli: Ignite, env: Env, name: str) -> Path:
    data = env.in_host(lambda: cli.inspect(name))
    meta = data.get("metadata")
    assert isinstance(meta, dict)
    return cli.state_dir / "vm" / str(meta["uid"])


def _network_record(vm_dir: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((vm_dir / "network.json").read_text())
    return data


def _wait_ping(env: Env, ip: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(env, ip, timeout=2):
            return
    raise AssertionError(f"the guest {ip} never answered a ping")


def _assert_clean(env: Env, vm_dir: Path) -> None:
    record = _network_record(vm_dir)
    assert record["attached"] is False
    uid = vm_dir.name
    assert not Path("/var/run/netns", f"ignite-{uid}").exists()
    nat = env.host("iptables-save", "-t", "nat")
    assert f"ignite-{uid}" not in nat and "CNI-DN-" not in nat
    assert env.bridge_ports() == []
    assert env.leases() == []


def test_run_stop_kill9_start_rm_with_cni(ignite: Ignite, vm_name: str, env: Env) -> None:
    cli = _cli(ignite, env)
    try:
        env.in_host(lambda: cli("run", "--name", vm_name, "--network-plugin", "cni",
                                "--memory", "256MB", "--size", "1GB"))  # fmt: skip
        vm_dir = _vm_dir(cli, env, vm_name)
        record = _network_record(vm_dir)
        ip = str(record["last_ip"])
        assert record["attached"] is True and ip.startswith(env.subnet_prefix)
        assert ip in json.dumps(env.in_host(lambda: cli.inspect(vm_name)))
        assert env.leases() == [ip] and len(env.bridge_ports()) == 1
        _wait_ping(env, ip)

        env.in_host(lambda: cli("stop", vm_name))
        _assert_clean(env, vm_dir)

        env.in_host(lambda: cli("start", vm_name))
        assert _network_record(vm_dir)["last_ip"] == ip, "the address changed on restart"
        _wait_ping(env, ip)

        # kill -9 the supervisor: its QEMU and DHCP responder go with it, the rest stays ...
        runtime = json.loads((vm_dir / "runtime.json").read_text())
        os.kill(int(runtime["supervisor_pid"]), signal.SIGKILL)
        time.sleep(1.0)
        assert env.leases() == [ip]
        # ... until the next start cleans it up: still one lease, same address (Ignite #660)
        env.in_host(lambda: cli("start", vm_name))
        assert _network_record(vm_dir)["last_ip"] == ip
        assert env.leases() == [ip] and len(env.bridge_ports()) == 1
        _wait_ping(env, ip)

        env.in_host(lambda: cli("rm", "-f", vm_name))
        assert env.leases() == [] and env.bridge_ports() == []
        nat = env.host("iptables-save", "-t", "nat")
        assert f"ignite-{vm_dir.name}" not in nat
        assert not Path("/var/run/netns", f"ignite-{vm_dir.name}").exists()
    finally:
        env.in_host(lambda: cli("rm", "-f", vm_name, check=False))
        leftovers = subprocess.run(["pgrep", "-f", re.escape(str(cli.state_dir))],
                                   capture_output=True, text=True).stdout.split()  # fmt: skip
        assert leftovers == [] or all(not Path(f"/proc/{p}").exists() for p in leftovers)
