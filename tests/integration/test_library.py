"""The library (docs/library.md) on real VMs: the with-block, exec with stdin, put and get,
removal when the body raises, five threads at once, and the pytest plugin (ignitevm.testing)
used by a test suite of its own."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import ignitevm
from ignitevm import errors
from tests.integration.conftest import Ignite

pytest_plugins = ["pytester"]


@pytest.fixture
def client(ignite: Ignite) -> ignitevm.Client:
    """A client of the session's state dir (kernel and default image imported)."""
    return ignitevm.Client(state_dir=ignite.state_dir, config=ignite.config)


def test_with_block_exec_stdin_put_get_and_removal(
    client: ignitevm.Client, vm_name: str, tmp_path: Path
) -> None:
    local = tmp_path / "in.bin"
    local.write_bytes(os.urandom(100_000))
    with client.vms.run(name=vm_name, ssh=True, network_plugin="user", memory="256MB") as vm:
        assert vm.running and vm.name == vm_name
        result = vm.exec("tr a-z A-Z", input="hello from stdin\n", check=True)
        assert result.stdout == "HELLO FROM STDIN\n"
        seen: list[bytes] = []
        assert vm.exec(["sh", "-c", "echo out; echo err >&2; exit 7"],
                       on_stderr=seen.append).returncode == 7  # fmt: skip
        assert b"".join(seen) == b"err\n"
        with pytest.raises(errors.GuestCommandError) as failed:
            vm.exec("cat /no/such/file", check=True)
        assert failed.value.returncode == 1 and "No such file" in failed.value.stderr
        with pytest.raises(errors.Timeout, match="did not finish in 1 s"):
            vm.exec("sleep 30", timeout=1)
        started = time.monotonic()  # the command was killed: the next one runs at once
        assert vm.exec("true").ok and time.monotonic() - started < 5
        vm.put(local, "/root/in.bin")
        assert vm.exec("wc -c < /root/in.bin", check=True).stdout.strip() == "100000"
        vm.get("/root/in.bin", tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == local.read_bytes()
        assert "ignitevm-init: started" in vm.logs()
    assert [v for v in client.vms.list() if v.name == vm_name] == []


def test_the_vm_is_removed_when_the_body_raises(client: ignitevm.Client, vm_name: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), client.vms.run(name=vm_name) as vm:
        assert vm.exec("true").ok
        raise RuntimeError("boom")
    with pytest.raises(errors.NotFoundError):
        client.vms.get(vm_name)


def test_five_threads_each_run_and_exec_their_own_vm(client: ignitevm.Client, vm_name: str) -> None:
    results: dict[int, str] = {}
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with client.vms.run(name=f"{vm_name}-{i}", memory="192MB") as vm:
                results[i] = vm.exec(f"echo {i} $(hostname)", check=True).stdout.strip()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert results == {i: f"{i} {vm_name}-{i}" for i in range(5)}
    assert not [v for v in client.vms.list() if v.name.startswith(vm_name)]


def test_the_pytest_plugin_gives_each_test_a_vm(
    pytester: pytest.Pytester, client: ignitevm.Client, ignite: Ignite
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        ignitevm_state_dir = {ignite.state_dir}
        ignitevm_config = {ignite.config}
        ignitevm_settings =
            memory=256MB
        """
    )
    pytester.makepyfile(
        """
        import pytest

        def test_a_vm(vm):
            vm.exec("echo a > /root/mark", check=True)
            assert vm.running

        def test_another_vm_does_not_see_the_first(vm):
            assert vm.exec("cat /root/mark").returncode != 0

        @pytest.mark.ignitevm(fork=False, memory="192MB")
        def test_a_booted_vm(vm):
            assert vm.object.spec.memory.mib() == 192

        def test_a_failing_test_still_loses_its_vm(vm):
            assert False, "fails on purpose"
        """
    )
    before = {v.uid for v in client.vms.list()}
    snaps_before = {s.metadata.uid for s in client.snapshots.list()}
    # the plugin comes from ignitevm's pytest11 entry point; a warning (no snapshot) fails
    result = pytester.runpytest_subprocess("-W", "error::UserWarning")
    result.assert_outcomes(passed=3, failed=1)
    assert {v.uid for v in client.vms.list()} == before  # every VM and template removed
    assert {s.metadata.uid for s in client.snapshots.list()} == snaps_before
