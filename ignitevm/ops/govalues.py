"""Ignite's API objects as a Go text/template sees them (docs/cli.md): Go's field names
(``.ObjectMeta.Name``, ``.Spec.CPUs``), the ``String()`` methods of Ignite's types and fmt's way of
printing structs, maps, slices and nil. ``ignite ps -t``, ``inspect -t`` and ``ps -f`` use it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from ignitevm.api import VM, Image, Kernel, ObjectMeta, OCIImageSource, Size, Snapshot
from ignitevm.api.types import PortMapping, VMSpec, VMStatus
from ignitevm.errors import ValidationError


class _NoValue:
    """A missing map key, which text/template prints as "<no value>"."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


# NamedTuples and a plain class, not dataclasses: a frozen dataclass costs ~1 ms to define, and
# `ignite ps -t` should start fast


class Nil(NamedTuple):
    """A nil pointer of Go type ``*type`` (Ignite's Status.Runtime before a start)."""

    type: str


class Stringer(NamedTuple):
    """A value whose Go type has a String() method: fmt prints ``text`` wherever it is."""

    type: str
    text: str


class GoSize(NamedTuple):
    """Ignite's meta.Size: String() (datasize's HR(), "512.0 MB") is on *Size, so only a value
    the template reaches through the object prints that way; fmt prints a copy as {512MB}."""

    size: Size


class GoList(NamedTuple):
    """A Go slice; ``joined``: its type's String() joins the items with ", " (IPAddresses)."""

    type: str
    items: list[Any]
    joined: bool = False


class Struct:
    """A Go struct, or a non-nil pointer to one (``pointer``). ``hidden`` fields are ignitevm's
    additions: reachable by name, left out when the whole struct prints, so it prints as Ignite's.
    ``embedded`` fields promote theirs (VM.Name is VM.ObjectMeta.Name)."""

    __slots__ = ("embedded", "fields", "hidden", "names", "pointer", "text", "type")

    def __init__(
        self,
        type: str,
        fields: dict[str, Any],
        hidden: frozenset[str] = frozenset(),
        embedded: tuple[str, ...] = (),
        pointer: bool = False,
        text: str | None = None,  # the type's String(), if it has one
    ) -> None:
        self.type = type
        self.fields = fields
        self.hidden = hidden
        self.embedded = embedded
        self.pointer = pointer
        self.text = text
        self.names = tuple(fields)

    def __repr__(self) -> str:
        return f"Struct({self.type}, {self.fields})"

    def lookup(self, name: str) -> Any:
        """The field ``name`` (or one promoted from an embedded struct); KeyError if none."""
        if name in self.fields:
            return self.fields[name]
        for embedded in self.embedded:
            inner = self.fields[embedded]
            if isinstance(inner, Struct) and name in inner.fields:
                return inner.fields[name]
        raise KeyError(name)

    def field_names(self) -> list[str]:
        names = [n for n in self.names if n not in self.hidden]
        for embedded in self.embedded:
            inner = self.fields[embedded]
            if isinstance(inner, Struct):
                names += [n for n in inner.names if n not in inner.hidden]
        return names


# --- printing, as fmt and text/template do ------------------------------------------------------


def print_value(value: Any) -> str:
    """What ``{{pipeline}}`` writes: text/template looks through a pointer and calls String() on
    the value's address when it can (a Size prints "512.0 MB"), then fmt's %v."""
    if isinstance(value, GoSize):
        return value.size.human()
    if isinstance(value, Struct) and value.pointer:
        value = Struct(value.type, value.fields, value.hidden, value.embedded, text=value.text)
    return format_value(value)


def format_value(value: Any, depth: int = 0) -> str:
    """fmt's %v: of an operand (depth 0) or of a value inside one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if value is NO_VALUE:
        return "<no value>"
    if isinstance(value, Nil):
        return "<nil>"
    if isinstance(value, Stringer):
        return value.text
    if isinstance(value, GoSize):
        # a Size value has no String() (it is on *Size): fmt prints the struct, whose embedded
        # datasize.ByteSize prints as "512MB"
        return f"{{{value.size}}}"
    if isinstance(value, GoList):
        if value.joined:
            return ", ".join(format_value(item, depth + 1) for item in value.items)
        return "[" + " ".join(format_value(item, depth + 1) for item in value.items) + "]"
    if isinstance(value, dict):
        pairs = (f"{k}:{format_value(value[k], depth + 1)}" for k in sorted(value))
        return "map[" + " ".join(pairs) + "]"
    if isinstance(value, Struct):
        if value.text is not None:
            return value.text
        inner = " ".join(format_value(value.fields[n], depth + 1) for n in value.names
                         if n not in value.hidden)  # fmt: skip
        # fmt prints &{...} for a pointer operand; inside a struct Go prints the pointer's
        # address, which says nothing and changes from run to run: ignitevm prints &{...} there
        return ("&{" if value.pointer else "{") + inner + "}"
    raise TypeError(f"not a Go value: {value!r}")


def go_type(value: Any) -> str:
    """The Go type name of a value, for error messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]string"
    if isinstance(value, Nil):
        return "*" + value.type
    if isinstance(value, Struct):
        return ("*" if value.pointer else "") + value.type
    if isinstance(value, GoSize):
        return "Size"
    if isinstance(value, Stringer | GoList):
        return value.type
    return "<no value>" if value is NO_VALUE else type(value).__name__


def is_true(value: Any) -> bool:
    """text/template's truth: false, 0, nil and empty strings, slices and maps are false."""
    if isinstance(value, Nil) or value is NO_VALUE:
        return False
    if isinstance(value, bool | int | float | str | dict):
        return bool(value)
    if isinstance(value, GoList):
        return bool(value.items)
    return True  # structs


def lookup_field(value: Any, name: str) -> Any:
    """``value.Name`` as text/template evaluates it; ValidationError naming the field if none."""
    if isinstance(value, dict):
        return value.get(name, NO_VALUE)  # a missing key is no error in Go either
    if value is NO_VALUE:
        return NO_VALUE
    if isinstance(value, Nil):
        raise ValidationError(f"nil pointer evaluating *{value.type}.{name}",
                              hint=f"the {value.type} is not set on this object")  # fmt: skip
    if isinstance(value, Struct):
        try:
            return value.lookup(name)
        except KeyError:
            # Go is case-sensitive; ignitevm also takes .spec.cpus for .Spec.CPUs
            for candidate in value.field_names() + sorted(value.hidden):
                if candidate.lower() == name.lower():
                    return value.lookup(candidate)
        fields = ", ".join(value.field_names())
        raise ValidationError(f"can't evaluate field {name} in type {value.type}",
                              hint=f"{value.type} has the fields {fields}")  # fmt: skip
    raise ValidationError(f"can't evaluate field {name} in type {go_type(value)}")


# --- Ignite's types -----------------------------------------------------------------------------


def go_object(obj: VM | Image | Kernel | Snapshot) -> Struct:
    """The object as Ignite's Go struct (pkg/apis/ignite types.go, v0.10)."""
    if isinstance(obj, VM):
        spec, status = _vm_spec(obj.spec), _vm_status(obj.status)
    elif isinstance(obj, Snapshot):
        spec, status = _snapshot_parts(obj)
    elif isinstance(obj, Image):
        spec = Struct("ImageSpec", {"OCI": _ref(obj.spec.oci)})
        status = Struct("ImageStatus", {
            "OCISource": _source(obj.status.oci_source), "Digest": obj.status.digest or "",
            "ConfigDigest": obj.status.config_digest or "", "Source": obj.status.source or "",
        }, hidden=frozenset({"Digest", "ConfigDigest", "Source"}))  # fmt: skip
    else:
        spec = Struct("KernelSpec", {"OCI": _ref(obj.spec.oci)})
        status = Struct("KernelStatus", {
            "Version": obj.status.version, "OCISource": _source(obj.status.oci_source),
            "Source": obj.status.source or "",
        }, hidden=frozenset({"Source"}))  # fmt: skip
    type_meta = Struct("TypeMeta", {"Kind": obj.kind, "APIVersion": obj.api_version})
    meta = _meta(obj.metadata)
    return Struct(
        obj.kind,
        # Metadata: the JSON name, for .metadata.name (the other JSON names differ from Go's
        # only in case, which lookup_field forgives)
        {"TypeMeta": type_meta, "ObjectMeta": meta, "Spec": spec, "Status": status,
         "Metadata": meta},
        hidden=frozenset({"Metadata"}),
        embedded=("TypeMeta", "ObjectMeta"),
        pointer=True,  # the template gets *api.VM
    )  # fmt: skip


def _snapshot_parts(snap: Snapshot) -> tuple[Struct, Struct]:
    """An ignitevm object, named the way Ignite's Go structs name theirs."""
    src, st, m = snap.spec.source, snap.status, snap.status.machine
    spec = Struct("SnapshotSpec", {"Source": Struct("SnapshotSource", {
        "UID": src.uid, "Name": src.name})})  # fmt: skip
    machine = Struct("SnapshotMachine", {
        "VMM": str(m.vmm), "VMMVersion": m.vmm_version, "CPUs": m.cpus,
        "Memory": GoSize(m.memory), "Kernel": m.kernel, "Image": m.image, "Disks": m.disks,
        "NIC": m.nic, "Devices": GoList("[]string", list(m.devices)),
    })  # fmt: skip
    status = Struct("SnapshotStatus", {
        "Machine": machine, "Parent": st.parent, "Size": GoSize(st.size),
        "MemorySize": GoSize(st.memory_size), "NetworkPlugin": st.network_plugin,
    })  # fmt: skip
    return spec, status


def _meta(meta: ObjectMeta) -> Struct:
    return Struct("ObjectMeta", {
        "Name": meta.name, "UID": meta.uid, "Created": _time(meta.created),
        "Labels": dict(meta.labels), "Annotations": dict(meta.annotations),
    })  # fmt: skip


def _time(when: datetime | None) -> Stringer:
    # Go's Time.String(); Kubernetes' Time reads a stored time into the local zone
    if when is None:
        return Stringer("Time", "0001-01-01 00:00:00 +0000 UTC")
    local = when.astimezone()
    return Stringer("Time", local.strftime("%Y-%m-%d %H:%M:%S %z ") + (local.tzname() or ""))


def _ref(text: str) -> Stringer:
    return Stringer("OCIImageRef", text)


def _source(src: OCIImageSource) -> Struct:
    # the stored id has a scheme (oci://repo@sha256:..., docker://sha256:...); String() has not
    content_id = src.id.split("://", 1)[-1]
    fields = {
        "ID": Stringer("OCIContentID", content_id) if src.id else Nil("OCIContentID"),
        "Size": GoSize(src.size),
        "RepoDigests": GoList("[]string", list(src.repo_digests)),
    }
    return Struct("OCIImageSource", fields, hidden=frozenset({"RepoDigests"}))


def _vm_spec(spec: VMSpec) -> Struct:
    ssh: Any = Nil("SSH")
    if spec.ssh is not None:
        generate, key = (True, "") if spec.ssh is True else (False, str(spec.ssh))
        ssh = Struct("SSH", {"Generate": generate, "PublicKey": key}, pointer=True)
    storage = spec.storage
    return Struct("VMSpec", {
        "Image": Struct("VMImageSpec", {"OCI": _ref(spec.image.oci)}),
        "Sandbox": Struct("VMSandboxSpec", {"OCI": _ref(spec.sandbox.oci)}),
        "Kernel": Struct("VMKernelSpec", {"OCI": _ref(spec.kernel.oci),
                                          "CmdLine": spec.kernel.cmd_line}),
        "CPUs": spec.cpus, "Memory": GoSize(spec.memory), "DiskSize": GoSize(spec.disk_size),
        "Network": Struct("VMNetworkSpec", {"Ports": GoList(
            "PortMappings", [_port(p) for p in spec.network.ports], joined=True)}),
        "Storage": Struct("VMStorageSpec", {
            "Volumes": GoList("[]Volume", [_volume(v.name, v.block_device.path if v.block_device
                                                   else None) for v in storage.volumes]),
            "VolumeMounts": GoList("[]VolumeMount", [
                Struct("VolumeMount", {"Name": m.name, "MountPath": m.mount_path})
                for m in storage.volume_mounts]),
        }),
        "CopyFiles": GoList("[]FileMapping", [
            Struct("FileMapping", {"HostPath": f.host_path, "VMPath": f.vm_path})
            for f in spec.copy_files]),
        "SSH": ssh,
        "VMM": spec.vmm.value if spec.vmm else "",
    }, hidden=frozenset({"VMM"}))  # fmt: skip


def _port(pm: PortMapping) -> Struct:
    fields = {"BindAddress": pm.bind_address or "0.0.0.0", "HostPort": pm.host_port,
              "VMPort": pm.vm_port, "Protocol": pm.protocol.value}  # fmt: skip
    return Struct("PortMapping", fields, text=str(pm))


def _volume(name: str, path: str | None) -> Struct:
    device = (
        Struct("BlockDeviceVolume", {"Path": path}, pointer=True)
        if path
        else Nil("BlockDeviceVolume")
    )
    return Struct("Volume", {"Name": name, "BlockDevice": device})


def _vm_status(st: VMStatus) -> Struct:
    runtime: Any = Nil("Runtime")
    if st.runtime is not None:
        runtime = Struct("Runtime", {"ID": st.runtime.id, "Name": st.runtime.name}, pointer=True)
    ips = GoList("IPAddresses", list(st.network.ip_addresses), joined=True)
    network = Struct("Network", {"Plugin": st.network.plugin, "IPAddresses": ips}, pointer=True)
    return Struct("VMStatus", {
        "Running": st.running, "Runtime": runtime,
        "StartTime": _time(st.start_time) if st.start_time else Nil("Time"),
        "Network": network, "Image": _source(st.image), "Kernel": _source(st.kernel),
        "IDPrefix": st.id_prefix,
        # ignitevm: the VMM used, the supervisor's pid; IPAddresses is short for Network's
        "VMM": st.vmm.value if st.vmm else "", "PID": st.pid or 0, "IPAddresses": ips,
    }, hidden=frozenset({"VMM", "PID", "IPAddresses"}))  # fmt: skip


def iterate(value: Any) -> Iterable[Any]:
    """What ``{{range}}`` walks: a slice's items, a map's values in key order."""
    if isinstance(value, GoList):
        return value.items
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if value is NO_VALUE:
        return []
    raise ValidationError(f"range can't iterate over {format_value(value)}")
