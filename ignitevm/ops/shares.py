"""Host directories shared with a VM (``--share HOST:VM[:ro]``, ``spec.storage.shares``):
checked at create and at every start, handed to QEMU as virtio-9p devices and to /init as
``IGNITE_SHARES`` (docs/internals.md "The guest contract"; the model: docs/runtime.md
"Host directories").
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.api import VM
from ignitevm.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from ignitevm.vmm.base import HostShare

TAG_PREFIX = "ignite_share"  # mount tags: ignite_share0, ignite_share1, ...
NO_9P = "Firecracker has no 9p or virtio-fs device: --share needs QEMU (--vmm qemu or auto)"


def check_shares(vm: VM) -> None:
    """Refuse shares that cannot work, naming the flag's value and the fix."""
    seen: set[str] = set()
    for share in vm.spec.storage.shares:
        what = f"--share {share.host_path}:{share.vm_path}"
        target = share.vm_path
        if not Path(share.host_path).is_absolute() or not target.startswith("/"):
            raise ValidationError(f"{what}: both paths must be absolute")
        if posixpath.normpath(target) == "/" or ".." in target.split("/"):
            raise ValidationError(f"{what}: the VM path must be a directory below /, without '..'")
        if any(c.isspace() or not c.isprintable() for c in target):
            raise ValidationError(f"{what}: the VM path cannot hold spaces or control characters")
        if posixpath.normpath(target) in seen:
            raise ValidationError(f"{what}: {target} is shared twice")
        seen.add(posixpath.normpath(target))
        require_directory(share.host_path, what)


def require_directory(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise NotFoundError(
            f"{what}: {path} is not a directory", hint="share an existing host directory"
        )


def host_shares(vm: VM) -> tuple[HostShare, ...]:
    """The VM's shares as its VMM takes them, each checked again (it may be gone since)."""
    from ignitevm.vmm.base import HostShare

    check_shares(vm)
    return tuple(
        HostShare(Path(s.host_path).resolve(), f"{TAG_PREFIX}{i}", s.read_only)
        for i, s in enumerate(vm.spec.storage.shares)
    )


def shares_env(vm: VM) -> str:
    """IGNITE_SHARES for /init: ``TAG:ro|rw:/vm/path ...`` (docs/internals.md)."""
    return " ".join(
        f"{TAG_PREFIX}{i}:{'ro' if s.read_only else 'rw'}:{posixpath.normpath(s.vm_path)}"
        for i, s in enumerate(vm.spec.storage.shares)
    )
