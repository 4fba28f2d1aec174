"""VMs refer to their image and kernel by digest (Ignite's status.image.id / status.kernel.id):
looking those up, and which VMs use a stored image or kernel."""

from __future__ import annotations

from typing import Literal, overload

from ignitevm.api import VM, Image, Kernel, Kind
from ignitevm.errors import IgniteError, InUseError
from ignitevm.ops.services import Services

_HINTS = {
    Kind.IMAGE: "recreate the VM: its disk is a copy-on-write layer over that image",
    Kind.KERNEL: "import it again with ignite kernel import, or recreate the VM",
}


def _digest(vm: VM, kind: Kind) -> str:
    return vm.status.image.id if kind == Kind.IMAGE else vm.status.kernel.id


@overload
def require_of_vm(svc: Services, kind: Literal[Kind.IMAGE], vm: VM) -> Image: ...
@overload
def require_of_vm(svc: Services, kind: Literal[Kind.KERNEL], vm: VM) -> Kernel: ...


def require_of_vm(svc: Services, kind: Kind, vm: VM) -> Image | Kernel:
    """The image or kernel ``vm`` was created from; IgniteError when it was removed since."""
    digest = _digest(vm, kind)
    found = find_by_digest(svc, kind, digest)
    if found is not None:
        return found
    raise IgniteError(
        f"the {kind.dir} of VM {vm.metadata.name} ({digest}) is no longer stored",
        hint=_HINTS[kind],
    )


def find_by_digest(svc: Services, kind: Kind, digest: str) -> Image | Kernel | None:
    """The stored image or kernel with this digest (Ignite's status.image.id), or None."""
    for obj in svc.store.list(kind):
        if isinstance(obj, Image | Kernel) and obj.status.oci_source.id == digest:
            return obj
    return None


def require_unused(svc: Services, kind: Kind, obj: Image | Kernel, *, force: bool) -> None:
    """ConflictError naming the VMs that use ``obj``, unless ``force``."""
    users = [
        vm.metadata.name
        for vm in svc.store.list(Kind.VM)
        if _digest(vm, kind) == obj.status.oci_source.id
    ]
    if users and not force:
        raise InUseError(
            f"{kind.dir} {obj.metadata.name} is used by VM(s): {', '.join(users)}",
            hint="remove those VMs first, or use -f"
            + (" (their disks keep a copy-on-write link to the image and will no longer start)"
               if kind == Kind.IMAGE else ""),
        )  # fmt: skip
