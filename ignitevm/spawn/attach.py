"""``ignite attach``: the VM's serial console on the user's terminal, Ctrl-P Ctrl-Q detaches."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

from ignitevm.errors import IgniteError
from ignitevm.layout import VMFiles
from ignitevm.vmm.qmp import connect_unix

CTRL_P = 0x10
CTRL_Q = 0x11


class DetachScanner:
    """Finds the detach sequence Ctrl-P Ctrl-Q in typed input, across reads. A Ctrl-P that is
    not followed by Ctrl-Q is passed on (as Docker does)."""

    def __init__(self) -> None:
        self._pending = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Returns (bytes to forward, detach requested)."""
        out = bytearray()
        for byte in data:
            if self._pending:
                self._pending = False
                if byte == CTRL_Q:
                    return bytes(out), True
                out.append(CTRL_P)
            if byte == CTRL_P:
                self._pending = True
            else:
                out.append(byte)
        return bytes(out), False


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put a tty into raw mode (keys go to the guest as typed) and restore it afterwards."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(vm_dir: Path, stdin_fd: int, stdout_fd: int) -> None:
    """Relay the terminal to the VM's console until Ctrl-P Ctrl-Q or the VM stops. Detaching
    never stops the VM."""
    try:
        sock = connect_unix(vm_dir / VMFiles.ATTACH_SOCKET, timeout=5.0)
    except OSError as exc:
        raise IgniteError(
            f"cannot attach to the VM in {vm_dir}: {exc.strerror or exc}",
            hint="is it running? see ignite ps",
        ) from exc
    with sock, raw_terminal(stdin_fd), contextlib.suppress(ConnectionError):
        _relay(sock, stdin_fd, stdout_fd)


def _relay(sock: socket.socket, stdin_fd: int, stdout_fd: int) -> None:
    scanner = DetachScanner()
    sock.setblocking(True)
    sock.settimeout(None)
    watch = [sock.fileno(), stdin_fd]
    while True:
        readable, _, _ = select.select(watch, [], [])
        if sock.fileno() in readable:
            data = sock.recv(65536)
            if not data:
                return  # the VM stopped
            _write_all(stdout_fd, data)
        if stdin_fd in readable:
            typed = os.read(stdin_fd, 4096)
            if not typed:  # stdin closed: stay attached to the output only
                watch.remove(stdin_fd)
                continue
            forward, detach = scanner.feed(typed)
            if forward:
                sock.sendall(forward)
            if detach:
                return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
