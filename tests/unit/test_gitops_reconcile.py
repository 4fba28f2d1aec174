"""The reconciler's decisions against a fake VM operations interface."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ignitevm.api import VM
from ignitevm.errors import IgniteError
from ignitevm.gitops.manifests import HOST_ANNOTATION, read_manifests
from ignitevm.gitops.metrics import Metrics
from ignitevm.gitops.plan import (
    OWNER_LABEL,
    SOURCE_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    ActualVM,
    owner_value,
)
from ignitevm.gitops.reconcile import Backoff, Reconciler

OWNER = owner_value(None)


def manifest(name: str, *, memory: str = "192MB", running: bool | None = None,
             host: str | None = None, uid: str | None = None) -> str:  # fmt: skip
    lines = ["apiVersion: ignite.weave.works/v1alpha4", "kind: VM", "metadata:", f"  name: {name}"]
    if uid:
        lines.append(f"  uid: {uid}")
    if host:
        lines += ["  annotations:", f"    {HOST_ANNOTATION}: {host}"]
    lines += ["spec:", "  image:", "    oci: ignitevm/default:latest", f"  memory: {memory}"]
    if running is not None:
        lines += ["status:", f"  running: {str(running).lower()}"]
    return "\n".join(lines) + "\n"


class FakeOps:
    """An in-memory store of VMs; records every call; can be told to fail."""

    def __init__(self) -> None:
        self.vms: dict[str, ActualVM] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], IgniteError] = {}
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.delay = 0.0

    def add(self, name: str, uid: str, *, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, running: bool = True) -> None:  # fmt: skip
        self.vms[uid] = ActualVM(uid, name, labels or {}, annotations or {}, running)

    def _call(self, op: str, key: str) -> None:
        with self.lock:
            self.calls.append((op, key))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            error = self.fail.get((op, key))
            if error is not None:
                raise error
        finally:
            with self.lock:
                self.active -= 1

    def list(self) -> list[ActualVM]:
        return list(self.vms.values())

    def create(self, vm: VM) -> None:
        self._call("create", vm.metadata.name)
        m = vm.metadata
        self.vms[m.uid] = ActualVM(m.uid, m.name, dict(m.labels), dict(m.annotations), False)

    def _set_running(self, uid: str, running: bool) -> None:
        vm = self.vms[uid]
        self.vms[uid] = ActualVM(vm.uid, vm.name, vm.labels, vm.annotations, running)

    def start(self, uid: str) -> None:
        self._call("start", self.vms[uid].name)
        self._set_running(uid, True)

    def stop(self, uid: str) -> None:
        self._call("stop", self.vms[uid].name)
        self._set_running(uid, False)

    def remove(self, uid: str) -> None:
        self._call("remove", self.vms[uid].name)
        del self.vms[uid]

    def restart(self, uid: str) -> None:
        self._call("restart", self.vms[uid].name)
        self._set_running(uid, True)

    def set_metadata(self, uid: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
        vm = self.vms[uid]
        self._call("relabel", vm.name)
        self.vms[uid] = ActualVM(vm.uid, vm.name, dict(labels), dict(annotations), vm.running)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    root.mkdir()
    return root


def reconcile(rec: Reconciler, root: Path, host: str | None = None) -> list[tuple[str, str]]:
    ops = rec.ops
    assert isinstance(ops, FakeOps)
    before = len(ops.calls)
    rec.run_pass(read_manifests(root, host))
    return ops.calls[before:]


def test_create_start_then_nothing(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    ops = FakeOps()
    rec = Reconciler(ops, OWNER)
    assert reconcile(rec, repo) == [("create", "a"), ("start", "a")]
    vm = next(iter(ops.vms.values()))
    assert vm.labels[OWNER_LABEL] == "ignited"
    assert vm.annotations[SOURCE_ANNOTATION] == "a.yaml"
    assert vm.running
    assert reconcile(rec, repo) == []
    assert rec.metrics.actions["create"] == 1 and rec.metrics.actions["start"] == 1
    assert rec.metrics.vms == {"running": 1, "stopped": 0}


def test_label_change_is_applied_in_place(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    ops = FakeOps()
    rec = Reconciler(ops, OWNER)
    reconcile(rec, repo)
    text = manifest("a").replace("metadata:\n", "metadata:\n  labels:\n    tier: web\n", 1)
    (repo / "a.yaml").write_text(text)
    assert reconcile(rec, repo) == [("relabel", "a")]  # no remove, no restart
    vm = next(iter(ops.vms.values()))
    assert vm.labels == {"tier": "web", OWNER_LABEL: "ignited"} and vm.running
    assert reconcile(rec, repo) == []
    # with a stop wanted too: relabelled, then stopped, in one action
    (repo / "a.yaml").write_text(
        text.replace("tier: web", "tier: db") + "status:\n  running: false\n"
    )
    assert reconcile(rec, repo) == [("relabel", "a"), ("stop", "a")]
    assert next(iter(ops.vms.values())).labels["tier"] == "db"


def test_running_false_creates_stopped_and_stops(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a", running=False))
    rec = Reconciler(FakeOps(), OWNER)
    assert reconcile(rec, repo) == [("create", "a")]
    (repo / "a.yaml").write_text(manifest("a", running=True))
    assert reconcile(rec, repo) == [("start", "a")]
    (repo / "a.yaml").write_text(manifest("a", running=False))
    assert reconcile(rec, repo) == [("stop", "a")]


def test_spec_change_replaces(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    rec = Reconciler(FakeOps(), OWNER)
    reconcile(rec, repo)
    (repo / "a.yaml").write_text(manifest("a", memory="256MB"))
    assert reconcile(rec, repo) == [("remove", "a"), ("create", "a"), ("start", "a")]
    assert rec.metrics.actions["replace"] == 1
    assert reconcile(rec, repo) == []


def test_killed_vm_comes_back(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    ops = FakeOps()
    rec = Reconciler(ops, OWNER)
    reconcile(rec, repo)
    ops._set_running(next(iter(ops.vms)), False)
    assert reconcile(rec, repo) == [("start", "a")]


def test_prune_only_owned(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    ops = FakeOps()
    ops.add("handmade", "1111111111111111")
    ops.add("other", "2222222222222222", labels={OWNER_LABEL: "ignited/elsewhere"})
    rec = Reconciler(ops, OWNER)
    reconcile(rec, repo)
    (repo / "a.yaml").unlink()
    assert reconcile(rec, repo) == [("remove", "a")]
    assert {vm.name for vm in ops.vms.values()} == {"handmade", "other"}
    assert reconcile(rec, repo) == []


def test_hand_made_vm_named_by_a_manifest_is_left_alone(repo: Path) -> None:
    ops = FakeOps()
    ops.add("a", "1111111111111111", running=False)  # made by hand, same name
    (repo / "a.yaml").write_text(manifest("a"))
    (repo / "b.yaml").write_text(manifest("b", uid="2222222222222222"))
    ops.add("b-by-hand", "2222222222222222", running=False)  # same uid
    rec = Reconciler(ops, OWNER)
    result = rec.run_pass(read_manifests(repo))
    assert ops.calls == []
    assert len(result.errors) == 2
    assert rec.metrics.errors["conflict"] == 2


def test_adopts_matching_vms_after_restart(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    (repo / "b.yaml").write_text(manifest("b", running=False))
    ops = FakeOps()
    reconcile(Reconciler(ops, OWNER), repo)
    fresh = Reconciler(ops, OWNER)  # a restarted ignited: no memory but the store
    assert reconcile(fresh, repo) == []


def test_host_filter(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a", host="h1"))
    (repo / "b.yaml").write_text(manifest("b", host="h2"))
    (repo / "c.yaml").write_text(manifest("c"))
    ops = FakeOps()
    assert reconcile(Reconciler(ops, owner_value("h1")), repo, "h1") == [
        ("create", "a"), ("start", "a")]  # fmt: skip
    assert reconcile(Reconciler(ops, owner_value("h2")), repo, "h2") == [
        ("create", "b"), ("start", "b")]  # fmt: skip
    assert reconcile(Reconciler(ops, OWNER), repo) == [("create", "c"), ("start", "c")]
    owners = {vm.name: vm.labels[OWNER_LABEL] for vm in ops.vms.values()}
    assert owners == {"a": "ignited/h1", "b": "ignited/h2", "c": "ignited"}
    # each host prunes only its own: h1 does not remove b or c
    (repo / "a.yaml").unlink()
    assert reconcile(Reconciler(ops, owner_value("h1")), repo, "h1") == [("remove", "a")]


def test_broken_manifest_does_not_stop_the_others(repo: Path) -> None:
    (repo / "good.yaml").write_text(manifest("good"))
    (repo / "bad.yaml").write_text("apiVersion: ignite.weave.works/v1alpha4\nkind: VM\n x: [\n")
    (repo / "unknown.yaml").write_text(manifest("u").replace("  memory:", "  memroy:"))
    rec = Reconciler(FakeOps(), OWNER)
    result = rec.run_pass(read_manifests(repo))
    assert [o.action.name for o in result.outcomes] == ["good"]
    assert any("bad.yaml:3" in e for e in result.errors), result.errors
    assert any("memroy" in e for e in result.errors), result.errors
    assert not result.ok
    assert rec.metrics.errors["manifest"] == 2
    rec.run_pass(read_manifests(repo))
    assert rec.metrics.errors["manifest"] == 2  # the same errors are counted once


def test_vm_of_a_broken_file_is_not_pruned(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    rec = Reconciler(FakeOps(), OWNER)
    reconcile(rec, repo)
    (repo / "a.yaml").write_text(manifest("a") + "  cpus: [\n")
    assert reconcile(rec, repo) == []


def test_missing_root_prunes_nothing(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    rec = Reconciler(FakeOps(), OWNER)
    reconcile(rec, repo)
    assert reconcile(rec, repo / "gone") == []


def test_failure_backs_off_and_others_proceed(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    (repo / "b.yaml").write_text(manifest("b"))
    now = [1000.0]
    ops = FakeOps()
    ops.fail[("create", "a")] = IgniteError("cannot pull image", hint="check the name")
    rec = Reconciler(ops, OWNER, backoff=Backoff(base=10, cap=40, clock=lambda: now[0]))
    result = rec.run_pass(read_manifests(repo))
    assert [o.action.name for o in result.failed] == ["a"]
    assert result.failed[0].retry_in == 10
    assert ("start", "b") in ops.calls
    assert reconcile(rec, repo) == []  # waiting out the back-off
    now[0] += 10
    assert reconcile(rec, repo) == [("create", "a")]  # retried, fails again: 20 s now
    now[0] += 15
    assert reconcile(rec, repo) == []
    now[0] += 5
    del ops.fail[("create", "a")]
    assert reconcile(rec, repo) == [("create", "a"), ("start", "a")]
    assert rec.metrics.errors["create"] == 2


def test_a_new_commit_is_tried_at_once_despite_back_off(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    ops = FakeOps()
    ops.fail[("create", "a")] = IgniteError("no such image")
    rec = Reconciler(ops, OWNER)
    reconcile(rec, repo)
    del ops.fail[("create", "a")]
    (repo / "a.yaml").write_text(manifest("a", memory="256MB"))
    assert reconcile(rec, repo) == [("create", "a"), ("start", "a")]


def test_actions_run_in_parallel_bounded(repo: Path) -> None:
    for i in range(6):
        (repo / f"vm{i}.yaml").write_text(manifest(f"vm{i}", running=False))
    ops = FakeOps()
    ops.delay = 0.05
    Reconciler(ops, OWNER, workers=2).run_pass(read_manifests(repo))
    assert ops.max_active == 2
    assert len(ops.calls) == 6


def test_removes_run_before_creates_to_free_names(repo: Path) -> None:
    # the manifest's uid changed: the old VM (same name) goes first, then the new one comes
    (repo / "a.yaml").write_text(manifest("a", uid="aaaaaaaaaaaaaaaa"))
    ops = FakeOps()
    rec = Reconciler(ops, OWNER)
    reconcile(rec, repo)
    (repo / "a.yaml").write_text(manifest("a", uid="bbbbbbbbbbbbbbbb"))
    assert reconcile(rec, repo) == [("remove", "a"), ("create", "a"), ("start", "a")]
    assert set(ops.vms) == {"bbbbbbbbbbbbbbbb"}


def test_unexpected_exception_is_contained(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    (repo / "b.yaml").write_text(manifest("b"))
    ops = FakeOps()
    ops.fail[("create", "a")] = RuntimeError("boom")  # type: ignore[assignment]
    result = Reconciler(ops, OWNER).run_pass(read_manifests(repo))
    assert [o.action.name for o in result.failed] == ["a"]
    assert "boom" in str(result.failed[0].error)


def test_stale_spec_hash_annotation_means_replace(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    ops = FakeOps()
    desired = read_manifests(repo)
    uid = next(iter(desired.vms))
    ops.add("a", uid, labels={OWNER_LABEL: OWNER}, annotations={SPEC_HASH_ANNOTATION: "old"})
    assert reconcile(Reconciler(ops, OWNER), repo) == [
        ("remove", "a"), ("create", "a"), ("start", "a")]  # fmt: skip


def test_metrics_after_passes(repo: Path) -> None:
    (repo / "a.yaml").write_text(manifest("a"))
    (repo / "b.yaml").write_text(manifest("b", running=False))
    metrics = Metrics()
    rec = Reconciler(FakeOps(), OWNER, metrics)
    reconcile(rec, repo)
    reconcile(rec, repo)
    text = metrics.render()
    assert "ignited_reconcile_passes_total 2\n" in text
    assert 'ignited_reconcile_actions_total{action="create"} 2\n' in text
    assert 'ignited_vms{state="running"} 1\n' in text
    assert 'ignited_vms{state="stopped"} 1\n' in text
    assert "ignited_desired_vms 2\n" in text


def test_hand_made_vms_are_restarted_by_their_policy_and_nothing_else(repo: Path) -> None:
    rec = Reconciler(FakeOps(), OWNER)
    ops = rec.ops
    assert isinstance(ops, FakeOps)
    ops.vms["1" * 16] = ActualVM("1" * 16, "web", {}, {}, False, "restart policy always")
    ops.vms["2" * 16] = ActualVM("2" * 16, "db", {}, {}, False, None)  # policy no
    ops.vms["3" * 16] = ActualVM("3" * 16, "other", {OWNER_LABEL: "ignited/x"}, {}, False,
                                 "restart policy always")  # another ignited's  # fmt: skip
    ops.vms["4" * 16] = ActualVM("4" * 16, "up", {}, {}, True, None)
    assert reconcile(rec, repo) == [("restart", "web")]
    assert reconcile(rec, repo) == []  # it runs now
    assert not ops.vms["2" * 16].running and not ops.vms["3" * 16].running


def test_a_failing_restart_backs_off(repo: Path) -> None:
    clock = [0.0]
    rec = Reconciler(FakeOps(), OWNER, backoff=Backoff(clock=lambda: clock[0]))
    ops = rec.ops
    assert isinstance(ops, FakeOps)
    ops.vms["1" * 16] = ActualVM("1" * 16, "web", {}, {}, False, "restart policy on-failure")
    ops.fail[("restart", "web")] = IgniteError("boot timed out")
    assert reconcile(rec, repo) == [("restart", "web")]
    assert reconcile(rec, repo) == []  # waiting out the back-off
    clock[0] += 11
    del ops.fail[("restart", "web")]
    assert reconcile(rec, repo) == [("restart", "web")]
