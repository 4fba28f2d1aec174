"""Every kind of object, for reading manifests and the store."""

from ignitevm.api.configuration import Configuration
from ignitevm.api.snapshot import Snapshot
from ignitevm.api.types import VM, Image, Kernel

Object = VM | Image | Kernel | Snapshot
AnyObject = VM | Image | Kernel | Snapshot | Configuration

MODELS: dict[str, type[AnyObject]] = {
    "VM": VM,
    "Image": Image,
    "Kernel": Kernel,
    "Snapshot": Snapshot,
    "Configuration": Configuration,
}
