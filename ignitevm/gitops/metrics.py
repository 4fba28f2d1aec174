"""ignited's metrics in Prometheus' text format, served over HTTP from a thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ignitevm.errors import ValidationError

log = logging.getLogger(__name__)

DEFAULT_METRICS_ADDR = "127.0.0.1:9191"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ACTION_KINDS = ("create", "start", "stop", "replace", "remove")
ERROR_KINDS = ("manifest", "conflict", "source", "pass", *ACTION_KINDS)
VM_STATES = ("running", "stopped")


@dataclass
class Metrics:
    passes: int = 0
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTION_KINDS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    vms: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VM_STATES, 0))
    desired_vms: int = 0
    manifest_errors: int = 0
    skipped_documents: int = 0
    pass_seconds_sum: float = 0.0
    last_pass_seconds: float = 0.0
    last_pass_time: float = 0.0
    commit: str = ""
    commit_time: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_action(self, kind: str) -> None:
        with self._lock:
            self.actions[kind] = self.actions.get(kind, 0) + 1

    def count_error(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + n

    def record_pass(self, seconds: float, finished_at: float) -> None:
        with self._lock:
            self.passes += 1
            self.pass_seconds_sum += seconds
            self.last_pass_seconds = seconds
            self.last_pass_time = finished_at

    def record_state(
        self, *, running: int, stopped: int, desired: int, errors: int, skipped: int
    ) -> None:
        with self._lock:
            self.vms = {"running": running, "stopped": stopped}
            self.desired_vms, self.manifest_errors, self.skipped_documents = (
                desired,
                errors,
                skipped,
            )

    def record_commit(self, commit: str, commit_time: float) -> None:
        with self._lock:
            self.commit, self.commit_time = commit, commit_time

    def render(self) -> str:
        with self._lock:
            return "".join(self._lines())

    def _lines(self) -> Iterator[str]:
        commit = [(f'commit="{_escape(self.commit)}"', 1)] if self.commit else []
        table: list[tuple[str, str, str, Sequence[tuple[str, float]]]] = [
            ("ignited_reconcile_passes_total", "counter", "Reconcile passes run.",
             [("", self.passes)]),
            ("ignited_reconcile_actions_total", "counter", "Actions taken on VMs, by kind.",
             _labelled("action", self.actions)),
            ("ignited_reconcile_errors_total", "counter",
             "Errors by kind: manifest, conflict, source, pass, or the failed action.",
             _labelled("kind", self.errors)),
            ("ignited_vms", "gauge", "VMs this ignited owns, by state.",
             _labelled("state", self.vms)),
            ("ignited_desired_vms", "gauge", "VM manifests for this host.",
             [("", self.desired_vms)]),
            ("ignited_manifest_errors", "gauge",
             "Manifest documents that failed to load in the last pass.",
             [("", self.manifest_errors)]),
            ("ignited_skipped_documents", "gauge",
             "Documents of other kinds skipped in the last pass.", [("", self.skipped_documents)]),
            ("ignited_reconcile_pass_duration_seconds", "summary",
             "Time spent in reconcile passes.",
             [("_sum", self.pass_seconds_sum), ("_count", self.passes)]),
            ("ignited_last_pass_duration_seconds", "gauge", "Duration of the last pass.",
             [("", self.last_pass_seconds)]),
            ("ignited_last_pass_timestamp_seconds", "gauge",
             "When the last pass ended (Unix time).", [("", self.last_pass_time)]),
            ("ignited_last_applied_commit_info", "gauge",
             "The commit the last pass applied (gitops).", commit),
            ("ignited_last_applied_commit_timestamp_seconds", "gauge",
             "Commit time of the last applied commit (Unix time).",
             [("", self.commit_time)] if self.commit else []),
        ]  # fmt: skip
        for name, kind, help_, samples in table:
            yield f"# HELP {name} {help_}\n# TYPE {name} {kind}\n"
            for labels, value in samples:
                if labels.startswith("_"):  # a summary's _sum/_count
                    yield f"{name}{labels} {_num(value)}\n"
                elif labels:
                    yield f"{name}{{{labels}}} {_num(value)}\n"
                else:
                    yield f"{name} {_num(value)}\n"


def _labelled(label: str, values: dict[str, int]) -> list[tuple[str, float]]:
    return [(f'{label}="{_escape(k)}"', v) for k, v in sorted(values.items())]


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValidationError(
            f"--metrics-addr {addr!r} is not HOST:PORT", hint=f"e.g. {DEFAULT_METRICS_ADDR}"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


@contextmanager
def serve_metrics(metrics: Metrics, addr: str) -> Iterator[tuple[str, int] | None]:
    """Serve ``/metrics`` on ``addr`` in a daemon thread while the block runs ('' = off)."""
    if not addr:
        yield None
        return
    host, port = parse_addr(addr)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/metrics/"):
                self.send_error(404, "only /metrics is here")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ValidationError(
            f"cannot serve metrics on {addr}: {exc.strerror or exc}",
            hint="pick a free port with --metrics-addr 127.0.0.1:PORT, or --metrics-addr '' "
            "to turn metrics off",
        ) from exc
    server.daemon_threads = True
    bound = server.server_address
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics", bound[0], bound[1])
    try:
        yield str(bound[0]), int(bound[1])
    finally:
        server.shutdown()
        server.server_close()
