"""The library's entry point (docs/library.md): ``Client`` and its collections of images,
kernels, VMs and snapshots. Each method is the use case the CLI command of the same name runs
(ignitevm/ops/), so the library can do everything the CLI can, with the same checks, errors
(ignitevm.errors) and locks; read-only calls run in this process, no subprocess.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ignitevm.client.vm import VM

if TYPE_CHECKING:
    from ignitevm.api import VM as VMObject
    from ignitevm.api import Image, Kernel, Snapshot
    from ignitevm.ops.kernel_build import KernelBuildOutcome
    from ignitevm.ops.services import Services
    from ignitevm.ops.vmlist import VMView


class Client:
    """One state directory and configuration: Ignite's (``/var/lib/firecracker``,
    ``/etc/ignite/config.yaml``) for root, the user's own otherwise (docs/architecture.md).

    ``state_dir`` and ``config`` override them; ``network_plugin`` is the default of the VMs
    this client runs (``cni``, ``user``, ``none``); ``id_prefix`` overrides the configuration's.
    A client may be shared by threads."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
        *,
        network_plugin: str | None = None,
        id_prefix: str | None = None,
    ) -> None:
        from dataclasses import replace

        from ignitevm.ops.services import build_services
        from ignitevm.store import Store

        svc = build_services(Path(config) if config is not None else None)
        if state_dir is not None:
            svc = replace(svc, store=Store(Path(state_dir)))
        if id_prefix:
            svc.config.spec.id_prefix = id_prefix
        self._bind(svc, network_plugin)

    @classmethod
    def _from_services(cls, svc: Services, network_plugin: str | None = None) -> Client:
        """A client over Services built elsewhere (the CLI's global flags, tests)."""
        client = cls.__new__(cls)
        client._bind(svc, network_plugin)
        return client

    def _bind(self, svc: Services, network_plugin: str | None) -> None:
        self._svc: Services = svc
        self._network_plugin = network_plugin
        self.images = Images(self)
        self.kernels = Kernels(self)
        self.vms = VMs(self)
        self.snapshots = Snapshots(self)

    @property
    def state_dir(self) -> Path:
        """Where this client's images, kernels, VMs and snapshots are stored."""
        return self._svc.state_dir

    @staticmethod
    def versions() -> dict[str, str]:
        """ignitevm's version and those of the VMMs found (``ignite version``)."""
        from ignitevm import __version__
        from ignitevm.ops.versions import collect_versions

        return {"ignite": __version__, **collect_versions()}

    def __repr__(self) -> str:
        return f"<ignitevm.Client {self.state_dir}>"


class _Collection:
    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def _svc(self) -> Services:
        return self._client._svc


class Images(_Collection):
    """The imported OCI images (``ignite image ...``)."""

    def import_(self, source: str, *, name: str | None = None) -> Image:
        """Import ``source`` ([registry/]repo[:tag|@digest], oci-archive:FILE, oci:DIR[:TAG],
        docker-archive:FILE, tar:FILE, dir:DIR); an image already stored is returned as is."""
        from ignitevm.ops.images import import_image

        return import_image(self._svc, source, name=name)

    def list(self) -> builtins.list[Image]:
        """Every imported image."""
        from ignitevm.api import Kind

        return self._svc.store.list(Kind.IMAGE)

    def get(self, query: str) -> Image:
        """By name (``alpine`` = ``alpine:latest``) or uid prefix; NotFoundError otherwise."""
        from ignitevm.api import Kind
        from ignitevm.ops.images import find_image

        return find_image(self._svc, query) or self._svc.store.require(Kind.IMAGE, query)

    def remove(self, query: str, *, force: bool = False) -> Image:
        """InUseError while VMs use it, unless ``force``."""
        from ignitevm.ops.images import remove_image

        return remove_image(self._svc, query, force=force)

    def disk_usage(self, image: Image) -> int:
        """Bytes its files take on the host's disk (the OCI blobs and the base disk)."""
        from ignitevm.ops.images import image_disk_bytes

        return image_disk_bytes(self._svc, image)


class Kernels(_Collection):
    """The imported kernels (``ignite kernel ...``)."""

    def import_(self, source: str | None = None, *, name: str | None = None,
                vmlinux: str | os.PathLike[str] | None = None,
                modules: str | os.PathLike[str] | None = None) -> Kernel:  # fmt: skip
        """Import ``source``: an OCI image, ``deb:FILE``, ``apt:PACKAGE``; or a kernel
        file ``vmlinux`` (and its ``modules`` tree) from the host."""
        from ignitevm.errors import ValidationError
        from ignitevm.ops.kernels import import_kernel

        if source and vmlinux:
            raise ValidationError("give either SOURCE or --vmlinux, not both",
                                  hint="see ignite kernel import --help")  # fmt: skip
        if modules and not vmlinux:
            raise ValidationError("--modules goes with --vmlinux", hint="add --vmlinux FILE")
        return import_kernel(self._svc, source, name=name,
                             vmlinux=Path(vmlinux) if vmlinux else None,
                             modules=Path(modules) if modules else None)  # fmt: skip

    def build(self, **options: Any) -> Kernel:
        """Build a microVM kernel from Debian's kernel source and store it (``ignite kernel
        build``; options: source, workdir, fragment, name, output, jobs, niceness)."""
        return self._build(**options).kernel

    def _build(self, **options: Any) -> KernelBuildOutcome:
        from ignitevm.ops.kernel_build import build_microvm_kernel

        return build_microvm_kernel(self._svc, **options)

    def list(self) -> builtins.list[Kernel]:
        """Every imported kernel."""
        from ignitevm.api import Kind

        return self._svc.store.list(Kind.KERNEL)

    def get(self, query: str) -> Kernel:
        """By name or uid prefix; NotFoundError otherwise."""
        from ignitevm.api import Kind

        return self._svc.store.require(Kind.KERNEL, query)

    def remove(self, query: str, *, force: bool = False) -> Kernel:
        """InUseError while VMs use it, unless ``force``."""
        from ignitevm.ops.kernels import remove_kernel

        return remove_kernel(self._svc, query, force=force)


class Snapshots(_Collection):
    """Saved machines (docs/snapshots.md); made by ``VM.snapshot()``."""

    def list(self) -> builtins.list[Snapshot]:
        """Every snapshot (one still being saved is settled first)."""
        from ignitevm.ops.snapshots import list_snapshots

        return list_snapshots(self._svc)

    def get(self, query: str) -> Snapshot:
        """By name or uid prefix; NotFoundError otherwise."""
        from ignitevm.api import Kind

        return self._svc.store.require(Kind.SNAPSHOT, query)

    def remove(self, query: str, *, force: bool = False) -> Snapshot:
        """InUseError while VMs or snapshots sit on it, unless ``force``."""
        from ignitevm.ops.snapshots import remove_snapshot

        return remove_snapshot(self._svc, query, force=force)


class VMs(_Collection):
    """The VMs (``ignite create/run/ps/...``). Settings are the keywords of the VM settings
    table (ignitevm/api/settings.py), named and typed as the manifest's fields: ``name``,
    ``cpus``, ``memory`` ("512MB" or an ignitevm.api.Size), ``disk_size``, ``ssh`` (True, or a
    public key's path), ``ports`` (["8080:80"] or api.PortMapping), ``volumes``, ``shares``,
    ``copy_files``, ``labels`` (a dict), ``kernel``, ``kernel_args``, ``network_plugin``,
    ``vmm``, ``restart``, ``snapshot``."""

    def create(self, image: str | None = None, *, config_file: str | os.PathLike[str] | None = None,
               manifest: VMObject | None = None, require_name: bool = False,
               **settings: Any) -> VM:  # fmt: skip
        """Create a VM (not started): ``image`` (default: the configured one) with
        ``settings``, over the manifest file ``config_file`` or the VM object ``manifest``
        (an ``ignitevm.api.VM``, as ``ignited`` reads them) if given. Everything is checked
        before anything is stored; ``require_name``: a VM without a name is refused."""
        from ignitevm.ops.create import create_vm
        from ignitevm.ops.request import build_vm

        values = self._settings(image, settings)
        path = Path(config_file) if config_file is not None else None
        vm = build_vm(self._svc, values, config_file=path, manifest=manifest)
        return VM(self._client, create_vm(self._svc, vm, require_name=require_name))

    def run(self, image: str | None = None, *, timeout: float = 180.0, wait: bool = True,
            config_file: str | os.PathLike[str] | None = None, **settings: Any) -> VM:  # fmt: skip
        """Create and start a VM. A start that fails removes the VM again (as a with-block
        would); use ``create`` then ``start`` to keep it."""
        vm = self.create(image, config_file=config_file, **settings)
        try:
            return vm.start(timeout=timeout, wait=wait)
        except BaseException:
            vm.remove(force=True)
            raise

    def get(self, query: str) -> VM:
        """By name or uid prefix, with its live state; NotFoundError or AmbiguousError."""
        from ignitevm.ops.vmlist import get_vm

        return VM(self._client, get_vm(self._svc, query).vm)

    def remove(self, query: str, *, force: bool = False) -> VM:
        """Remove the VM ``query`` (``force``: stop it first if it runs); the handle of what
        was removed. NotFoundError when there is none (``VM.remove()`` ignores that)."""
        from ignitevm.ops.remove import remove_vm

        return VM(self._client, remove_vm(self._svc, query, force=force))

    def list(self, *, all: bool = True, filters: str | None = None) -> builtins.list[VM]:
        """Every VM (``all=False``: the running ones), with its live state; ``filters`` is
        `ignite ps -f`'s syntax (``"{{.ObjectMeta.Name}}=web"``; docs/cli.md)."""
        views = [v for v in self._views(all=all, filters=filters) if not v.damaged]
        return [VM(self._client, v.vm) for v in views]

    def _views(self, *, all: bool, filters: str | None) -> builtins.list[VMView]:
        """What `ignite ps` shows: damaged VMs too, with their published ports."""
        from ignitevm.ops.vmlist import list_vms

        # parsed first: a mistake fails before the VMs are read
        keep = None
        if filters:
            from ignitevm.ops.filters import match_all, parse_filters

            parsed = parse_filters(filters)
            keep = lambda vm: match_all(parsed, vm)  # noqa: E731
        return [v for v in list_vms(self._svc, all_=all) if keep is None or keep(v.vm)]

    def copy(
        self, source: str, destination: str, *, archive: bool = False,
        identity: str | os.PathLike[str] | None = None, timeout: float = 10.0,
    ) -> None:  # fmt: skip
        """``ignite cp``: one side is ``VM:PATH`` (a name or uid prefix), the other a host
        path. Out of a VM nothing the guest made can lead outside ``destination``;
        ``archive`` keeps ownership and modes; ``identity`` is a private key to use instead of
        the VM's; ``timeout``: seconds to wait for its SSH server."""
        from ignitevm.ops.copy import copy

        copy(self._svc, source, destination, archive=archive, timeout=timeout,
             identity=Path(identity) if identity is not None else None)  # fmt: skip

    def _settings(self, image: str | None, settings: Mapping[str, Any]) -> dict[str, Any]:
        from ignitevm.api.settings import require_setting

        for key in settings:
            require_setting(key)  # an unknown keyword is a ValidationError naming the known
        values = dict(settings)
        if image is not None:
            values["image"] = image
        if values.get("network_plugin") is None and self._client._network_plugin:
            values["network_plugin"] = self._client._network_plugin
        return values
