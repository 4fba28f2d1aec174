"""Harness shared by the unit tests: a Services over a temporary store, a machine and a launch
plan, and ``fake_host``: a store with an image and a kernel (dummy files) and fake
``qemu-system-x86_64`` / ``qemu-img`` binaries on PATH, so the real use cases (create, start,
stop, kill, rm, exec targets) and the real supervisor run with only the VMM faked."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ignitevm.api import Configuration, Image, Kernel, Kind, ObjectMeta
from ignitevm.api.types import ImageStatus, KernelStatus, OCIImageSource
from ignitevm.layout import ImageFiles, KernelFiles
from ignitevm.ops.services import Services
from ignitevm.spawn.plan import LaunchPlan
from ignitevm.store import Store
from ignitevm.vmm.base import Disk, MachineSpec

UID = "0123456789abcdef"

# Speaks just enough QEMU: records its arguments in vm_dir/fake-qemu-argv.json, serves QMP on
# its inherited socket (stop/cont, migration to and from an fd it was given, the block calls of a
# disk freeze), answers the guest agent (PING, IDENT, EXEC of "echo ..."), prints the boot
# marker on the serial console (stdout) unless it resumes, echoes console input, and exits on
# system_powerdown or quit. `--version` prints a QEMU version.
FAKE_QEMU = r"""
import base64, json, os, select, shlex, socket, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("QEMU emulator version 7.2.99 (fake)"); sys.exit(0)
with open("fake-qemu-argv.json", "w") as f:  # cwd: the VM's directory
    json.dump(args, f)
def fd_of(prefix):
    a = next((a for a in args if a.startswith(prefix)), None)
    return None if a is None else int(a.split("fd=")[1].split(",")[0])
srv = socket.socket(fileno=fd_of("socket,id=qmp,fd="))
agent_fd = fd_of("socket,id=agent,fd=")
agent = socket.socket(fileno=agent_fd) if agent_fd is not None else None
incoming = "-incoming" in args
if not incoming:
    print("ignitevm-init: exec /sbin/init", flush=True)
ins = [srv, sys.stdin.fileno()] + ([agent] if agent else [])
held, fdsets, state = {}, [0], {"running": not incoming, "abuf": b""}
def qmp(cmd, a, fds):
    if cmd == "getfd":
        held[a["fdname"]] = fds.pop(0)
    elif cmd == "add-fd":
        fdsets[0] += 1
        return {"fdset-id": fdsets[0], "fd": fds.pop(0)}
    elif cmd == "query-status":
        return {"running": state["running"], "status": "running" if state["running"] else "paused"}
    elif cmd == "stop":
        state["running"] = False
    elif cmd == "cont":
        state["running"] = True
    elif cmd == "migrate":
        os.write(held["state"], b"FAKE-STATE")
    elif cmd == "query-migrate":
        if os.environ.get("FAKE_QEMU_DISK_FULL"):  # the state file's disk is full
            return {"status": "failed", "error-desc": "write: No space left on device"}
        return {"status": "completed"}
    elif cmd == "query-block":
        return [{"device": "disk0", "inserted": {"node-name": "#block100"}}]
    elif cmd == "migrate-incoming":
        if os.read(held["state"], 64) != b"FAKE-STATE":
            raise ValueError("Unknown savevm section")
    return {}
def on_agent(line):
    verb, rid, *rest = line.decode().split()
    if verb == "PING":
        out = [f"PONG {rid}"]
    elif verb in ("IDENT",):
        out = [f"OK {rid}"]
    elif verb == "EXEC":
        cmd = base64.b64decode(rest[0]).decode()
        words = shlex.split(cmd)
        text = " ".join(words[1:]) + "\n" if words[:1] == ["echo"] else ""
        out = [f"O {rid} {base64.b64encode(text.encode()).decode()}"] if text else []
        out.append(f"X {rid} 0")
    else:
        out = [f"ERR {rid} unknown"]
    agent.sendall("".join(o + "\n" for o in out).encode())
while True:
    for r in select.select(ins, [], [])[0]:
        if r is srv:
            c, _ = srv.accept(); ins.append(c)
            c.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        elif r == sys.stdin.fileno():
            data = os.read(r, 4096)
            if data:
                print("echo: " + data.decode().strip(), flush=True)
        elif r is agent:
            state["abuf"] += agent.recv(65536)
            while b"\n" in state["abuf"]:
                line, state["abuf"] = state["abuf"].split(b"\n", 1)
                on_agent(line)
        else:
            data, fds, _, _ = socket.recv_fds(r, 65536, 8)
            if not data:
                ins.remove(r); continue
            for raw in data.splitlines():
                msg = json.loads(raw)
                cmd = msg["execute"]
                try:
                    reply = {"return": qmp(cmd, msg.get("arguments") or {}, fds)}
                except ValueError as exc:
                    reply = {"error": {"class": "GenericError", "desc": str(exc)}}
                r.sendall(json.dumps(reply).encode() + b"\r\n")
                if cmd in ("system_powerdown", "quit"):
                    sys.exit(0)
"""
# qemu-img create ... FILE SIZE: an empty file is enough for a VM that never reads its disk
FAKE_QEMU_IMG = "import sys; open(sys.argv[-2], 'wb').close()"


@pytest.fixture(autouse=True)
def private_runtime_dir_in_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A long VM directory puts its SSH control socket in the user's private runtime dir
    (userpaths.py): in the tests, below pytest's own temporary directory, not /tmp."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def svc(tmp_path: Path) -> Services:
    """Services over an empty store in tmp_path/state, default configuration."""
    return Services(config=Configuration(), store=Store(tmp_path / "state"))


def make_machine(vm_dir: Path, **changes: Any) -> MachineSpec:
    values: dict[str, Any] = {
        "uid": UID,
        "name": "fake",
        "vm_dir": vm_dir,
        "vcpus": 1,
        "memory_mib": 256,
        "vmlinux": vm_dir / "vmlinux",
        "initrd": vm_dir / "initrd",
        "cmdline": "console=ttyS0",
        "disks": (Disk(vm_dir / "disk.qcow2", "qcow2"), Disk(Path("/i/base.ext4"), "raw", True)),
        "mac": "02:00:00:00:00:01",
        **changes,
    }
    return MachineSpec(**values)


@pytest.fixture
def make_plan() -> Callable[..., LaunchPlan]:
    """make_plan(vm_dir, machine=dict(...), **plan fields) -> LaunchPlan."""

    def make(vm_dir: Path, machine: dict[str, Any] | None = None, **plan: Any) -> LaunchPlan:
        return LaunchPlan(make_machine(vm_dir, **(machine or {})), **plan)

    return make


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """For tests that run a supervisor in-process: it installs SIGTERM/SIGINT handlers."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_until(sock: Any, needle: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while needle not in data:
        chunk = sock.recv(4096)
        assert chunk, f"EOF before {needle!r}; got {data!r}"
        data += chunk
    return data


@dataclass
class FakeHost:
    svc: Services
    image: Image
    kernel: Kernel
    bindir: Path


def _script(path: Path, code: str) -> None:
    path.write_text(f"#!{sys.executable}\n{code}")
    path.chmod(0o755)


@pytest.fixture
def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, svc: Services) -> Iterator[FakeHost]:
    """A store with the image "img" and the kernel "kern" (dummy files), fake QEMU tools on
    PATH, network plugin "none" by default; every VM is killed and removed afterwards."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _script(bindir / "qemu-system-x86_64", FAKE_QEMU)
    _script(bindir / "qemu-img", FAKE_QEMU_IMG)
    monkeypatch.setenv("PATH", f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.delenv("IGNITE_NETWORK_PLUGIN", raising=False)
    now = datetime.now(UTC)
    image = Image(
        metadata=ObjectMeta(name="img", uid="1" * 16, created=now),
        status=ImageStatus(oci_source=OCIImageSource(id="sha256:" + "1" * 64)),
    )
    kernel = Kernel(
        metadata=ObjectMeta(name="kern", uid="2" * 16, created=now),
        status=KernelStatus(version="6.1.0", oci_source=OCIImageSource(id="sha256:" + "2" * 64)),
    )
    svc = Services(
        # the fake QEMU (a script of this venv's Python) cannot run in a jail holding only /usr
        config=Configuration.model_validate({"spec": {"networkPlugin": "none", "jail": False}}),
        store=svc.store,
    )
    for obj, files in ((image, (ImageFiles.BASE,)), (kernel, (KernelFiles.VMLINUX,
                                                               KernelFiles.INITRD))):  # fmt: skip
        svc.store.save(obj)
        for name in files:
            (svc.store.object_dir(Kind(obj.kind), obj.metadata.uid) / name).write_bytes(b"x")
    yield FakeHost(svc, image, kernel, bindir)
    from ignitevm.ops.remove import remove_vm

    for vm in svc.store.list(Kind.VM):
        remove_vm(svc, vm.metadata.uid, force=True)
