"""Two commands racing for one thing: the loser gets a clean, quick error (issue 10, defect 9)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ignitevm.api import Kind
from ignitevm.errors import ConflictError, IgniteError
from ignitevm.ops.create import create_vm
from ignitevm.ops.request import build_vm
from ignitevm.ops.start import start_vm, starting
from ignitevm.ops.vmlist import vm_dir
from tests.unit.conftest import FakeHost


def _create(host: FakeHost, name: str) -> None:
    create_vm(host.svc, build_vm(host.svc, {"image": "img", "kernel": "kern", "name": name}))


def test_a_start_while_another_starts_the_vm_fails_at_once(fake_host: FakeHost) -> None:
    _create(fake_host, "s")
    v = fake_host.svc.store.require(Kind.VM, "s")
    with starting(v, vm_dir(fake_host.svc, v)):  # what the first start holds
        began = time.monotonic()
        with pytest.raises(ConflictError, match="is being started by another command"):
            start_vm(fake_host.svc, "s", timeout=30)
        assert time.monotonic() - began < 1.0


def test_two_starts_at_once_one_runs_the_other_is_refused_quickly(fake_host: FakeHost) -> None:
    _create(fake_host, "r")
    barrier = threading.Barrier(2)
    outcomes: list[tuple[str, float]] = []

    def start() -> None:
        barrier.wait()
        began = time.monotonic()
        try:
            start_vm(fake_host.svc, "r", timeout=30)
            outcomes.append(("ok", time.monotonic() - began))
        except IgniteError as exc:
            outcomes.append((exc.message, time.monotonic() - began))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = sorted(outcomes)
    assert [r[0] for r in results].count("ok") == 1, results
    loser = next(r for r in results if r[0] != "ok")
    assert "being started" in loser[0] or "already running" in loser[0], loser
    assert "supervisor.log" not in loser[0]  # no quote of the winner's log
    assert loser[1] < 3.0, results


@pytest.mark.usefixtures("restore_signals")  # ignited installs a SIGTERM handler
def test_a_second_ignited_for_the_same_owner_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ignitevm.cli.app import run_cli
    from ignitevm.cli.ignited import cli
    from ignitevm.gitops.daemon import hold_owner_lock

    state = tmp_path / "state"
    monkeypatch.setenv("IGNITE_STATE_DIR", str(state))
    (tmp_path / "m").mkdir()
    fd = hold_owner_lock(state, "ignited")  # the first ignited
    try:
        with pytest.raises(SystemExit) as done:
            run_cli(cli, "ignited", ["daemon", "--once", "--manifest-dir", str(tmp_path / "m")])
        assert done.value.code == 1
        assert capsys.readouterr().err.splitlines() == [
            f"error: another ignited (pid {os.getpid()}) reconciles the VMs of owner "
            f"'ignited' in {state}",
            "hint: stop it first, or give this one another --host",
        ]
        other = hold_owner_lock(state, "ignited/rack1")  # another --host is another owner
        os.close(other)
    finally:
        os.close(fd)
    with pytest.raises(SystemExit) as done:  # the first one ended: the lock went with it
        run_cli(cli, "ignited", ["daemon", "--once", "--manifest-dir", str(tmp_path / "m")])
    assert done.value.code == 0
