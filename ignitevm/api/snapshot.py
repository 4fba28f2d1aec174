"""The Snapshot object (an ignitevm addition in Ignite's API group; docs/api.md "Snapshot"):
a VM's device state, memory and frozen disk layer, and the machine they fit."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ignitevm.api.size import Size
from ignitevm.api.types import API_VERSION, Model, ObjectMeta, Vmm, _list, _new


class SnapshotSource(Model):
    uid: str = ""  # the VM it was taken of
    name: str = ""
    image: str = ""  # its spec.image.oci and spec.kernel.oci: what VMs made from it name
    kernel: str = ""


class SnapshotMachine(Model):
    """What a restore must match exactly: the device model of the machine that was saved."""

    vmm: Vmm = Vmm.QEMU
    vmm_version: str = ""
    cpus: int = 1
    memory: Size = Size(0)
    kernel: str = ""  # the kernel's digest (status.kernel.id of its VMs)
    image: str = ""  # the image's digest
    disks: int = 0  # virtio-blk devices
    nic: bool = False  # a virtio-net device (any network but none)
    devices: list[str] = Field(default_factory=_list)  # the rest of the device model, in order


class SnapshotSpec(Model):
    source: SnapshotSource = Field(default_factory=_new(SnapshotSource))


class SnapshotStatus(Model):
    machine: SnapshotMachine = Field(default_factory=_new(SnapshotMachine))
    # the snapshot whose layer the saved disk layer sits on ("" : the image's base)
    parent: str = ""
    size: Size = Size(0)  # bytes on disk: state + memory + disk layer
    memory_size: Size = Size(0)  # of which the guest's RAM (only the pages it used)
    network_plugin: str = ""


class Snapshot(Model):
    kind: Literal["Snapshot"] = "Snapshot"
    api_version: Literal["ignite.weave.works/v1alpha4"] = API_VERSION
    metadata: ObjectMeta = Field(default_factory=_new(ObjectMeta))
    spec: SnapshotSpec = Field(default_factory=_new(SnapshotSpec))
    status: SnapshotStatus = Field(default_factory=_new(SnapshotStatus))
