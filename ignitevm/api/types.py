"""Ignite's ``ignite.weave.works/v1alpha4`` objects as pydantic models.

Field names, JSON names (camelCase) and defaults follow Ignite v0.10 (``pkg/apis/ignite/v1alpha4``).
Fields marked "ignitevm" are our additions: optional, ``None`` by default and left out of the
serialized form while unset, so an object we write still reads like Ignite's. See docs/api.md.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
)
from pydantic.alias_generators import to_camel

from ignitevm.api._startup import skip_pydantic_plugin_discovery
from ignitevm.api.names import is_uid
from ignitevm.api.size import Size

# before the first model is built (pydantic loads its plugins then, not at import)
skip_pydantic_plugin_discovery()

API_GROUP = "ignite.weave.works"
API_VERSION: Final = "ignite.weave.works/v1alpha4"
SUPPORTED_VERSIONS = ("v1alpha2", "v1alpha3", "v1alpha4")
# Ignite's defaults name its own images; we keep the strings for compatibility (see docs/api.md).
IGNITE_COMPAT_VERSION = "v0.10.0"
DEFAULT_SANDBOX_IMAGE = f"weaveworks/ignite:{IGNITE_COMPAT_VERSION}"
DEFAULT_CPUS = 1
DEFAULT_MEMORY = Size(512 << 20)
DEFAULT_DISK_SIZE = Size(4 << 30)
DEFAULT_ID_PREFIX = "ignite"
DEFAULT_NETWORK_PLUGIN = "cni"


class Kind(StrEnum):
    """The kinds kept in the store; ``kind.dir`` is the store's directory name ("vm", "image")."""

    VM = "VM"
    IMAGE = "Image"
    KERNEL = "Kernel"
    SNAPSHOT = "Snapshot"

    @property
    def dir(self) -> str:
        return self.value.lower()


class Vmm(StrEnum):
    AUTO = "auto"
    QEMU = "qemu"
    FIRECRACKER = "firecracker"


class RestartPolicy(StrEnum):
    """ignitevm: when ignited starts a VM again that does not run (ops/restart.py)."""

    NO = "no"
    ALWAYS = "always"
    ON_FAILURE = "on-failure"


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"


# Pydantic inspects the signature of every default_factory; for builtins (dict, list) and model
# classes that costs ~15 ms per process, so the factories are plain functions.
def _dict() -> dict[str, Any]:
    return {}


def _list() -> list[Any]:
    return []


M = TypeVar("M", bound=BaseModel)


def _new(cls: type[M]) -> Callable[[], M]:
    # Defaults are valid as written; model_construct() skips validation, so a default does not
    # make pydantic build that model's validator (several ms each at start-up).
    def make() -> M:
        return cls.model_construct()

    return make


def _omit_empty(value: Any) -> bool:
    return not value


def _as_utc(value: datetime) -> datetime:
    # Ignite (Kubernetes' metav1.Time) keeps RFC 3339 in UTC with whole seconds; truncating on the
    # way in makes an object equal to what it reads back from the store.
    # (a naive time is local time, as datetime.astimezone() takes it)
    return value.astimezone(UTC).replace(microsecond=0)


def _format_time(value: datetime) -> str:
    return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_uid(value: str) -> str:
    if value and not is_uid(value):
        raise ValueError(f"uid {value!r} must be 16 lower-case hex characters")
    return value


def _check_positive(value: Size) -> Size:
    if value.bytes == 0:
        raise ValueError("the size must be more than zero")
    return value


def _validate_ssh(value: Any) -> bool | str | None:
    # Ignite's SSH type reads `true` (generate a key), a public-key path, or nothing;
    # the string "true" means true and `false` means no SSH setup.
    if value is None or value is False:
        return None
    if value is True:
        return True
    if isinstance(value, str):
        if value in ("", "false"):
            return None
        return True if value == "true" else value
    raise ValueError("ssh must be true, false or the path of a public key")


def _null_to_empty(value: Any) -> Any:
    # Go writes a nil slice or map as null (e.g. Ignite's "ipAddresses": null)
    return [] if value is None else value


def _null_to_empty_dict(value: Any) -> Any:
    return {} if value is None else value


def _null_to_empty_str(value: Any) -> Any:
    return "" if value is None else value


Time = Annotated[datetime, AfterValidator(_as_utc), PlainSerializer(_format_time, when_used="json")]
Uid = Annotated[str, AfterValidator(_check_uid)]
L = TypeVar("L")
Nullable = Annotated[L, BeforeValidator(_null_to_empty)]
StrMap = Annotated[dict[str, str], BeforeValidator(_null_to_empty_dict)]
PositiveSize = Annotated[Size, AfterValidator(_check_positive)]
SSH = Annotated[bool | str | None, PlainValidator(_validate_ssh)]


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        validate_default=False,
        # `vm.spec.memory = "1GB"` parses, and a bad value fails where it is set
        validate_assignment=True,
        defer_build=True,
    )


class ObjectMeta(Model):
    # YAML reads an unquoted all-digit uid or name as a number
    model_config = ConfigDict(coerce_numbers_to_str=True)

    name: str = ""
    uid: Uid = ""
    created: Time | None = None
    labels: StrMap = Field(default_factory=_dict, exclude_if=_omit_empty)
    annotations: StrMap = Field(default_factory=_dict, exclude_if=_omit_empty)


class OCIImageSource(Model):
    """Where an image or kernel came from (Ignite's ``OCIImageSource``)."""

    # Ignite's OCIContentID: "oci://<repo>@sha256:..." (registry) or "docker://sha256:..." (local);
    # a Go nil pointer (null) reads as ""
    id: Annotated[str, BeforeValidator(_null_to_empty_str)] = ""
    size: Size = Size(0)
    # v1alpha2's repo digests ("<repo>@sha256:..."); kept when present
    repo_digests: Nullable[list[str]] = Field(default_factory=_list, exclude_if=_omit_empty)


# --- VM ----------------------------------------------------------------------------------------


class VMImageSpec(Model):
    oci: str = ""


class VMSandboxSpec(Model):
    oci: str = DEFAULT_SANDBOX_IMAGE


class VMKernelSpec(Model):
    # "" = the configuration's vmDefaults kernel (ignitevm has no built-in kernel image to pull)
    oci: str = ""
    cmd_line: str = Field(default="", exclude_if=_omit_empty)


class PortMapping(Model):
    host_port: int = Field(ge=1, le=65535)
    vm_port: int = Field(ge=1, le=65535)
    protocol: Protocol = Field(default=Protocol.TCP)
    bind_address: str | None = None

    @classmethod
    def parse(cls, text: str) -> "PortMapping":
        """``[ip:]host:vm[/tcp|udp]``, as Ignite's ``--ports`` takes it."""
        from ignitevm.api.ports import parse_port_mapping

        host_ip, host_port, vm_port, protocol = parse_port_mapping(text)
        return cls(host_port=host_port, vm_port=vm_port, protocol=Protocol(protocol),
                   bind_address=None if host_ip == "0.0.0.0" else host_ip)  # fmt: skip

    def __str__(self) -> str:
        # Ignite's PortMapping.String()
        return f"{self.bind_address or '0.0.0.0'}:{self.host_port}->{self.vm_port}/{self.protocol}"


class VMNetworkSpec(Model):
    ports: Nullable[list[PortMapping]] = Field(default_factory=_list, exclude_if=_omit_empty)


class BlockDeviceVolume(Model):
    path: str


class Volume(Model):
    name: str
    block_device: BlockDeviceVolume | None = None


class VolumeMount(Model):
    name: str
    mount_path: str


class Share(Model):
    """ignitevm: a host directory mounted in the guest (virtio-9p), live both ways."""

    host_path: str
    vm_path: str
    read_only: bool = Field(default=False, exclude_if=_omit_empty)


class VMStorageSpec(Model):
    volumes: Nullable[list[Volume]] = Field(default_factory=_list, exclude_if=_omit_empty)
    volume_mounts: Nullable[list[VolumeMount]] = Field(
        default_factory=_list, exclude_if=_omit_empty
    )
    # ignitevm: host directories shared with the VM (`--share`); QEMU only
    shares: Nullable[list[Share]] = Field(default_factory=_list, exclude_if=_omit_empty)


class FileMapping(Model):
    host_path: str
    vm_path: str


class VMSpec(Model):
    image: VMImageSpec = Field(default_factory=_new(VMImageSpec))
    sandbox: VMSandboxSpec = Field(default_factory=_new(VMSandboxSpec))
    kernel: VMKernelSpec = Field(default_factory=_new(VMKernelSpec))
    cpus: int = Field(default=DEFAULT_CPUS, ge=1, le=256)
    memory: PositiveSize = DEFAULT_MEMORY
    disk_size: PositiveSize = DEFAULT_DISK_SIZE
    network: VMNetworkSpec = Field(default_factory=_new(VMNetworkSpec))
    storage: VMStorageSpec = Field(default_factory=_new(VMStorageSpec))
    copy_files: Nullable[list[FileMapping]] = Field(default_factory=_list, exclude_if=_omit_empty)
    # True: generate a key pair; a string: the path of a public key; None: no SSH setup
    ssh: SSH = None
    # ignitevm: which VMM runs the VM; None = the configuration's choice, else auto
    vmm: Vmm | None = None
    # ignitevm: the snapshot (name or uid) the VM is made from: it resumes from it
    snapshot: str | None = None
    # ignitevm: when ignited starts the VM again; None = no (YAML reads an unquoted no as false)
    restart_policy: Annotated[
        RestartPolicy | None, BeforeValidator(lambda v: "no" if v is False else v)
    ] = None


class Runtime(Model):
    id: str = ""
    name: str = ""


class Network(Model):
    plugin: str = ""
    ip_addresses: Nullable[list[str]] = Field(default_factory=_list)


class LastRun(Model):
    """ignitevm: how the VM's last run ended (spawn/runtime.py's RunOutcome, LastRun)."""

    outcome: str  # exited | crashed | terminated | lost
    exit_code: int | None = None
    started_at: Time | None = None
    ended_at: Time | None = None


class VMStatus(Model):
    # Written by the supervisor for `inspect`; the truth about "running" is the lock on vm/<uid>/
    running: bool = False
    runtime: Runtime | None = None
    start_time: Time | None = None
    network: Network = Field(default_factory=_new(Network))
    image: OCIImageSource = Field(default_factory=_new(OCIImageSource))
    kernel: OCIImageSource = Field(default_factory=_new(OCIImageSource))
    id_prefix: str = ""
    # ignitevm: the VMM actually used and the supervisor's pid while it runs
    vmm: Vmm | None = None
    pid: int | None = None
    # ignitevm (docs/snapshots.md): the snapshot whose disk layer this VM's disk sits on; the
    # snapshot the next start resumes from (a VM made from one); suspended to its own dir
    snapshot: str | None = None
    resume: str | None = None
    suspended: bool | None = None
    paused: bool | None = None  # ignite pause: its vCPUs are frozen (read, never stored)
    # ignitevm: set by ignite stop/kill, cleared by a start: ignited does not restart it
    stopped_by_user: bool | None = None
    # ignitevm: how the last run ended, while the VM does not run (read, never stored)
    last_run: LastRun | None = None


class VM(Model):
    kind: Literal["VM"] = "VM"
    api_version: Literal["ignite.weave.works/v1alpha4"] = API_VERSION
    metadata: ObjectMeta = Field(default_factory=_new(ObjectMeta))
    spec: VMSpec = Field(default_factory=_new(VMSpec))
    status: VMStatus = Field(default_factory=_new(VMStatus))


# --- Image and Kernel ----------------------------------------------------------------------------


class ImageSpec(Model):
    oci: str = ""


class ImageStatus(Model):
    oci_source: OCIImageSource = Field(default_factory=_new(OCIImageSource))
    # ignitevm: the manifest digest, the config digest (the uid is its first 16 hex) and the
    # import source as given ("docker.io/library/alpine:3.19", "oci-archive:/tmp/x.tar")
    digest: str | None = None
    config_digest: str | None = None
    source: str | None = None


class Image(Model):
    kind: Literal["Image"] = "Image"
    api_version: Literal["ignite.weave.works/v1alpha4"] = API_VERSION
    metadata: ObjectMeta = Field(default_factory=_new(ObjectMeta))
    spec: ImageSpec = Field(default_factory=_new(ImageSpec))
    status: ImageStatus = Field(default_factory=_new(ImageStatus))


class KernelSpec(Model):
    oci: str = ""


class KernelStatus(Model):
    version: str = ""
    oci_source: OCIImageSource = Field(default_factory=_new(OCIImageSource))
    # ignitevm: the import source as given ("deb:/tmp/linux-image.deb", "vmlinux:/boot/vmlinux")
    source: str | None = None


class Kernel(Model):
    kind: Literal["Kernel"] = "Kernel"
    api_version: Literal["ignite.weave.works/v1alpha4"] = API_VERSION
    metadata: ObjectMeta = Field(default_factory=_new(ObjectMeta))
    spec: KernelSpec = Field(default_factory=_new(KernelSpec))
    status: KernelStatus = Field(default_factory=_new(KernelStatus))
