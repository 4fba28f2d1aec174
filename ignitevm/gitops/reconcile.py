"""One reconcile pass: plan (plan.py), then act in parallel on a bounded pool, with back-off for
what keeps failing. The VM operations come through the ``VMOps`` interface (opsbridge.py calls
ignitevm.ops the way the CLI does; unit tests pass a fake)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ignitevm.api import VM, ObjectMeta
from ignitevm.errors import IgniteError
from ignitevm.gitops.manifests import DesiredVM, ManifestSet
from ignitevm.gitops.metrics import Metrics
from ignitevm.gitops.plan import (
    Action,
    ActionKind,
    ActualVM,
    desired_metadata,
    make_plan,
)

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2  # the reference machine has 2 cores; every boot under TCG wants one


class VMOps(Protocol):
    def list(self) -> list[ActualVM]: ...
    def create(self, vm: VM) -> None: ...
    def start(self, uid: str) -> None: ...
    def stop(self, uid: str) -> None: ...
    def remove(self, uid: str) -> None: ...
    def restart(self, uid: str) -> None: ...
    def set_metadata(
        self, uid: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> None: ...


@dataclass
class Backoff:
    """Per (uid, spec hash): after a failure, wait base * 2^(n-1) (capped) before retrying.
    A new spec hash (a new commit) is a new key: it is tried at once."""

    base: float = 10.0
    cap: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _state: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ready(self, key: tuple[str, str]) -> bool:
        with self._lock:
            entry = self._state.get(key)
        return entry is None or self.clock() >= entry[1]

    def failed(self, key: tuple[str, str]) -> float:
        with self._lock:
            count = self._state.get(key, (0, 0.0))[0] + 1
            delay = min(self.cap, self.base * float(2 ** (count - 1)))
            self._state[key] = (count, self.clock() + delay)
        return delay

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._state.pop(key, None)

    def keep_only(self, keys: set[tuple[str, str]]) -> None:
        with self._lock:
            for key in set(self._state) - keys:
                del self._state[key]


@dataclass(frozen=True)
class Outcome:
    action: Action
    error: IgniteError | None = None
    retry_in: float = 0.0


@dataclass
class PassResult:
    outcomes: list[Outcome] = field(default_factory=list)
    deferred: list[Action] = field(default_factory=list)  # waiting out a back-off
    adopted: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failed and not self.deferred


def vm_to_create(want: DesiredVM, owner: str) -> VM:
    """A fresh VM object from the manifest: its name, uid, labels, annotations and spec, marked
    as ours (owner label, spec hash, source file); the manifest's status is what it wants, not
    what is, so it is not copied."""
    labels, annotations = desired_metadata(want, owner)
    meta = want.vm.metadata
    return VM(
        metadata=ObjectMeta(name=meta.name, uid=meta.uid, labels=labels, annotations=annotations),
        spec=want.vm.spec.model_copy(deep=True),
    )


class Reconciler:
    def __init__(
        self,
        ops: VMOps,
        owner: str,
        metrics: Metrics | None = None,
        *,
        workers: int = DEFAULT_WORKERS,
        backoff: Backoff | None = None,
    ) -> None:
        self.ops = ops
        self.owner = owner
        self.metrics = metrics or Metrics()
        self.workers = max(1, workers)
        self.backoff = backoff or Backoff()
        self._reported: set[str] = set()  # errors already logged: repeat them at debug level

    def run_pass(self, desired: ManifestSet) -> PassResult:
        started = time.monotonic()
        result = PassResult()
        self._report_manifest_errors(desired, result)
        actual = self.ops.list()
        plan = make_plan(desired, actual, self.owner)
        result.adopted = len(plan.adopted)
        for conflict in plan.conflicts:
            result.errors.append(conflict.message)
            self._report("conflict", conflict.message, None)
        live_keys = {_key(a) for a in plan.all_actions()}
        self.backoff.keep_only(live_keys)
        for batch in (plan.removes, plan.actions):
            todo = [a for a in batch if self.backoff.ready(_key(a))]
            result.deferred += [a for a in batch if a not in todo]
            result.outcomes += self._run_all(todo)
        for action in result.deferred:
            log.debug("%s: waiting out the back-off after a failure", action)
        if result.outcomes:
            actual = self.ops.list()
        self._record_state(desired, actual)
        # forget errors that went away, so they are logged (and counted) again if they return
        self._reported &= set(result.errors)
        result.seconds = time.monotonic() - started
        self.metrics.record_pass(result.seconds, time.time())
        self._log_summary(result, desired)
        return result

    def _run_all(self, actions: Sequence[Action]) -> list[Outcome]:
        if len(actions) <= 1 or self.workers == 1:
            return [self._run(a) for a in actions]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile") as pool:
            return list(pool.map(self._run, actions))

    def _run(self, action: Action) -> Outcome:
        log.info("%s", action)
        try:
            self._apply(action)
        except IgniteError as exc:
            return self._failed(action, exc)
        except Exception as exc:  # one VM's bug must not take the daemon down
            log.debug("%s failed", action, exc_info=True)
            return self._failed(action, IgniteError(f"{type(exc).__name__}: {exc}"))
        self.backoff.succeeded(_key(action))
        self.metrics.count_action(str(action.kind))
        return Outcome(action)

    def _apply(self, action: Action) -> None:
        kind, uid = action.kind, action.uid
        if action.relabel:
            assert action.desired is not None
            self.ops.set_metadata(uid, *desired_metadata(action.desired, self.owner))
        if kind in (ActionKind.REMOVE, ActionKind.REPLACE):
            self.ops.remove(uid)
        if kind == ActionKind.STOP:
            self.ops.stop(uid)
        if kind in (ActionKind.CREATE, ActionKind.REPLACE):
            assert action.desired is not None
            self.ops.create(vm_to_create(action.desired, self.owner))
        if kind == ActionKind.RESTART:
            self.ops.restart(uid)
        if kind == ActionKind.START:
            self.ops.start(uid)
        elif kind in (ActionKind.CREATE, ActionKind.REPLACE) and action.start_after:
            self.ops.start(uid)
            self.metrics.count_action(str(ActionKind.START))

    def _failed(self, action: Action, exc: IgniteError) -> Outcome:
        delay = self.backoff.failed(_key(action))
        self.metrics.count_error(str(action.kind))
        where = action.desired.source + ": " if action.desired else ""
        log.error("%s failed: %s%s (retry in %.0f s)", action, where, exc.message, delay)
        if exc.hint:
            log.error("hint: %s", exc.hint)
        return Outcome(action, exc, delay)

    def _report_manifest_errors(self, desired: ManifestSet, result: PassResult) -> None:
        for error in desired.errors:
            result.errors.append(error.message)
            self._report("manifest", error.message, error.hint)

    def _report(self, kind: str, message: str, hint: str | None) -> None:
        """Log a manifest error or conflict when it first appears; count it then."""
        if message in self._reported:
            log.debug("still: %s", message)
            return
        self._reported.add(message)
        self.metrics.count_error(kind)
        log.error("%s", message)
        if hint:
            log.error("hint: %s", hint)

    def _record_state(self, desired: ManifestSet, actual: list[ActualVM]) -> None:
        ours = [vm for vm in actual if vm.owner() == self.owner]
        running = sum(vm.running for vm in ours)
        self.metrics.record_state(
            running=running,
            stopped=len(ours) - running,
            desired=len(desired.vms),
            errors=len(desired.errors),
            skipped=desired.skipped,
        )

    def _log_summary(self, result: PassResult, desired: ManifestSet) -> None:
        done = len(result.outcomes) - len(result.failed)
        log.info(
            "pass: %d desired, %d in sync, %d actions done, %d failed, %d deferred, "
            "%d errors, %d skipped documents (%.2f s)",
            len(desired.vms), result.adopted, done, len(result.failed), len(result.deferred),
            len(result.errors), desired.skipped, result.seconds,
        )  # fmt: skip


def _key(action: Action) -> tuple[str, str]:
    if action.desired is not None:
        return (action.uid, action.desired.spec_hash)
    return (action.uid, str(action.kind))  # remove, restart
