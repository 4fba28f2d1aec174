"""The loop: sync the source, read the manifests, reconcile; again on a change or every interval.

A directory is polled for changes every POLL seconds (stat only) and reconciled at once when it
changes; a git repository is fetched every interval. Either way a full pass also runs every
interval without a change, so drift (a VM stopped or removed by hand) is corrected.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ignitevm.errors import ConflictError, IgniteError
from ignitevm.gitops.manifests import read_manifests
from ignitevm.gitops.reconcile import PassResult, Reconciler
from ignitevm.gitops.source import GitSource, ManifestSource, Snapshot, SourceError
from ignitevm.layout import IGNITED_DIR

log = logging.getLogger(__name__)

POLL = 1.0


@dataclass
class Daemon:
    source: ManifestSource
    reconciler: Reconciler
    host: str | None = None
    interval: float = 30.0
    stop_event: threading.Event | None = None
    _snapshot: Snapshot | None = None

    def __post_init__(self) -> None:
        if self.stop_event is None:
            self.stop_event = threading.Event()

    def run_once(self) -> PassResult:
        """One pass; a source that cannot be read at all is an error (SourceError)."""
        snapshot = self._sync()
        if snapshot is None:
            raise SourceError("no manifests to reconcile: the source could not be read")
        return self._pass(snapshot)

    def run_forever(self) -> None:
        assert self.stop_event is not None
        stop = self.stop_event
        last_pass = 0.0
        poll = POLL if not isinstance(self.source, GitSource) else self.interval
        next_sync = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_sync:
                next_sync = now + poll
                snapshot = self._sync()
                due = now - last_pass >= self.interval or last_pass == 0.0
                if snapshot is not None and (snapshot.changed or due):
                    self._safe_pass(snapshot)
                    last_pass = time.monotonic()
            stop.wait(max(0.05, min(next_sync, last_pass + self.interval) - time.monotonic()))

    def _sync(self) -> Snapshot | None:
        """The newest snapshot, else the last good one (an unreachable repository keeps it)."""
        try:
            snapshot = self.source.sync()
        except SourceError as exc:
            self.reconciler.metrics.count_error("source")
            log.error("%s", exc.message)
            if exc.hint:
                log.error("hint: %s", exc.hint)
            if self._snapshot is None:
                # a restarted ignited: the checkout its previous run left, if there is one
                self._snapshot = self.source.last_good()
                if self._snapshot is not None:
                    log.warning(
                        "using the checkout of the previous run (%s) until the source answers",
                        self._snapshot.revision[:12],
                    )
                    return self._snapshot
                return None
            return Snapshot(
                self._snapshot.root, self._snapshot.revision, self._snapshot.revision_time, False
            )
        self._snapshot = snapshot
        return snapshot

    def _safe_pass(self, snapshot: Snapshot) -> None:
        try:
            self._pass(snapshot)
        except IgniteError as exc:  # e.g. the store cannot be read: try again next time
            self.reconciler.metrics.count_error("pass")
            log.error("reconcile pass failed: %s", exc.message)
            if exc.hint:
                log.error("hint: %s", exc.hint)

    def _pass(self, snapshot: Snapshot) -> PassResult:
        desired = read_manifests(snapshot.root, self.host)
        result = self.reconciler.run_pass(desired)
        if snapshot.revision:
            self.reconciler.metrics.record_commit(snapshot.revision, snapshot.revision_time)
        return result


def hold_owner_lock(state_dir: Path, owner: str) -> int:
    """One ignited per owner value (``ignited``, ``ignited/<host>``) and state directory: two
    would create the same VMs at once, and each prune the other's. The lock
    (``<state>/ignited/<key>.lock``, flock) goes with the process however it ends; the fd is
    returned to keep open. ConflictError at once while another ignited holds it."""
    from ignitevm.store.locks import try_file_lock

    directory = state_dir / IGNITED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{hashlib.sha256(owner.encode()).hexdigest()[:16]}.lock"
    fd = try_file_lock(path)
    if fd is None:
        holder = _read_holder(path)
        raise ConflictError(
            f"another ignited{holder} reconciles the VMs of owner {owner!r} in {state_dir}",
            hint="stop it first, or give this one another --host",
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {owner}\n".encode())
    return fd


def _read_holder(path: Path) -> str:
    try:
        pid = path.read_text().split()[0]
    except (OSError, IndexError):
        return ""
    return f" (pid {pid})"
