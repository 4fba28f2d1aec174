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
    from ignitevm.api import Image, Kernel, Snapshot
    from ignitevm.ops.services import Services


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
        self._svc: Services = svc
        self._network_plugin = network_plugin
        self.images = Images(self)
        self.kernels = Kernels(self)
        self.vms = VMs(self)
        self.snapshots = Snapshots(self)

    @classmethod
    def _from_services(cls, svc: Services, network_plugin: str | None = None) -> Client:
        """A client over Services built elsewhere (the CLI's global flags, tests)."""
        client = cls.__new__(cls)
        client._svc = svc
        client._network_plugin = network_plugin
        client.images = Images(client)
        client.kernels = Kernels(client)
        client.vms = VMs(client)
        client.snapshots = Snapshots(client)
        return client

    @property
    def state_dir(self) -> Path:
        """Where this client's images, kernels, VMs and snapshots are stored."""
        return self._svc.state_dir

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


class Kernels(_Collection):
    """The imported kernels (``ignite kernel ...``)."""

    def import_(self, source: str, *, name: str | None = None) -> Kernel:
        """Import ``source``: an OCI image, ``deb:FILE``, ``apt:PACKAGE``."""
        from ignitevm.ops.kernels import import_kernel

        return import_kernel(self._svc, source, name=name)

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
               **settings: Any) -> VM:  # fmt: skip
        """Create a VM (not started): ``image`` (default: the configured one) with
        ``settings``, over the manifest ``config_file`` if given. Everything is checked before
        anything is stored."""
        from ignitevm.ops.create import create_vm
        from ignitevm.ops.request import build_vm

        values = self._settings(image, settings)
        manifest = Path(config_file) if config_file is not None else None
        vm = build_vm(self._svc, values, config_file=manifest)
        return VM(self._client, create_vm(self._svc, vm))

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

    def list(self, *, all: bool = True, filters: str | None = None) -> builtins.list[VM]:
        """Every VM (``all=False``: the running ones), with its live state; ``filters`` is
        `ignite ps -f`'s syntax (``"{{.ObjectMeta.Name}}=web"``; docs/cli.md)."""
        from ignitevm.ops.vmlist import list_vms

        views = [v for v in list_vms(self._svc, all_=all) if not v.damaged]
        if filters:
            from ignitevm.ops.filters import match_all, parse_filters

            parsed = parse_filters(filters)
            views = [v for v in views if match_all(parsed, v.vm)]
        return [VM(self._client, v.vm) for v in views]

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
