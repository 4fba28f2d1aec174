"""The Services object: everything a use case needs, built once by the CLI (or by tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ignitevm.api import Configuration, load_configuration
from ignitevm.store import Store, resolve_state_dir
from ignitevm.userpaths import default_state_dir, is_root

if TYPE_CHECKING:
    from ignitevm.oci import FetchOptions

# Ignite's containerd runtime read the registries to reach without TLS verification from this
# variable (comma-separated hosts); docs/images.md
INSECURE_REGISTRIES_ENV = "IGNITE_CONTAINERD_INSECURE_REGISTRIES"

# ignitevm has no kernel image in a registry to pull (Ignite's weaveworks/ignite-kernel); the
# default kernel is Debian's, fetched with apt on first use (see ops/kernels.py, `apt:` sources).
DEFAULT_KERNEL_SOURCE = "apt:linux-image-amd64"
DEFAULT_IMAGE = "ignitevm/default:latest"
USER_NETWORK_PLUGIN = "user"  # QEMU's user-mode networking: no root needed


@dataclass(frozen=True)
class Services:
    config: Configuration
    store: Store
    # None: the defaults over the store's blob cache (built on first use: importing the OCI
    # client costs ~60 ms, which `ignite ps` must not pay)
    fetch_options: FetchOptions | None = None

    @property
    def state_dir(self) -> Path:
        return self.store.root

    @property
    def fetch(self) -> FetchOptions:
        """How images are fetched: the configuration's registryConfigDir and the insecure
        registries of IGNITE_CONTAINERD_INSECURE_REGISTRIES, unless set otherwise (flags)."""
        if self.fetch_options is not None:
            return self.fetch_options
        from ignitevm.oci import FetchOptions

        spec = self.config.spec
        config_dir = spec.registry_config_dir or spec.client_config_dir
        env = os.environ.get(INSECURE_REGISTRIES_ENV, "")
        return FetchOptions(
            cache_dir=self.store.cache_dir(),
            registry_config_dir=Path(config_dir).expanduser() if config_dir else None,
            insecure_registries=tuple(h.strip() for h in env.split(",") if h.strip()),
        )

    def with_fetch(self, **changes: object) -> Services:
        return replace(self, fetch_options=replace(self.fetch, **changes))  # type: ignore[arg-type]

    def default_kernel_source(self) -> str:
        return self.config.spec.vm_defaults.kernel.oci or DEFAULT_KERNEL_SOURCE

    def default_network_plugin(self) -> str:
        """``IGNITE_NETWORK_PLUGIN``, the configuration's ``networkPlugin`` when it sets one,
        else ``cni`` for root and ``user`` for anyone else (cni needs root; docs/network.md)."""
        env = os.environ.get("IGNITE_NETWORK_PLUGIN")
        if env:
            return env
        spec = self.config.spec
        if "network_plugin" in spec.model_fields_set or is_root():
            return spec.network_plugin
        return USER_NETWORK_PLUGIN


def build_services(config_path: Path | None = None) -> Services:
    config = load_configuration(config_path)
    root = resolve_state_dir(config)
    if not is_root() and root == default_state_dir() and not root.exists():
        # a user's VMs (keys, consoles, disks) are theirs alone; a chosen directory keeps
        # whatever mode it was given
        root.mkdir(mode=0o700, parents=True)
    return Services(config=config, store=Store(root))
