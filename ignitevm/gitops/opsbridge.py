"""The real VMOps: the library (ignitevm/client/), called the way the `ignite` CLI calls it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ignitevm.api import VM
from ignitevm.client import Client
from ignitevm.gitops.plan import ActualVM
from ignitevm.ops.services import Services

STOP_TIMEOUT = 30.0


@dataclass
class ServicesOps:
    svc: Services
    network_plugin: str | None = None  # None: the configuration's
    boot_timeout: float | None = None  # None: the library's default
    stop_timeout: float = STOP_TIMEOUT
    ignore_preflight: frozenset[str] = frozenset()  # as `ignite start --ignore-preflight-checks`
    # two workers creating VMs of one image not yet imported would both import it
    _import_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = Client._from_services(self.svc, network_plugin=self.network_plugin)

    def list(self) -> list[ActualVM]:
        from ignitevm.ops.restart import reap_dead_runs, restart_reason

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
            # what `ignite ps -a` shows: a damaged VM too (its uid is taken)
            for v in self.client.vms._views(all=True, filters=None)
        ]

    def create(self, vm: VM) -> None:
        with self._lock_for(vm.spec.image.oci):
            self.client.vms.create(manifest=vm)

    def start(self, uid: str) -> None:
        vm = self.client.vms.get(uid)
        if self.boot_timeout is None:
            vm.start(ignore_preflight=self.ignore_preflight)
        else:
            vm.start(ignore_preflight=self.ignore_preflight, timeout=self.boot_timeout)

    def stop(self, uid: str) -> None:
        self.client.vms.get(uid).stop(timeout=self.stop_timeout)

    def restart(self, uid: str) -> None:
        """A hand-made VM, started as it was made: its own network plugin, not ignited's."""
        self.client.vms.get(uid)._restart(timeout=self.boot_timeout,
                                          ignore_preflight=self.ignore_preflight)  # fmt: skip

    def remove(self, uid: str) -> None:
        self.client.vms.remove(uid, force=True)

    def set_metadata(self, uid: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
        self.client.vms.get(uid).set_labels(labels, annotations)

    def _lock_for(self, image: str) -> threading.Lock:
        with self._guard:
            return self._import_locks.setdefault(image, threading.Lock())
