"""Where a VM's files live inside its directory, and how it is looked up."""

from __future__ import annotations

from pathlib import Path

from ignitevm.api import VM, Kind
from ignitevm.ops.services import Services

DISK_FILE = "disk.qcow2"
VM_LAYER_FILE = "vm-layer.cpio"
INITRD_FILE = "initrd"
SSH_KEY_FILE = "id_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"
MIN_MEMORY_MIB = 128
# ignited marks the VMs it creates with this label; `ignite ps` shows it.
OWNER_LABEL = "ignite.weave.works/owner"


def vm_dir(svc: Services, vm: VM) -> Path:
    return svc.store.object_dir(Kind.VM, vm.metadata.uid)


def require_vm(svc: Services, query: str) -> VM:
    return svc.store.require(Kind.VM, query)
