"""The supervisor's relay between ``vm_dir/agent.sock`` and the guest agent's port: one client
at a time (the agent answers one request at a time), the port held for the VM's whole life (a
port whose host side is not connected reads as end of file in the guest)."""

from __future__ import annotations

import contextlib
import selectors
import socket
from collections.abc import Callable

# what the guest may queue for a client that does not read, before it is disconnected
MAX_BACKLOG = 4 << 20


class AgentRelay:
    def __init__(
        self, sel: selectors.BaseSelector, port: socket.socket, listener: socket.socket
    ) -> None:
        self.sel = sel
        self.port = port
        self.listener = listener
        self.client: socket.socket | None = None
        self.to_port = bytearray()
        self.to_client = bytearray()
        port.setblocking(False)
        listener.setblocking(False)
        sel.register(port, selectors.EVENT_READ, self._on_port)
        sel.register(listener, selectors.EVENT_READ, self._accept)

    def _on_port(self, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush(self.port, self.to_port, self._on_port)
        if events & selectors.EVENT_READ:
            data = _recv(self.port)
            if data is None:  # QEMU is gone: the supervisor's loop ends with it
                self.sel.unregister(self.port)
                return
            if self.client is not None:  # nobody asked: the answer of a client that left
                self.to_client += data
                if len(self.to_client) > MAX_BACKLOG:
                    self._drop_client()
                else:
                    self._flush(self.client, self.to_client, self._on_client)

    def _accept(self, events: int) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        self.client = client
        self.to_client.clear()
        self.sel.unregister(self.listener)  # the next client waits in the backlog
        self.sel.register(client, selectors.EVENT_READ, self._on_client)

    def _on_client(self, events: int) -> None:
        assert self.client is not None
        if events & selectors.EVENT_WRITE:
            self._flush(self.client, self.to_client, self._on_client)
        if events & selectors.EVENT_READ and self.client is not None:
            data = _recv(self.client)
            if data is None:
                self._drop_client()
                return
            self.to_port += data
            self._flush(self.port, self.to_port, self._on_port)

    def _flush(self, sock: socket.socket, buf: bytearray, handler: Callable[[int], None]) -> None:
        try:
            sent = sock.send(buf) if buf else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            if sock is self.client:
                self._drop_client()
            return
        del buf[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if buf else 0)
        with contextlib.suppress(KeyError):
            self.sel.modify(sock, events, handler)

    def _drop_client(self) -> None:
        if self.client is None:
            return
        self.sel.unregister(self.client)
        self.client.close()
        self.client = None
        self.to_client.clear()
        self.sel.register(self.listener, selectors.EVENT_READ, self._accept)

    def close(self) -> None:
        self._drop_client()
        for sock in (self.listener, self.port):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(sock)
            sock.close()


def _recv(sock: socket.socket) -> bytes | None:
    """What arrived; b"" when nothing yet, None at end of file."""
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return b""
    except OSError:
        return None
    return data or None
