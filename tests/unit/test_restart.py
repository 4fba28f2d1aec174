"""Restart policies (issue 10 part 3): how each run ended is recorded, a person's stop is
remembered, and ignited's pass starts again exactly the VMs their policy names. Real use
cases, real supervisors, a fake QEMU (tests/unit/conftest.py ``fake_host``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ignitevm.api import VM, load_object
from ignitevm.errors import ConflictError, ValidationError
from ignitevm.gitops.manifests import read_manifests
from ignitevm.gitops.opsbridge import ServicesOps
from ignitevm.gitops.plan import OWNER_LABEL, owner_value
from ignitevm.gitops.reconcile import Reconciler
from ignitevm.ops.create import create_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.restart import restart_reason, restart_vm
from ignitevm.ops.start import start_vm
from ignitevm.ops.stop import kill_vm, stop_vm
from ignitevm.ops.vmlist import get_vm, vm_dir
from ignitevm.spawn import request_stop
from ignitevm.spawn.runtime import is_running, read_runtime
from tests.unit.conftest import FakeHost, wait_for


def _run(host: FakeHost, name: str, restart: str | None, **labels: str) -> Path:
    settings = {"image": "img", "kernel": "kern", "name": name, "restart": restart,
                "labels": labels or None}  # fmt: skip
    vm = create_vm(host.svc, build_vm(host.svc, settings))
    start_vm(host.svc, name, timeout=30)
    return vm_dir(host.svc, vm)


def _kill_supervisor(d: Path) -> None:
    """What a host reboot leaves: no process, a runtime.json nobody holds."""
    status = read_runtime(d)
    assert status is not None
    os.kill(status.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not is_running(d))


def _kill_vmm(d: Path) -> None:
    status = read_runtime(d)
    assert status is not None and status.vmm_pid
    os.kill(status.vmm_pid, signal.SIGKILL)
    wait_for(lambda: not is_running(d))


def _ignited_pass(host: FakeHost, tmp_path: Path) -> list[str]:
    """One `ignited daemon --once` pass over an empty manifest directory; the actions done."""
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    result = Reconciler(ServicesOps(host.svc), owner_value(None)).run_pass(
        read_manifests(manifests)
    )
    assert not result.failed, [o.error for o in result.failed]
    return [f"{o.action.kind} {o.action.name}" for o in result.outcomes]


def _last(host: FakeHost, name: str) -> str | None:
    view = get_vm(host.svc, name)
    return view.vm.status.last_run.outcome if view.vm.status.last_run else None


def test_how_each_run_ended_is_recorded(fake_host: FakeHost) -> None:
    d = _run(fake_host, "a", None)
    assert get_vm(fake_host.svc, "a").vm.status.last_run is None  # running
    assert request_stop(d, 10)  # the guest powers off (the fake obeys the button)
    assert _last(fake_host, "a") == "exited"
    start_vm(fake_host.svc, "a", timeout=30)
    _kill_vmm(d)  # QEMU killed or crashed
    assert _last(fake_host, "a") == "crashed"
    start_vm(fake_host.svc, "a", timeout=30)
    _kill_supervisor(d)  # kill -9 of the supervisor, or a host reboot
    assert _last(fake_host, "a") == "lost"
    data = get_vm(fake_host.svc, "a").vm.status.last_run
    assert data is not None and data.started_at is not None and data.ended_at is None


def test_after_a_simulated_reboot_always_and_on_failure_vms_run_again(
    fake_host: FakeHost, tmp_path: Path
) -> None:
    dirs = {name: _run(fake_host, name, policy) for name, policy in
            [("web", "always"), ("job", "on-failure"), ("pet", "no"), ("old", None)]}  # fmt: skip
    managed = _run(fake_host, "managed", "always", **{OWNER_LABEL: "ignited/other"})
    for d in [*dirs.values(), managed]:
        _kill_supervisor(d)
    assert sorted(_ignited_pass(fake_host, tmp_path)) == ["restart job", "restart web"]
    assert is_running(dirs["web"]) and is_running(dirs["job"])
    assert not any(is_running(dirs[n]) for n in ("pet", "old")) and not is_running(managed)
    # the dead runs of the VMs left stopped were cleaned up all the same (nothing leaks)
    assert read_runtime(dirs["pet"]) is None and _last(fake_host, "pet") == "lost"
    assert _ignited_pass(fake_host, tmp_path) == []  # nothing more to do


def test_a_person_who_stops_a_vm_is_not_overruled(fake_host: FakeHost, tmp_path: Path) -> None:
    d = _run(fake_host, "web", "always")
    stop_vm(fake_host.svc, "web", timeout=10)
    assert get_vm(fake_host.svc, "web").vm.status.stopped_by_user is True
    assert _ignited_pass(fake_host, tmp_path) == []
    start_vm(fake_host.svc, "web", timeout=30)  # a start clears the mark
    assert get_vm(fake_host.svc, "web").vm.status.stopped_by_user is None
    kill_vm(fake_host.svc, "web")  # so does a kill: a person's
    assert _ignited_pass(fake_host, tmp_path) == [] and not is_running(d)


def test_on_failure_restarts_after_a_crash_not_after_a_poweroff(
    fake_host: FakeHost, tmp_path: Path
) -> None:
    d = _run(fake_host, "job", "on-failure")
    assert request_stop(d, 10)  # the guest powered off: its business
    assert _ignited_pass(fake_host, tmp_path) == []
    start_vm(fake_host.svc, "job", timeout=30)
    _kill_vmm(d)
    assert _ignited_pass(fake_host, tmp_path) == ["restart job"] and is_running(d)


def test_always_restarts_after_a_poweroff(fake_host: FakeHost, tmp_path: Path) -> None:
    d = _run(fake_host, "web", "always")
    assert request_stop(d, 10)  # a guest poweroff or reboot (QEMU runs with -no-reboot)
    assert _ignited_pass(fake_host, tmp_path) == ["restart web"] and is_running(d)


def test_a_restart_rechecks_the_persons_stop_under_the_start_lock(fake_host: FakeHost) -> None:
    d = _run(fake_host, "web", "always")
    vm = get_vm(fake_host.svc, "web").vm
    assert restart_reason(vm, running=False) is not None  # what ignited saw a moment ago
    stop_vm(fake_host.svc, "web", timeout=10)  # then a person stopped it
    with pytest.raises(ConflictError, match="was stopped by a user"):
        restart_vm(fake_host.svc, vm.metadata.uid, timeout=30)
    assert not is_running(d)


@pytest.mark.parametrize(
    ("policy", "stopped", "last", "expected"),
    [
        ("always", None, None, True),
        ("always", None, "exited", True),
        ("always", True, "crashed", False),
        ("always", None, "suspended", False),
        ("on-failure", None, "crashed", True),
        ("on-failure", None, "lost", True),
        ("on-failure", None, "terminated", True),
        ("on-failure", None, "exited", False),
        ("on-failure", None, None, False),
        ("no", None, "lost", False),
        (None, None, "lost", False),
    ],
)
def test_restart_reason(policy: str | None, stopped: bool | None, last: str | None,
                        expected: bool) -> None:  # fmt: skip
    vm = VM()
    vm.spec.restart_policy = policy  # type: ignore[assignment]
    vm.status.stopped_by_user = stopped
    if last:
        vm.status.last_run = {"outcome": last}  # type: ignore[assignment]
    assert (restart_reason(vm, running=False) is not None) == expected
    assert restart_reason(vm, running=True) is None


def test_the_setting_and_the_manifest_field(tmp_path: Path) -> None:
    from ignitevm.api.settings import apply_settings

    assert apply_settings(VM(), {"restart": "on-failure"}).spec.restart_policy == "on-failure"
    with pytest.raises(ValidationError, match=r"^--restart 'sometimes' is unknown"):
        apply_settings(VM(), {"restart": "sometimes"})
    path = tmp_path / "vm.yaml"
    # YAML 1.1 reads an unquoted no as false
    path.write_text("apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata: {name: a}\n"
                    "spec:\n  restartPolicy: no\n")  # fmt: skip
    vm = load_object(path)
    assert isinstance(vm, VM) and vm.spec.restart_policy == "no"


def test_a_host_shutdown_counts_as_abnormal(fake_host: FakeHost, tmp_path: Path) -> None:
    """systemd stops a host by signalling every process: the supervisor powers the guest off,
    and the run is "terminated", which on-failure restarts after the reboot."""
    d = _run(fake_host, "job", "on-failure")
    status = read_runtime(d)
    assert status is not None
    os.kill(status.supervisor_pid, signal.SIGTERM)
    wait_for(lambda: not is_running(d), timeout=10)
    assert _last(fake_host, "job") == "terminated"
    assert _ignited_pass(fake_host, tmp_path) == ["restart job"] and is_running(d)
