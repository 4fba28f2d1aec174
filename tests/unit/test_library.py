"""The library (ignitevm.Client, docs/library.md) over the fake QEMU of tests/unit/conftest.py:
its public names, the VM handle's verbs, settings by keyword, errors, and threads. The real
machine is in tests/integration/test_library.py."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import ignitevm
from ignitevm import errors
from ignitevm.client import Client
from tests.unit.conftest import FakeHost


@pytest.fixture
def client(fake_host: FakeHost) -> Client:
    return Client._from_services(fake_host.svc)


def test_the_public_names_are_exactly_all_and_documented() -> None:
    assert sorted(ignitevm.__all__) == dir(ignitevm)
    for name in ignitevm.__all__:
        value = getattr(ignitevm, name)
        if name != "__version__":
            assert inspect.getdoc(value), f"ignitevm.{name} has no docstring"
    public = [n for n, _ in inspect.getmembers(ignitevm.Client) if not n.startswith("_")]
    for name in public:
        assert inspect.getdoc(getattr(ignitevm.Client, name)), f"Client.{name}"
    for cls in (ignitevm.VM, ignitevm.client.VMs, ignitevm.client.Images):
        for name, member in inspect.getmembers(cls):
            if not name.startswith("_") and callable(member):
                assert inspect.getdoc(member), f"{cls.__name__}.{name} has no docstring"
    with pytest.raises(AttributeError):
        _ = ignitevm.Store  # type: ignore[attr-defined]


def test_import_is_cheap() -> None:
    """`import ignitevm` loads neither pydantic nor the rest of the package."""
    code = (
        "import sys, ignitevm; "
        "print(sorted(m for m in sys.modules if m.startswith(('ignitevm', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ignitevm']"


def test_run_exec_stop_and_the_with_block_removes(client: Client) -> None:
    with client.vms.run("img", name="web", kernel="kern", memory="256MB") as vm:
        assert vm.running and vm.state == "running" and vm.name == "web"
        assert vm.object.spec.memory.mib() == 256
        result = vm.exec("echo hello")
        assert (result.returncode, result.stdout, result.ok) == (0, "hello\n", True)
        chunks: list[bytes] = []
        vm.exec(["echo", "a b"], on_stdout=chunks.append)  # words are quoted for the shell
        assert chunks == [b"a b\n"]
        assert [v.name for v in client.vms.list()] == ["web"]
        assert client.vms.get("web").uid == vm.uid
        vm.stop()
        assert vm.state == "stopped" and not client.vms.list(all=False)
        vm.start()
        vm.pause()
        assert vm.state == "paused"
        vm.unpause()
    assert client.vms.list() == []


def test_the_with_block_removes_the_vm_when_the_body_raises(client: Client) -> None:
    with pytest.raises(RuntimeError, match="boom"), client.vms.run("img", kernel="kern"):
        raise RuntimeError("boom")
    assert client.vms.list() == []


def test_settings_are_the_manifests_and_errors_are_typed(client: Client) -> None:
    vm = client.vms.create("img", kernel="kern", name="a", cpus=2, labels={"env": "test"},
                           ports=["18080:80"], network_plugin="user")  # fmt: skip
    assert vm.object.spec.cpus == 2 and vm.object.metadata.labels == {"env": "test"}
    with pytest.raises(errors.ValidationError, match="unknown VM setting 'memroy'"):
        client.vms.create("img", memroy="1GB")
    with pytest.raises(errors.AlreadyExistsError, match="already exists"):
        client.vms.create("img", kernel="kern", name="a")
    with pytest.raises(errors.NotFoundError):
        client.vms.get("nope")
    with pytest.raises(errors.ValidationError, match="--cpus"):
        client.vms.create("img", kernel="kern", cpus=1000)
    with pytest.raises(errors.InUseError):
        client.images.remove("img")
    assert [i.metadata.name for i in client.images.list()] == ["img"]
    assert client.kernels.get("kern").metadata.name == "kern"
    vm.remove()
    vm.remove()  # gone already: no error


def test_check_raises_guest_command_error(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from ignitevm.ops import guestexec

    with client.vms.run("img", kernel="kern") as vm:

        def failing(*args: object, on_stdout: object, on_stderr: object, **kw: object) -> int:
            on_stderr(b"no such file\n")  # type: ignore[operator]
            return 2

        monkeypatch.setattr(guestexec, "agent_exec", failing)
        assert vm.exec("cat /nope").returncode == 2
        with pytest.raises(errors.GuestCommandError) as err:
            vm.exec("cat /nope", check=True)
        assert err.value.returncode == 2 and err.value.stderr == "no such file\n"


def test_snapshot_fork_and_run_from_a_snapshot(client: Client) -> None:
    with client.vms.run("img", kernel="kern", name="src") as vm:
        snap = vm.snapshot("warm")
        assert [s.metadata.name for s in client.snapshots.list()] == ["warm"]
        copies = vm.fork(2)
        assert [c.name for c in copies] == ["src-1", "src-2"] and all(c.running for c in copies)
        with client.vms.run(snapshot="warm", name="third") as third:
            assert third.object.status.snapshot == snap.metadata.uid
        for c in copies:
            c.remove(force=True)
        with pytest.raises(errors.InUseError):  # the source goes on over the snapshot's disk
            client.snapshots.remove("warm")
    (fork_snap,) = [s for s in client.snapshots.list() if s.metadata.name != "warm"]
    assert fork_snap.status.parent == snap.metadata.uid  # the fork's, over the source's layers
    with pytest.raises(errors.InUseError, match=fork_snap.metadata.name):
        client.snapshots.remove("warm")
    client.snapshots.remove(fork_snap.metadata.uid)
    client.snapshots.remove("warm")
    assert client.snapshots.list() == []


def test_five_threads_each_run_and_exec_their_own_vm(client: Client) -> None:
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with client.vms.run("img", kernel="kern", name=f"t{i}") as vm:
                assert vm.exec(f"echo {i}").stdout == f"{i}\n"
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert client.vms.list() == []


def test_a_client_of_its_own_state_dir(tmp_path: Path) -> None:
    c = ignitevm.Client(state_dir=tmp_path / "state")
    assert c.state_dir == tmp_path / "state" and c.vms.list() == [] and repr(c).endswith("state>")


def test_the_pytest_plugins_settings_lines() -> None:
    from ignitevm.testing import parse_settings

    assert parse_settings(["memory=256MB", "ssh=true", "ports=1:1", "ports=2:2"]) == {
        "memory": "256MB", "ssh": True, "ports": ["1:1", "2:2"]}  # fmt: skip
    with pytest.raises(errors.ValidationError, match="not KEY=VALUE"):
        parse_settings(["memory"])
