"""The loop (a failing source keeps the last snapshot; stop on the event) and CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ignitevm.gitops.daemon import Daemon
from ignitevm.gitops.reconcile import Reconciler
from ignitevm.gitops.source import Snapshot, SourceError
from tests.unit.test_gitops_reconcile import OWNER, FakeOps, manifest


@dataclass
class FlakySource:
    """Serves ``root``; raises SourceError for the calls listed in ``fail_on`` (0-based)."""

    root: Path
    fail_on: set[int] = field(default_factory=set)
    calls: int = 0
    previous_run: Snapshot | None = None  # what last_good offers

    def sync(self) -> Snapshot:
        n, self.calls = self.calls, self.calls + 1
        if n in self.fail_on:
            raise SourceError("repository unreachable")
        return Snapshot(self.root, revision=f"c{n}", revision_time=float(n), changed=True)

    def last_good(self) -> Snapshot | None:
        return self.previous_run

    def close(self) -> None:
        pass


def test_unreachable_source_keeps_last_snapshot(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("a"))
    ops = FakeOps()
    rec = Reconciler(ops, OWNER)
    daemon = Daemon(FlakySource(tmp_path, fail_on={1}), rec)
    daemon.run_once()
    assert rec.metrics.commit == "c0"
    ops._set_running(next(iter(ops.vms)), False)  # drift while the repository is away
    result = daemon.run_once()
    assert [str(o.action) for o in result.outcomes] == [f"start a ({next(iter(ops.vms))})"]
    assert rec.metrics.errors["source"] == 1
    assert rec.metrics.commit == "c0"


def test_no_snapshot_yet_is_an_error(tmp_path: Path) -> None:
    daemon = Daemon(FlakySource(tmp_path, fail_on={0}), Reconciler(FakeOps(), OWNER))
    with pytest.raises(SourceError, match="could not be read"):
        daemon.run_once()


def test_restart_with_source_away_uses_the_previous_checkout(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("a"))
    previous = Snapshot(tmp_path, revision="old", revision_time=1.0, changed=True)
    ops = FakeOps()
    rec = Reconciler(ops, OWNER)
    daemon = Daemon(FlakySource(tmp_path, fail_on={0}, previous_run=previous), rec)
    result = daemon.run_once()
    assert [o.action.kind for o in result.outcomes] == ["create"]
    assert rec.metrics.commit == "old" and rec.metrics.errors["source"] == 1


def test_run_forever_passes_on_interval_and_stops(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("a", running=False))
    stop = threading.Event()
    rec = Reconciler(FakeOps(), OWNER)
    source = FlakySource(tmp_path, fail_on={1})
    daemon = Daemon(source, rec, interval=0.05, stop_event=stop)
    thread = threading.Thread(target=daemon.run_forever)
    thread.start()
    try:
        while rec.metrics.passes < 3 and thread.is_alive():
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert rec.metrics.passes >= 3
    assert rec.metrics.errors["source"] == 1
    assert rec.metrics.actions["create"] == 1


def _ignited(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IGNITE_STATE_DIR": str(tmp_path / "state")}
    config = tmp_path / "none.yaml"
    config.write_text("apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\n")
    argv = [sys.executable, "-m", "ignitevm.cli.ignited", *args, "--ignite-config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def test_cli_missing_directory_is_one_clear_error(tmp_path: Path) -> None:
    out = _ignited(tmp_path, "daemon", "--manifest-dir", str(tmp_path / "nope"), "--once")
    assert out.returncode == 1
    assert f"manifest directory {tmp_path / 'nope'} does not exist" in out.stderr
    assert "error: no manifests to reconcile" in out.stderr and "hint:" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_empty_directory_once_succeeds(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    out = _ignited(tmp_path, "daemon", "--manifest-dir", str(tmp_path / "m"), "--once",
                   "--runtime", "containerd")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "pass: 0 desired" in out.stderr


def test_cli_bad_interval(tmp_path: Path) -> None:
    out = _ignited(tmp_path, "daemon", "--manifest-dir", str(tmp_path), "--interval", "soon")
    assert out.returncode == 2
    assert "error: invalid duration 'soon'" in out.stderr


def test_cli_bad_metrics_addr(tmp_path: Path) -> None:
    out = _ignited(tmp_path, "daemon", "--manifest-dir", str(tmp_path), "--once",
                   "--metrics-addr", "nope")  # fmt: skip
    assert out.returncode == 2
    assert "error: --metrics-addr 'nope' is not HOST:PORT" in out.stderr


def test_cli_bad_preflight_check_name(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    out = _ignited(tmp_path, "daemon", "--manifest-dir", str(tmp_path / "m"), "--once",
                   "--ignore-preflight-checks", "KVM,Nope")  # fmt: skip
    assert out.returncode != 0
    assert "unknown preflight check 'Nope'" in out.stderr and "hint: known checks" in out.stderr
