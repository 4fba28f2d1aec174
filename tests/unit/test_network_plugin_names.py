"""Plugin names (issue 14 item 5): Ignite's ``docker-bridge`` -- in the configuration, on the
command line or in a manifest -- starts the nearest plugin (cni) with a warning; one function
(network/registry.py ``resolve_plugin_name``) decides it."""

from __future__ import annotations

import logging

import pytest

from ignitevm.api import Configuration
from ignitevm.errors import IgniteError, ValidationError
from ignitevm.network import registry
from ignitevm.network.base import PluginName
from ignitevm.ops.create import create_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.services import Services
from ignitevm.ops.start import start_vm
from ignitevm.ops.vmlist import get_vm
from tests.unit.conftest import FakeHost


def test_docker_bridge_is_cni_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    registry._warned.clear()
    with caplog.at_level(logging.WARNING):
        assert registry.resolve_plugin_name("docker-bridge") is PluginName.CNI
        assert registry.resolve_plugin_name("docker-bridge") is PluginName.CNI
    warnings = [r for r in caplog.records if "docker-bridge" in r.getMessage()]
    assert len(warnings) == 1 and "using cni" in warnings[0].getMessage()
    assert registry.require_plugin("docker-bridge").name is PluginName.CNI


def test_unknown_names_still_fail_and_list_the_choices() -> None:
    with pytest.raises(ValidationError, match="unknown network plugin 'carrier'") as err:
        registry.resolve_plugin_name("carrier")
    assert err.value.hint == "use one of: cni, user, none"
    assert registry.resolve_plugin_name("user") is PluginName.USER


def test_configuration_docker_bridge_creates_a_cni_vm(fake_host: FakeHost) -> None:
    config = Configuration.model_validate({"spec": {"networkPlugin": "docker-bridge"}})
    svc = Services(config=config, store=fake_host.svc.store)
    vm = create_vm(svc, build_vm(svc, {"image": "img", "kernel": "kern", "name": "db"}))
    assert vm.status.network.plugin == "cni"
    assert get_vm(svc, "db").vm.status.network.plugin == "cni"


def test_flag_docker_bridge_on_create_and_start(
    fake_host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = fake_host.svc
    settings = {"image": "img", "kernel": "kern", "name": "fl", "network_plugin": "docker-bridge"}
    assert create_vm(svc, build_vm(svc, settings)).status.network.plugin == "cni"
    # what start hands on; stopped there, so no network of the host is touched
    seen: list[str] = []

    def plan(svc: object, vm: object, d: object, plugin_name: str, **kw: object) -> None:
        seen.append(plugin_name)
        raise IgniteError("stop here")

    monkeypatch.setattr("ignitevm.ops.launchplan.build_launch_plan", plan)
    with pytest.raises(IgniteError, match="stop here"):
        start_vm(svc, "fl", network_plugin="docker-bridge")
    assert seen == ["cni"]
