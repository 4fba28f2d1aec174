"""Firecracker's HTTP API over its unix socket (docs/runtime.md "Firecracker"): the calls as
data, a client that makes one request per connection, waiting for the API to answer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignitevm.errors import IgniteError
from ignitevm.vmm.qmp import connect_unix


class FirecrackerError(IgniteError):
    """The Firecracker API refused a request or could not be reached."""


@dataclass(frozen=True)
class APICall:
    method: str
    path: str
    body: dict[str, Any] | None = None


INSTANCE_START = APICall("PUT", "/actions", {"action_type": "InstanceStart"})
CTRL_ALT_DEL = APICall("PUT", "/actions", {"action_type": "SendCtrlAltDel"})


def _connection(path: Path, timeout: float) -> Any:
    """An ``http.client.HTTPConnection`` over the unix socket. http.client is imported here:
    it pulls in the email package (~30 ms), which the supervisor of a QEMU VM never needs."""
    import http.client

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = connect_unix(path, timeout)

    return UnixHTTPConnection("localhost", timeout=timeout)


class FirecrackerClient:
    """One request per connection (Firecracker closes idle ones): ``call(APICall)``."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, call: APICall) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body or None). Raises FirecrackerError when unreachable."""
        import http.client

        conn = _connection(self.path, self.timeout)
        try:
            body = json.dumps(call.body) if call.body is not None else None
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(call.method, call.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise FirecrackerError(f"Firecracker API {self.path}: {exc}") from exc
        finally:
            conn.close()
        try:
            decoded = json.loads(data) if data.strip() else None
        except ValueError:
            decoded = data.decode(errors="replace")
        return resp.status, decoded

    def call(self, call: APICall) -> Any:
        """The response body of a successful request; FirecrackerError with Firecracker's
        ``fault_message`` otherwise."""
        status, body = self.request(call)
        if status >= 300:
            fault = body.get("fault_message") if isinstance(body, dict) else body
            raise FirecrackerError(
                f"Firecracker refused {call.method} {call.path} (HTTP {status}): {fault}",
                hint="see firecracker.log in the VM's directory",
            )
        return body

    def configure(self, calls: list[APICall]) -> None:
        for c in calls:
            self.call(c)


def wait_for_api(
    path: Path, timeout: float, alive: Callable[[], bool] | None = None
) -> FirecrackerClient:
    """A client once ``GET /`` answers. ``alive()`` (optional) returning False aborts: the
    process exited, which the caller reports."""
    deadline = time.monotonic() + timeout
    client = FirecrackerClient(path, timeout=1.0)
    while True:
        if alive is not None and not alive():
            raise FirecrackerError("Firecracker exited before its API answered")
        if path.exists():
            try:
                client.call(APICall("GET", "/"))
                return FirecrackerClient(path)
            except FirecrackerError:
                pass
        if time.monotonic() > deadline:
            raise FirecrackerError(f"Firecracker's API did not answer in {timeout:g} s")
        time.sleep(0.005)
