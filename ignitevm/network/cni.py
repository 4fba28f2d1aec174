"""Network plugin ``cni`` (the default): a namespace per VM, CNI ADD/DEL, Ignite's tc-redirect
between the VM's tap and the CNI interface, and a DHCP responder for the VM's MAC.

Everything ``detach`` needs is recorded in ``<vm_dir>/network.json`` (cnirecord.py) before it is
created, so a fresh process can tear down after the supervisor died (kill -9); see
docs/network.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ignitevm.network import cniconf, multinet, netns, tc
from ignitevm.network.base import (
    Attachment,
    GuestNIC,
    NetworkRequest,
    PluginName,
    PortMapping,
)
from ignitevm.network.cniexec import (
    CNIPluginError,
    CNIRuntime,
    Executor,
    InterfaceAddress,
    RuntimeArgs,
    exec_plugin,
    parse_result,
)
from ignitevm.network.cnirecord import IFNAME, NetworkRecord, container_id, netns_name
from ignitevm.network.dhcp import Lease
from ignitevm.network.masquerade import remove_leaked_masquerade
from ignitevm.network.resolv import host_nameservers
from ignitevm.network.responder import ResponderThread, open_tap_socket

log = logging.getLogger(__name__)


class CNINetwork:
    """Plugin ``cni``. Directories default to /etc/cni/net.d and /usr/lib/cni:/opt/cni/bin
    (env IGNITE_CNI_CONF_DIR / IGNITE_CNI_BIN_DIR); tests pass their own."""

    name = PluginName.CNI

    def __init__(
        self,
        conf_dir: Path | None = None,
        bin_dirs: Sequence[Path] | None = None,
        executor: Executor = exec_plugin,
        resolv_conf: Path = Path("/etc/resolv.conf"),
    ) -> None:
        self.conf_dir = cniconf.resolve_conf_dir(conf_dir)
        self.bin_dirs = cniconf.resolve_bin_dirs(bin_dirs)
        self.runtime = CNIRuntime(self.bin_dirs, executor)
        self.resolv_conf = resolv_conf
        self._responder_threads: dict[str, ResponderThread] = {}
        # this process's own records, for a detach after vm_dir was damaged or deleted
        self._records: dict[str, NetworkRecord] = {}

    # --- attach -----------------------------------------------------------------------------

    def attach(self, req: NetworkRequest) -> Attachment:
        old = NetworkRecord.load(req.vm_dir)
        if old is not None and old.attached:
            log.warning("VM %s has a network left from an earlier run; removing it", req.vm_uid)
            self.detach(req)
            old = NetworkRecord.load(req.vm_dir)
        net = cniconf.require_config_list(self.conf_dir)
        wanted_ip = old.last_ip if old and old.last_network == net.name else None
        record = NetworkRecord(
            attached=True,
            netns=netns_name(req),
            container_id=container_id(req),
            network=net.to_json(),
            ports=[p.to_dict() for p in req.ports],
            last_ip=old.last_ip if old else None,
            last_network=old.last_network if old else None,
        )
        try:
            # recorded before anything exists, so a crash at any point can be undone
            record.save(req.vm_dir)
            if netns.netns_exists(record.netns):
                # not left by a run (that would be attached): made by the user, with the
                # interfaces the VM's annotations name already in it (docs/network.md)
                log.info("using the existing network namespace %s", record.netns)
            else:
                netns.add_netns(record.netns)
            record, addr = self._add(req, net, record, wanted_ip)
            tc.install_redirect(record.netns, IFNAME, tc.TAP_NAME, record.cidrs)
            dns = host_nameservers(self.resolv_conf)
            lease = Lease(
                mac=req.mac,
                ip=addr.ip,
                prefix_len=addr.prefix_len,
                gateway=addr.gateway,
                dns=dns,
                hostname=req.vm_name,
            )
            self._start_responder(req, record.netns, lease)
            nics = self._join_extra(req, record)
            self._records[req.vm_uid] = NetworkRecord.load(req.vm_dir) or record
        except BaseException:
            self._undo_failed_attach(req)
            raise
        log.info("VM %s: %s/%d via %s in %s", req.vm_name, addr.ip, addr.prefix_len,
                 addr.gateway, record.netns)  # fmt: skip
        return Attachment(
            netns=record.netns,
            tap=tc.TAP_NAME,
            ports=req.ports,
            ip=addr.ip,
            prefix_len=addr.prefix_len,
            gateway=addr.gateway,
            dns=dns,
            extra_nics=nics,
        )

    def _join_extra(self, req: NetworkRequest, record: NetworkRecord) -> tuple[GuestNIC, ...]:
        """The annotated interfaces (multinet.py): waited for, recorded, joined to taps."""
        if not req.interfaces:
            return ()
        links = multinet.wait_for_interfaces(record.netns, req.interfaces, req.on_wait)
        nics = multinet.guest_nics(links)
        extra = [
            multinet.nic_to_dict(link.name, nic) for link, nic in zip(links, nics, strict=True)
        ]
        replace(record, extra=extra).save(req.vm_dir)  # before the taps exist
        tc.join(record.netns, multinet.pairs(extra))
        for link, nic in zip(links, nics, strict=True):
            log.info("VM %s: %s (%s %s) as %s", req.vm_name, link.name, nic.mac,
                     ",".join(nic.cidrs) or "no address", nic.guest_name)  # fmt: skip
        return nics

    def _undo_failed_attach(self, req: NetworkRequest) -> None:
        try:
            self.detach(req)
        except Exception as exc:  # the original error matters more
            log.warning("cleaning up after a failed attach of %s: %s", req.vm_uid, exc)

    def _add(
        self,
        req: NetworkRequest,
        net: cniconf.NetworkConfigList,
        record: NetworkRecord,
        wanted_ip: str | None,
    ) -> tuple[NetworkRecord, InterfaceAddress]:
        """CNI ADD, first asking for the VM's previous address; if that fails (taken, out of
        range, not supported), undo and ADD again without the request."""
        attempts = [[wanted_ip], []] if wanted_ip else [[]]
        for i, ips in enumerate(attempts):
            args = self._runtime_args(req, record, tuple(ips))
            rec = replace(record, requested_ips=list(ips))
            rec.save(req.vm_dir)
            try:
                result = self.runtime.add(net, args)
            except CNIPluginError as exc:
                self.runtime.delete(net, args, None)
                if i + 1 == len(attempts):
                    raise
                log.info("could not get address %s back (%s); taking a new one", wanted_ip, exc)
                continue
            addr = parse_result(result, IFNAME)
            if wanted_ip and addr.ip != wanted_ip.split("/")[0] and ips:
                log.info("network %s ignored the request for %s", net.name, wanted_ip)
            rec = replace(
                rec, result=result, cidrs=[addr.cidr], last_ip=addr.ip, last_network=net.name
            )
            rec.save(req.vm_dir)
            return rec, addr
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _runtime_args(
        req: NetworkRequest, record: NetworkRecord, ips: tuple[str, ...]
    ) -> RuntimeArgs:
        return RuntimeArgs(
            container_id=record.container_id,
            netns=str(netns.netns_path(record.netns)),
            ifname=record.ifname,
            ports=req.ports,
            ips=ips,
        )

    # --- the DHCP responder -----------------------------------------------------------------

    def _start_responder(self, req: NetworkRequest, ns: str, lease: Lease) -> None:
        """The responder is a thread of this process (the supervisor): it needs nothing
        recorded, since it dies with the process."""
        sock = netns.run_in_netns(ns, lambda: open_tap_socket(tc.TAP_NAME))
        try:
            responder = ResponderThread(sock, lease, tc.TAP_NAME)
        except BaseException:
            sock.close()
            raise
        self._responder_threads[req.vm_uid] = responder.start()

    def _stop_responder(self, req: NetworkRequest) -> None:
        thread = self._responder_threads.pop(req.vm_uid, None)
        if thread is not None:
            thread.stop()

    # --- detach -----------------------------------------------------------------------------

    def detach(self, req: NetworkRequest) -> None:
        """Undo ``attach`` from network.json, or from this process's own record when the file
        is gone or damaged, or from what the netns name and the CNI configuration say."""
        record = NetworkRecord.load(req.vm_dir) or self._records.get(req.vm_uid)
        ns = record.netns if record and record.netns else netns_name(req)
        if record is None:
            self._detach_without_record(req, ns)
            return
        if not record.attached:
            netns.delete_netns(ns)  # e.g. a crash between "ip netns add" and the first record
            return
        self._stop_responder(req)
        if record.extra and netns.netns_exists(ns):
            tc.unjoin(ns, multinet.pairs(record.extra))  # the user's interfaces, as they were
        if record.cidrs and netns.netns_exists(ns):
            tc.restore_addresses(ns, record.ifname, record.tap, record.cidrs)
        net = cniconf.NetworkConfigList.from_json(record.network) if record.network else None
        if net is not None:
            ports = tuple(PortMapping.from_dict(p) for p in record.ports)
            args = replace(
                self._runtime_args(req, record, tuple(record.requested_ips)), ports=ports
            )
            self.runtime.delete(net, args, record.result)
            remove_leaked_masquerade(net, record.container_id)
        netns.delete_netns(ns)
        self._records.pop(req.vm_uid, None)
        if req.vm_dir.is_dir():  # a VM directory removed under the VM is not made again
            NetworkRecord(
                attached=False, last_ip=record.last_ip, last_network=record.last_network
            ).save(req.vm_dir)

    def _detach_without_record(self, req: NetworkRequest, ns: str) -> None:
        """network.json is damaged or gone while the VM's namespace is there: CNI DEL with the
        configuration in use and the container id (host-local frees the lease by it, portmap
        and the bridge's masquerade chain are named after it), then the namespace."""
        if netns.netns_exists(ns):
            net = cniconf.find_config_list(self.conf_dir)
            if net is not None:
                log.warning("VM %s: no network record; CNI DEL from its netns and the "
                            "configuration", req.vm_uid)  # fmt: skip
                cid = container_id(req)
                args = RuntimeArgs(container_id=cid, netns=str(netns.netns_path(ns)),
                                   ifname=IFNAME)  # fmt: skip
                self.runtime.delete(net, args, None)
                remove_leaked_masquerade(net, cid)
        self._stop_responder(req)
        netns.delete_netns(ns)
