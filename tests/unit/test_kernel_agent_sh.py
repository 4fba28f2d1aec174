"""The guest agent (ignitevm/kernel/agent.sh) under the host's busybox: its protocol end to end
through ``serve`` and ``vmm/agent.py``'s client, with ``nsenter`` replaced by a script that runs
the command on the host in a scratch directory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest

from ignitevm.vmm.agent import AgentError, AgentSession, Output

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="needs busybox")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentSession]:
    """The agent serving one end of a socket pair; the session on the other."""
    assert BUSYBOX is not None
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    for applet in ("sh", "base64", "dd", "cat", "rm", "mkfifo", "printf", "head",
                   "sleep", "mkdir", "usleep", "setsid"):  # fmt: skip
        (agent_dir / applet).symlink_to(BUSYBOX)
    # nsenter -t 1 -m ... CMD: the host's namespaces instead of the VM's
    (agent_dir / "nsenter").write_text(
        '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do [ "$1" = -t ] && shift; shift; done\nexec "$@"\n'
    )
    (agent_dir / "nsenter").chmod(0o755)
    script = Path(str(files("ignitevm.kernel").joinpath("agent.sh")))
    host, guest = socket.socketpair()
    env = {"PATH": str(agent_dir), "IGNITEVM_AGENT_LIB": "1", "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [BUSYBOX, "sh", "-c", f'. "{script}"; AGENT_DIR={agent_dir}; INIT_ROOT={tmp_path}/root; '
         "exec 3<&0; serve"],
        stdin=guest.fileno(), env=env, cwd=tmp_path,
    )  # fmt: skip
    guest.close()
    (tmp_path / "root").mkdir()
    session = AgentSession(host)
    try:
        yield session
    finally:
        session.close()
        proc.kill()
        proc.wait()


def _run(session: AgentSession, command: str, timeout: float = 10.0) -> tuple[int, bytes, bytes]:
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def keep(chunk: Output) -> None:
        out[chunk.stream] += chunk.data

    code = session.exec(command, timeout=timeout, on_output=keep)
    return code, out["stdout"], out["stderr"]


def test_ping_and_exec_with_streams_and_exit_code(agent: AgentSession) -> None:
    agent.ping(5.0)
    assert _run(agent, "echo out; echo err >&2; exit 3") == (3, b"out\n", b"err\n")


def test_binary_output_larger_than_a_chunk(agent: AgentSession) -> None:
    code, out, _ = _run(agent, "head -c 100000 /dev/zero; printf '\\377\\000end'")
    assert code == 0 and out == b"\0" * 100000 + b"\xff\0end"


def test_a_background_process_holding_the_output_does_not_hold_the_agent(
    agent: AgentSession,
) -> None:
    """`CMD &` that keeps stdout open: the exec ends with CMD's shell, as with ssh, and the
    agent answers the next request."""
    started = time.monotonic()
    code, out, _ = _run(agent, "echo before; (sleep 30) & echo after")
    assert code == 0 and out == b"before\nafter\n"
    assert time.monotonic() - started < 5
    assert _run(agent, "echo next")[1] == b"next\n"


def test_an_exec_before_the_switch_to_the_system_root_waits_for_it(
    agent: AgentSession, tmp_path: Path
) -> None:
    # `ignite run --wait=false` then exec: PID 1 still in the initramfs (it has /agent.sh)
    marker = tmp_path / "root" / "agent.sh"
    marker.write_text("")
    started = time.monotonic()
    timer = threading.Timer(0.6, marker.unlink)
    timer.start()
    try:
        assert _run(agent, "echo up") == (0, b"up\n", b"")
        assert time.monotonic() - started >= 0.5
    finally:
        timer.join()


def test_a_command_past_its_timeout_is_killed_with_what_it_started(
    agent: AgentSession, tmp_path: Path
) -> None:
    from ignitevm.vmm.agent import AgentTimeout

    started = time.monotonic()
    with pytest.raises(AgentTimeout):
        agent.exec(f"sleep 30 & echo $! > {tmp_path}/child; sleep 30", timeout=1)
    # the agent is free again at once (the command and its child were killed)
    assert _run(agent, "echo next", timeout=5) == (0, b"next\n", b"")
    assert time.monotonic() - started < 5
    child = int((tmp_path / "child").read_text())
    time.sleep(0.2)
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"  # gone, or a zombie


def test_stdin_reaches_the_command(agent: AgentSession) -> None:
    out: list[bytes] = []
    code = agent.exec("cat", stdin=b"given\n", timeout=10,
                      on_output=lambda c: out.append(c.data))  # fmt: skip
    assert code == 0 and b"".join(out) == b"given\n"


def test_an_unknown_verb_is_refused_and_answers_carry_ids(agent: AgentSession) -> None:
    agent.sock.sendall(b"BOGUS 1\n")
    agent.ping(5.0)  # the ERR for id 1 is skipped: the ping's own answer is found by its id


def test_a_hostile_overlong_line_is_refused() -> None:
    host, guest = socket.socketpair()
    with host, guest:
        guest.sendall(b"PONG 1 " + b"x" * (1 << 17))
        with pytest.raises(AgentError, match="overlong"):
            AgentSession(host).ping(2.0)


def test_a_hostile_exit_code_and_data_are_bounded() -> None:
    host, guest = socket.socketpair()
    with host, guest:
        session = AgentSession(host)
        rid = f"{session._ids + 1:x}"
        guest.sendall(f"X {rid} 99999\n".encode())
        assert session.exec("true", timeout=2) == 255
        rid = f"{session._ids + 1:x}"
        guest.sendall(f"O {rid} !!notbase64\n".encode())
        with pytest.raises(AgentError, match="malformed"):
            session.exec("true", timeout=2, on_output=lambda c: None)
