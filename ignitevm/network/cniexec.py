"""A CNI runtime (spec 1.0): run a network configuration list's plugins for ADD and DEL.

ADD runs the plugins in order, each getting the previous one's result as ``prevResult``; DEL runs
them in reverse with the cached final ADD result. Capabilities a plugin declares get their
``runtimeConfig`` (``portMappings``, ``ips``).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignitevm import proc
from ignitevm.errors import IgniteError
from ignitevm.network.base import PortMapping
from ignitevm.network.cniconf import NetworkConfigList, require_plugin_binary

log = logging.getLogger(__name__)

PLUGIN_TIMEOUT = 60.0
# CNI error codes (spec "Error" section) that get a specific hint
_HINTS = {
    1: "the plugin does not support this network's cniVersion",
    4: "the network configuration is invalid",
    11: "try again",
}


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: bytes
    stderr: bytes


# (plugin path, environment, stdin) -> result; tests replace it with a fake
Executor = Callable[[Path, Mapping[str, str], bytes], ExecResult]


def exec_plugin(path: Path, env: Mapping[str, str], stdin: bytes) -> ExecResult:
    try:
        done = proc.run([path], input=stdin, env=env, check=False, timeout=PLUGIN_TIMEOUT)
    except proc.TimeoutExpired:
        return ExecResult(-1, b"", f"timed out after {PLUGIN_TIMEOUT:.0f} s".encode())
    return ExecResult(done.returncode, done.stdout or b"", done.stderr or b"")


class CNIPluginError(IgniteError):
    """A CNI plugin failed; carries the CNI error code when the plugin reported one."""

    def __init__(self, plugin: str, network: str, command: str, message: str, code: int | None):
        self.plugin = plugin
        self.code = code
        hint = _HINTS.get(code or 0) or "see the plugin's message; run with --log-level debug"
        coded = f" (CNI error code {code})" if code is not None else ""
        super().__init__(
            f"CNI plugin {plugin!r} failed {command} on network {network!r}: {message}{coded}",
            hint=hint,
        )


@dataclass(frozen=True)
class RuntimeArgs:
    """What the runtime passes to every plugin of one attachment."""

    container_id: str
    netns: str  # path, e.g. /var/run/netns/ignite-<uid>
    ifname: str = "eth0"
    ports: tuple[PortMapping, ...] = ()
    ips: tuple[str, ...] = ()  # requested addresses (CIDR), for plugins with the "ips" capability

    def capability_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.ports:
            args["portMappings"] = [port_mapping_json(p) for p in self.ports]
        if self.ips:
            args["ips"] = list(self.ips)
        return args


def port_mapping_json(pm: PortMapping) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "hostPort": pm.host_port,
        "containerPort": pm.vm_port,
        "protocol": str(pm.protocol),
    }
    if pm.host_ip not in ("", "0.0.0.0"):
        entry["hostIP"] = pm.host_ip  # portmap: no hostIP = every address
    return entry


def plugin_env(command: str, args: RuntimeArgs, bin_dirs: Sequence[Path]) -> dict[str, str]:
    env = dict(os.environ)
    # plugins call iptables/ip; make sure sbin is searched even from a user's shell
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    env.update(
        CNI_COMMAND=command,
        CNI_CONTAINERID=args.container_id,
        CNI_NETNS=args.netns,
        CNI_IFNAME=args.ifname,
        CNI_PATH=os.pathsep.join(str(d) for d in bin_dirs),
    )
    return env


def plugin_config(
    net: NetworkConfigList,
    plugin: Mapping[str, Any],
    args: RuntimeArgs,
    prev_result: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The stdin of one plugin invocation (spec: name/cniVersion from the list, prevResult,
    runtimeConfig for declared capabilities)."""
    conf = copy.deepcopy(dict(plugin))
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    conf.pop("runtimeConfig", None)
    wanted = {k for k, v in (plugin.get("capabilities") or {}).items() if v}
    runtime = {k: v for k, v in args.capability_args().items() if k in wanted}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev_result is not None:
        conf["prevResult"] = copy.deepcopy(dict(prev_result))
    else:
        conf.pop("prevResult", None)
    return conf


def parse_error(stdout: bytes, stderr: bytes) -> tuple[str, int | None]:
    """(message, code) from a failed plugin: its CNI error JSON, else its stderr."""
    try:
        data = json.loads(stdout)
    except ValueError:
        data = None
    if isinstance(data, dict) and ("msg" in data or "code" in data):
        msg = str(data.get("msg") or "no message")
        details = data.get("details")
        if details:
            msg = f"{msg}: {details}"
        code = data.get("code")
        return msg, code if isinstance(code, int) else None
    text = (stderr or stdout).decode(errors="replace").strip()
    tail = " | ".join(text.splitlines()[-3:])
    return tail or "no output", None


class CNIRuntime:
    """Runs one network's plugins; ``executor`` is replaceable for tests."""

    def __init__(self, bin_dirs: Sequence[Path], executor: Executor = exec_plugin) -> None:
        self.bin_dirs = tuple(bin_dirs)
        self.executor = executor

    def _invoke(
        self, command: str, net: NetworkConfigList, conf: Mapping[str, Any], args: RuntimeArgs
    ) -> dict[str, Any] | None:
        plugin_type = str(conf["type"])
        path = require_plugin_binary(plugin_type, self.bin_dirs)
        env = plugin_env(command, args, self.bin_dirs)
        log.debug("CNI %s %s (network %s) stdin: %s", command, plugin_type, net.name, conf)
        res = self.executor(path, env, json.dumps(conf).encode())
        if res.returncode != 0:
            message, code = parse_error(res.stdout, res.stderr)
            raise CNIPluginError(plugin_type, net.name, command, message, code)
        if not res.stdout.strip():
            return None
        try:
            data = json.loads(res.stdout)
        except ValueError as exc:
            raise CNIPluginError(
                plugin_type, net.name, command, f"unreadable result: {exc}", None
            ) from exc
        return data if isinstance(data, dict) else None

    def add(self, net: NetworkConfigList, args: RuntimeArgs) -> dict[str, Any]:
        """Run ADD through the list; return the final result. On failure the caller runs
        ``delete`` (the spec leaves cleanup of a half-done ADD to the runtime)."""
        result: dict[str, Any] | None = None
        for plugin in net.plugins:
            conf = plugin_config(net, plugin, args, result)
            out = self._invoke("ADD", net, conf, args)
            if out is not None:
                result = out
        if result is None:
            raise CNIPluginError(str(net.plugins[-1]["type"]), net.name, "ADD", "no result", None)
        return result

    def delete(
        self, net: NetworkConfigList, args: RuntimeArgs, prev_result: Mapping[str, Any] | None
    ) -> list[CNIPluginError]:
        """Run DEL in reverse order with the cached ADD result. Every plugin runs even when
        one fails; the failures are logged and returned."""
        errors: list[CNIPluginError] = []
        for plugin in reversed(net.plugins):
            conf = plugin_config(net, plugin, args, prev_result)
            try:
                self._invoke("DEL", net, conf, args)
            except CNIPluginError as exc:
                log.warning("%s", exc)
                errors.append(exc)
                self._release_ipam(net, conf, args)
            except IgniteError as exc:
                log.warning("CNI DEL %s: %s", plugin.get("type"), exc)
        return errors

    def _release_ipam(
        self, net: NetworkConfigList, conf: Mapping[str, Any], args: RuntimeArgs
    ) -> None:
        """A main plugin whose DEL failed (e.g. its namespace is gone) may not have reached its
        IPAM plugin; call that directly, the way the main plugin would, so no lease is left."""
        ipam = conf.get("ipam")
        if not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str):
            return
        try:
            self._invoke("DEL", net, {**conf, "type": ipam["type"]}, args)
        except IgniteError as exc:
            log.warning("IPAM DEL %s: %s", ipam["type"], exc)


@dataclass(frozen=True)
class InterfaceAddress:
    """The guest's address from a CNI result."""

    ip: str
    prefix_len: int
    gateway: str | None
    mac: str | None

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix_len}"


def _default_gateway(result: Mapping[str, Any]) -> str | None:
    for route in result.get("routes") or []:
        if route.get("dst") in ("0.0.0.0/0", "default") and route.get("gw"):
            return str(route["gw"])
    return None


def parse_result(result: Mapping[str, Any], ifname: str = "eth0") -> InterfaceAddress:
    """The first IPv4 address on ``ifname`` (or, failing that, any IPv4) in a CNI result of
    version 0.3.0 or later."""
    interfaces = result.get("interfaces") or []
    candidates: list[tuple[bool, Mapping[str, Any]]] = []
    for entry in result.get("ips") or []:
        idx = entry.get("interface")
        on_if = (
            isinstance(idx, int)
            and 0 <= idx < len(interfaces)
            and interfaces[idx].get("name") == ifname
        )
        candidates.append((on_if, entry))
    candidates.sort(key=lambda c: not c[0])
    for on_if, entry in candidates:
        try:
            iface = ipaddress.ip_interface(str(entry.get("address")))
        except ValueError:
            continue
        if iface.version != 4:
            continue
        mac = None
        idx = entry.get("interface")
        if on_if and isinstance(idx, int):
            mac = interfaces[idx].get("mac")
        gateway = entry.get("gateway") or _default_gateway(result)
        return InterfaceAddress(
            ip=str(iface.ip),
            prefix_len=iface.network.prefixlen,
            gateway=str(gateway) if gateway else None,
            mac=str(mac) if mac else None,
        )
    raise IgniteError(
        "the CNI result has no IPv4 address for the VM",
        hint="the network's IPAM must hand out an IPv4 address (e.g. host-local with a subnet)",
    )
