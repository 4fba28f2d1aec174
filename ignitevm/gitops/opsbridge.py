"""The real VMOps: ignitevm.ops' use cases, called the way the `ignite` CLI calls them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ignitevm.api import VM
from ignitevm.gitops.plan import ActualVM
from ignitevm.ops.services import Services

STOP_TIMEOUT = 30.0


@dataclass
class ServicesOps:
    svc: Services
    network_plugin: str | None = None  # None: the configuration's
    boot_timeout: float | None = None  # None: ops.start's default
    stop_timeout: float = STOP_TIMEOUT
    ignore_preflight: frozenset[str] = frozenset()  # as `ignite start --ignore-preflight-checks`
    # two workers creating VMs of one image not yet imported would both import it
    _import_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def list(self) -> list[ActualVM]:
        from ignitevm.ops.restart import reap_dead_runs, restart_reason
        from ignitevm.ops.vmlist import list_vms

        reap_dead_runs(self.svc)  # after a host reboot: every dead run's network, at once
        return [
            ActualVM(
                uid=v.vm.metadata.uid,
                name=v.vm.metadata.name,
                labels=dict(v.vm.metadata.labels),
                annotations=dict(v.vm.metadata.annotations),
                running=v.running,
                restart_reason=restart_reason(v.vm, running=v.running),
            )
            for v in list_vms(self.svc, all_=True)
        ]

    def create(self, vm: VM) -> None:
        from ignitevm.ops.create import create_vm

        if self.network_plugin:
            vm.status.network.plugin = self.network_plugin
        with self._lock_for(vm.spec.image.oci):
            create_vm(self.svc, vm)

    def start(self, uid: str) -> None:
        from ignitevm.ops.start import start_vm

        kw: dict[str, Any] = {} if self.boot_timeout is None else {"timeout": self.boot_timeout}
        start_vm(
            self.svc,
            uid,
            network_plugin=self.network_plugin,
            ignore_preflight=self.ignore_preflight,
            **kw,
        )

    def stop(self, uid: str) -> None:
        from ignitevm.ops.stop import stop_vm

        stop_vm(self.svc, uid, timeout=self.stop_timeout)

    def restart(self, uid: str) -> None:
        """A hand-made VM, started as it was made: its own network plugin, not ignited's."""
        from ignitevm.ops.restart import restart_vm

        kw: dict[str, Any] = {} if self.boot_timeout is None else {"timeout": self.boot_timeout}
        restart_vm(self.svc, uid, ignore_preflight=self.ignore_preflight, **kw)

    def remove(self, uid: str) -> None:
        from ignitevm.ops.remove import remove_vm

        remove_vm(self.svc, uid, force=True)

    def set_metadata(self, uid: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
        from ignitevm.api import Kind

        def update(vm: VM) -> VM:
            vm.metadata.labels = dict(labels)
            vm.metadata.annotations = dict(annotations)
            return vm

        self.svc.store.update(Kind.VM, uid, update)

    def _lock_for(self, image: str) -> threading.Lock:
        with self._guard:
            return self._import_locks.setdefault(image, threading.Lock())
