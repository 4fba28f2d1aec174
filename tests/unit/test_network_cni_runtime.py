"""The CNI runtime's spec behaviour (env, config chaining, DEL order, errors, results) with a
fake plugin executor, config discovery, and the cni plugin's records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ignitevm.errors import IgniteError, MissingToolError
from ignitevm.network import cniconf
from ignitevm.network.base import PortMapping, Protocol_
from ignitevm.network.cniconf import CNIConfigError, NetworkConfigList
from ignitevm.network.cniexec import (
    CNIPluginError,
    CNIRuntime,
    ExecResult,
    RuntimeArgs,
    parse_error,
    parse_result,
    plugin_config,
)
from ignitevm.network.cnirecord import NetworkRecord
from ignitevm.network.masquerade import masquerade_chain
from ignitevm.network.resolv import host_nameservers

BRIDGE_RESULT: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "ignite0", "mac": "aa:aa:aa:aa:aa:aa"},
        {"name": "veth1234", "mac": "bb:bb:bb:bb:bb:bb"},
        {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/var/run/netns/x"},
    ],
    "ips": [{"interface": 2, "address": "10.61.0.5/16", "gateway": "10.61.0.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}


def net() -> NetworkConfigList:
    return NetworkConfigList.from_json(cniconf.default_conflist())


def args(**kw: Any) -> RuntimeArgs:
    return RuntimeArgs(container_id="ignite-0123", netns="/var/run/netns/ignite-0123", **kw)


class FakeExec:
    """Records every invocation; answers from ``results`` (by plugin type and command)."""

    def __init__(self, results: Mapping[tuple[str, str], ExecResult] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.results = dict(results or {})

    def __call__(self, path: Path, env: Mapping[str, str], stdin: bytes) -> ExecResult:
        conf = json.loads(stdin)
        self.calls.append((path.name, dict(env), conf))
        key = (path.name, env["CNI_COMMAND"])
        if key in self.results:
            return self.results[key]
        if env["CNI_COMMAND"] == "ADD":
            out = dict(conf.get("prevResult") or BRIDGE_RESULT)
            return ExecResult(0, json.dumps(out).encode(), b"")
        return ExecResult(0, b"", b"")


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("bridge", "host-local", "portmap"):
        (d / name).write_text("#!/bin/sh\n")
        (d / name).chmod(0o755)
    return d


def test_add_chains_prev_result_and_sets_env(bin_dir: Path) -> None:
    fake = FakeExec()
    result = CNIRuntime([bin_dir], fake).add(net(), args())
    assert result["ips"][0]["address"] == "10.61.0.5/16"
    assert [c[0] for c in fake.calls] == ["bridge", "portmap"]
    (_, env1, conf1), (_, _, conf2) = fake.calls
    assert env1["CNI_COMMAND"] == "ADD" and env1["CNI_CONTAINERID"] == "ignite-0123"
    assert env1["CNI_NETNS"] == "/var/run/netns/ignite-0123" and env1["CNI_IFNAME"] == "eth0"
    assert env1["CNI_PATH"] == str(bin_dir) and "/usr/sbin" in env1["PATH"]
    assert conf1["name"] == "ignite-cni-bridge" and conf1["cniVersion"] == "1.0.0"
    assert "prevResult" not in conf1
    assert conf2["prevResult"] == BRIDGE_RESULT
    assert conf2["name"] == conf1["name"] and conf2["snat"] is True


def test_runtime_config_only_for_declared_capabilities(bin_dir: Path) -> None:
    fake = FakeExec()
    ports = (PortMapping(2222, 22), PortMapping(5353, 53, Protocol_.UDP, "127.0.0.1"))
    CNIRuntime([bin_dir], fake).add(net(), args(ports=ports, ips=("10.61.0.9/16",)))
    bridge_conf, portmap_conf = fake.calls[0][2], fake.calls[1][2]
    assert bridge_conf["runtimeConfig"] == {"ips": ["10.61.0.9/16"]}
    assert portmap_conf["runtimeConfig"] == {
        "portMappings": [
            {"hostPort": 2222, "containerPort": 22, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
        ]
    }


def test_no_runtime_config_without_capability_args() -> None:
    conf = plugin_config(net(), net().plugins[1], args(), None)
    assert "runtimeConfig" not in conf and "prevResult" not in conf


def test_del_runs_in_reverse_with_cached_result(bin_dir: Path) -> None:
    fake = FakeExec()
    errors = CNIRuntime([bin_dir], fake).delete(net(), args(), BRIDGE_RESULT)
    assert errors == []
    assert [c[0] for c in fake.calls] == ["portmap", "bridge"]
    assert all(c[1]["CNI_COMMAND"] == "DEL" for c in fake.calls)
    assert all(c[2]["prevResult"] == BRIDGE_RESULT for c in fake.calls)


def test_del_keeps_going_and_releases_ipam_when_main_plugin_fails(bin_dir: Path) -> None:
    err = json.dumps({"cniVersion": "1.0.0", "code": 999, "msg": "netns gone"}).encode()
    fake = FakeExec({("portmap", "DEL"): ExecResult(1, err, b""),
                     ("bridge", "DEL"): ExecResult(1, err, b"")})  # fmt: skip
    errors = CNIRuntime([bin_dir], fake).delete(net(), args(), None)
    assert [e.plugin for e in errors] == ["portmap", "bridge"]
    # the bridge's IPAM plugin is called directly so the lease is freed
    assert [c[0] for c in fake.calls] == ["portmap", "bridge", "host-local"]
    assert fake.calls[2][2]["ipam"]["type"] == "host-local"


def test_add_error_json_becomes_ignite_error(bin_dir: Path) -> None:
    err = {"cniVersion": "1.0.0", "code": 11, "msg": "failed to allocate", "details": "range full"}
    fake = FakeExec({("bridge", "ADD"): ExecResult(1, json.dumps(err).encode(), b"")})
    with pytest.raises(CNIPluginError) as info:
        CNIRuntime([bin_dir], fake).add(net(), args())
    assert info.value.plugin == "bridge" and info.value.code == 11
    assert "failed to allocate: range full" in str(info.value)
    assert "'bridge'" in str(info.value) and "ignite-cni-bridge" in str(info.value)
    assert info.value.hint


def test_parse_error_falls_back_to_stderr() -> None:
    assert parse_error(b"", b"line1\npanic: boom\n") == ("line1 | panic: boom", None)
    assert parse_error(b"", b"") == ("no output", None)


def test_missing_plugin_binary_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError) as info:
        CNIRuntime([tmp_path], FakeExec()).add(net(), args())
    assert "containernetworking-plugins" in (info.value.hint or "")


def test_parse_result_picks_eth0_ipv4() -> None:
    result = dict(BRIDGE_RESULT)
    result["ips"] = [
        {"interface": 0, "address": "10.61.0.1/16"},
        {"interface": 2, "address": "fd00::5/64"},
        {"interface": 2, "address": "10.61.0.5/16", "gateway": "10.61.0.1"},
    ]
    addr = parse_result(result)
    assert (addr.ip, addr.prefix_len, addr.gateway, addr.mac) == (
        "10.61.0.5",
        16,
        "10.61.0.1",
        "cc:cc:cc:cc:cc:cc",
    )
    assert addr.cidr == "10.61.0.5/16"


def test_parse_result_old_version_and_route_gateway() -> None:
    result = {
        "cniVersion": "0.3.1",
        "ips": [{"version": "4", "address": "192.168.5.3/24"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.5.254"}],
    }
    addr = parse_result(result)
    assert (addr.ip, addr.gateway, addr.mac) == ("192.168.5.3", "192.168.5.254", None)


def test_parse_result_without_ipv4_is_an_error() -> None:
    with pytest.raises(IgniteError):
        parse_result({"ips": [{"address": "fd00::1/64"}]})


# --- configuration discovery -------------------------------------------------------------------


def test_default_config_is_written_when_dir_is_empty(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    found = cniconf.require_config_list(conf_dir)
    assert found.source == conf_dir / "10-ignite.conflist"
    assert found.name == "ignite-cni-bridge"
    bridge, portmap = found.plugins
    assert bridge["bridge"] == "ignite0" and bridge["ipMasq"] and bridge["isGateway"]
    assert bridge["ipam"]["subnet"] == "10.61.0.0/16"
    assert bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert portmap["capabilities"] == {"portMappings": True} and portmap["snat"] is True
    assert [p.name for p in conf_dir.iterdir()] == ["10-ignite.conflist"]


def test_first_config_in_lexical_order_wins(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a config")
    (tmp_path / "20-b.conflist").write_text(json.dumps({"name": "b", "plugins": [{"type": "x"}]}))
    single = {"name": "a", "type": "bridge", "cniVersion": "0.4.0"}
    (tmp_path / "10-a.conf").write_text(json.dumps(single))
    found = cniconf.require_config_list(tmp_path)
    assert found.name == "a" and found.cni_version == "0.4.0"
    assert found.plugins == ({"type": "bridge"},)  # a .conf becomes a list of one


def test_broken_config_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "10-x.conflist").write_text("{nope")
    with pytest.raises(CNIConfigError):
        cniconf.find_config_list(tmp_path)
    (tmp_path / "10-x.conflist").write_text(json.dumps({"name": "x", "plugins": []}))
    with pytest.raises(CNIConfigError):
        cniconf.find_config_list(tmp_path)


def test_dirs_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cniconf.CONF_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(cniconf.BIN_DIR_ENV, f"{tmp_path}/a:{tmp_path}/b")
    assert cniconf.resolve_conf_dir() == tmp_path
    assert cniconf.resolve_bin_dirs() == (tmp_path / "a", tmp_path / "b")
    assert cniconf.resolve_conf_dir(Path("/x")) == Path("/x")
    monkeypatch.delenv(cniconf.BIN_DIR_ENV)
    assert cniconf.resolve_bin_dirs() == (Path("/usr/lib/cni"), Path("/opt/cni/bin"))


def test_plugin_types_include_ipam() -> None:
    assert cniconf.plugin_types(net()) == ["bridge", "host-local", "portmap"]


# --- records, DNS, chain names -----------------------------------------------------------------


def test_record_roundtrip(tmp_path: Path) -> None:
    rec = NetworkRecord(attached=True, netns="ignite-1", container_id="ignite-1",
                        result=BRIDGE_RESULT, cidrs=["10.61.0.5/16"])  # fmt: skip
    rec.save(tmp_path)
    assert NetworkRecord.load(tmp_path) == rec
    assert [p.name for p in tmp_path.iterdir()] == ["network.json"]
    # a record from an older version (its DHCP responder could be a process) still loads
    older = {**json.loads((tmp_path / "network.json").read_text()), "dhcp_pid": 42}
    (tmp_path / "network.json").write_text(json.dumps(older))
    assert NetworkRecord.load(tmp_path) == rec
    assert NetworkRecord.load(tmp_path / "missing") is None
    (tmp_path / "network.json").write_text("{broken")
    assert NetworkRecord.load(tmp_path) is None


@pytest.mark.parametrize("text", ["", '{"attached": true, "netns": "ign', "null", "[1]", "7", "{}",
                                  '{"attached": "yes"}'])  # fmt: skip
def test_a_damaged_record_is_ignored_with_a_warning(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "network.json").write_text(text)
    assert NetworkRecord.load(tmp_path) is None
    assert "network.json" in caplog.text


def test_nameservers_skip_loopback_stubs(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search lan\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\n")
    assert host_nameservers(resolv, tmp_path / "none") == ("192.0.2.1",)


def test_nameservers_fall_back_to_resolved_upstreams(tmp_path: Path) -> None:
    stub, upstream = tmp_path / "stub", tmp_path / "upstream"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    upstream.write_text("nameserver 198.51.100.1\nnameserver 198.51.100.2\n")
    assert host_nameservers(stub, upstream) == ("198.51.100.1", "198.51.100.2")
    upstream.write_text("nameserver 127.0.0.1\n")
    assert host_nameservers(stub, upstream) == ()


def test_masquerade_chain_matches_the_bridge_plugin() -> None:
    # measured: the bridge plugin named the chain of network "igxnet", container "igx1" so
    assert masquerade_chain("igxnet", "igx1") == "CNI-e33ba7e84a98c08010fdb3ff"
    digest = hashlib.sha512(b"nc").hexdigest()
    assert masquerade_chain("n", "c") == "CNI-" + digest[:24]


# --- what the host must have (ops/preflight.py reports it) ------------------------------------


def test_missing_requirements_names_missing_plugins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("ignitevm.proc.find_tool", lambda name: f"/usr/sbin/{name}")
    missing = cniconf.missing_requirements(tmp_path, [tmp_path / "empty"])
    # no config yet: Ignite's default network's plugins, with their IPAM plugin
    assert missing == ("bridge", "host-local", "portmap")
    # nothing was written: the check only looks
    assert list(tmp_path.glob("*.conflist")) == []


def test_missing_requirements_names_missing_tools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bin_dir: Path
) -> None:
    monkeypatch.setattr("ignitevm.proc.find_tool", lambda name: None)
    assert cniconf.missing_requirements(tmp_path, [bin_dir]) == ("ip", "tc", "iptables")
    # iptables only for the plugins that run it
    macvlan = {"cniVersion": "1.0.0", "name": "m", "type": "macvlan",
               "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}}  # fmt: skip
    (tmp_path / "10-macvlan.conf").write_text(json.dumps(macvlan))
    assert cniconf.missing_requirements(tmp_path, [bin_dir]) == ("macvlan", "ip", "tc")
    monkeypatch.setattr("ignitevm.proc.find_tool", lambda name: f"/usr/sbin/{name}")
    (tmp_path / "10-macvlan.conf").unlink()
    assert cniconf.missing_requirements(tmp_path, [bin_dir]) == ()


def test_a_hanging_plugin_times_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("ignitevm.network.cniexec.PLUGIN_TIMEOUT", 0.3)
    (tmp_path / "bridge").write_text("#!/bin/sh\nexec sleep 30\n")
    (tmp_path / "bridge").chmod(0o755)
    with pytest.raises(CNIPluginError) as info:
        CNIRuntime([tmp_path]).add(net(), args())
    assert "timed out" in str(info.value)
