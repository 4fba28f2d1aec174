"""The Configuration object (``/etc/ignite/config.yaml``): ignite's and ignited's defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ignitevm.api.types import (
    API_VERSION,
    DEFAULT_ID_PREFIX,
    DEFAULT_NETWORK_PLUGIN,
    Model,
    ObjectMeta,
    Vmm,
    VMSpec,
    _new,
)


class ConfigurationSpec(Model):
    # Ignite: "containerd" or "docker". ignitevm has no container runtime; kept for compatibility.
    runtime: str | None = None
    network_plugin: str = DEFAULT_NETWORK_PLUGIN
    vm_defaults: VMSpec = Field(default_factory=_new(VMSpec))
    id_prefix: str = DEFAULT_ID_PREFIX
    # the directory of a Docker config.json with registry credentials (Ignite's
    # --registry-config-dir; default ~/.docker); clientConfigDir is its later name in Ignite
    registry_config_dir: str | None = None
    client_config_dir: str | None = None
    # ignitevm: default VMM ("auto" picks firecracker only where KVM really works) and state dir
    vmm: Vmm | None = None
    state_dir: str | None = None
    # ignitevm: run each VMM in its jail (own uid, mount namespace, seccomp, cgroup) when
    # ignite runs as root; false only to debug a VMM (docs/runtime.md "The jail")
    jail: bool | None = None


class Configuration(Model):
    kind: Literal["Configuration"] = "Configuration"
    api_version: Literal["ignite.weave.works/v1alpha4"] = API_VERSION
    metadata: ObjectMeta = Field(default_factory=_new(ObjectMeta))
    spec: ConfigurationSpec = Field(default_factory=_new(ConfigurationSpec))
