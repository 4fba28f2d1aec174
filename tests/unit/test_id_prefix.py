"""The id prefix (issue 14 item 4): Ignite's idPrefix names a VM's network namespace and CNI
container id ``<prefix>-<uid>``; it is checked and recorded at create (VM.status.idPrefix) and
every later start and teardown uses the recorded one, whatever the configuration says then."""

from __future__ import annotations

from pathlib import Path

import pytest

from ignitevm.api import Configuration
from ignitevm.api.names import check_id_prefix
from ignitevm.errors import ValidationError
from ignitevm.network.base import NetworkRequest
from ignitevm.network.cnirecord import container_id, netns_name
from ignitevm.ops.create import create_vm
from ignitevm.ops.launchplan import build_launch_plan
from ignitevm.ops.request import build_vm
from ignitevm.ops.services import Services
from ignitevm.ops.vmlist import get_vm, vm_dir
from ignitevm.spawn.client.stop import cleanup_stale
from ignitevm.spawn.runtime import RuntimeState, RuntimeStatus, write_runtime
from tests.unit.conftest import FakeHost


@pytest.mark.parametrize("good", ["ignite", "my-lab", "a", "x1", "9lives", "a" * 63])
def test_dns_label_prefixes_are_accepted(good: str) -> None:
    assert check_id_prefix(good) == good


@pytest.mark.parametrize(
    "bad", ["", "-x", "x-", "My-Lab", "a_b", "a.b", "a b", "../etc", "a/b", "ünï", "a" * 64]
)
def test_other_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="invalid id prefix"):
        check_id_prefix(bad)


def test_names_use_the_request_prefix() -> None:
    req = NetworkRequest("0123456789abcdef", "vm", Path("/x"), "02:00:00:00:00:01",
                         id_prefix="my-lab")  # fmt: skip
    assert netns_name(req) == container_id(req) == "my-lab-0123456789abcdef"
    assert NetworkRequest("ab", "vm", Path("/x"), "m").prefixed_id == "ignite-ab"
    assert NetworkRequest("ab", "vm", Path("/x"), "m", id_prefix="").prefixed_id == "ignite-ab"


def _svc(host: FakeHost, prefix: str) -> Services:
    config = Configuration.model_validate({"spec": {"networkPlugin": "none", "idPrefix": prefix}})
    return Services(config=config, store=host.svc.store)


def test_create_checks_and_records_the_prefix(fake_host: FakeHost) -> None:
    bad = _svc(fake_host, "Bad_Prefix")
    with pytest.raises(ValidationError, match="invalid id prefix 'Bad_Prefix'"):
        create_vm(bad, build_vm(bad, {"image": "img", "kernel": "kern", "name": "p0"}))
    svc = _svc(fake_host, "my-lab")
    create_vm(svc, build_vm(svc, {"image": "img", "kernel": "kern", "name": "p1"}))
    assert get_vm(svc, "p1").vm.status.id_prefix == "my-lab"


def test_start_uses_the_recorded_prefix_not_the_configuration(fake_host: FakeHost) -> None:
    svc = _svc(fake_host, "my-lab")
    vm = create_vm(svc, build_vm(svc, {"image": "img", "kernel": "kern", "name": "p2"}))
    later = _svc(fake_host, "other")  # the configuration changed since
    d = vm_dir(later, vm)
    plan = build_launch_plan(later, get_vm(later, "p2").vm, d, "none", debug=False)
    assert plan.id_prefix == "my-lab"
    assert plan.network_request().prefixed_id == f"my-lab-{vm.metadata.uid}"


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[NetworkRequest] = []

    def detach(self, req: NetworkRequest) -> None:
        self.requests.append(req)


def test_cleanup_after_a_crash_detaches_with_the_recorded_prefix(tmp_path: Path) -> None:
    status = RuntimeStatus(1, "qemu", RuntimeState.RUNNING, 0.0, vm_uid="abc", network="cni",
                           id_prefix="my-lab")  # fmt: skip
    write_runtime(tmp_path, status)
    plugin = _Recorder()
    cleanup_stale(tmp_path, lambda name: plugin)  # type: ignore[arg-type,return-value]
    assert [r.prefixed_id for r in plugin.requests] == ["my-lab-abc"]
