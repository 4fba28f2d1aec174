"""Desired vs actual: the decisions of one reconcile pass, as a pure function (unit-tested).

Restart policies (ops/restart.py): a VM made by hand (no owner label) whose policy wants it
running again is restarted; nothing else is ever done to it.

Ownership: ignited labels the VMs it creates ``ignite.weave.works/owner=<owner>`` (``ignited``,
or ``ignited/<host>`` with ``--host``) and annotates them with the hash of the manifest's name and
spec. Only VMs with its own owner value are ever stopped, replaced, relabelled or removed; a
VM a person made (no label) or another ignited made is never touched, even when a manifest
names it. A change of labels or annotations alone is applied in place: nothing restarts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from ignitevm.gitops.manifests import DesiredVM, ManifestSet

# ignited marks the VMs it creates with this label; `ignite ps` shows it.
OWNER_LABEL = "ignite.weave.works/owner"
SPEC_HASH_ANNOTATION = "ignite.weave.works/gitops-spec-hash"
SOURCE_ANNOTATION = "ignite.weave.works/gitops-source"


class ActionKind(StrEnum):
    CREATE = "create"  # create (then start when the manifest wants it running)
    START = "start"
    STOP = "stop"
    REPLACE = "replace"  # remove, create, start when wanted: the spec changed
    RELABEL = "relabel"  # only labels/annotations changed: updated in place, nothing restarts
    REMOVE = "remove"  # the manifest is gone (prune)
    RESTART = "restart"  # a hand-made VM that does not run, started again by its restart policy


@dataclass(frozen=True)
class ActualVM:
    uid: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    running: bool
    # why its restart policy wants it started again (ops/restart.py), None: it does not
    restart_reason: str | None = None

    def owner(self) -> str | None:
        return self.labels.get(OWNER_LABEL)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    uid: str
    name: str
    desired: DesiredVM | None = None  # None for REMOVE and RESTART
    relabel: bool = False  # START/STOP/RELABEL: update labels and annotations first
    reason: str = ""  # RESTART: the policy and the last run

    @property
    def start_after(self) -> bool:
        return self.desired is not None and self.desired.running

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self.kind} {self.name} ({self.uid}){why}"


@dataclass(frozen=True)
class Conflict:
    uid: str
    name: str
    message: str


@dataclass
class Plan:
    removes: list[Action] = field(default_factory=list)  # run first: they free names
    actions: list[Action] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # uids that already match

    def all_actions(self) -> list[Action]:
        return [*self.removes, *self.actions]


def owner_value(host: str | None) -> str:
    return f"ignited/{host}" if host else "ignited"


def make_plan(desired: ManifestSet, actual: Iterable[ActualVM], owner: str) -> Plan:
    plan = Plan()
    by_uid = {vm.uid: vm for vm in actual}
    broken = desired.broken_files
    for vm in by_uid.values() if desired.complete else ():
        if vm.owner() != owner or vm.uid in desired.vms:
            continue
        # a VM whose manifest file fails to parse is kept until the file is fixed or deleted
        if vm.annotations.get(SOURCE_ANNOTATION, "") in broken:
            continue
        plan.removes.append(Action(ActionKind.REMOVE, vm.uid, vm.name))
    removed = {a.uid for a in plan.removes}
    names = {vm.name: vm for vm in by_uid.values() if vm.uid not in removed}
    for want in desired.vms.values():
        have = by_uid.get(want.uid)
        if have is None:
            other = names.get(want.name)
            if other is not None and other.uid != want.uid:
                plan.conflicts.append(_name_conflict(want, other))
            else:
                plan.actions.append(Action(ActionKind.CREATE, want.uid, want.name, want))
            continue
        if have.owner() != owner:
            plan.conflicts.append(_not_ours(want, have))
            continue
        kind = _decide(want, have)
        relabel = kind != ActionKind.REPLACE and desired_metadata(want, owner) != (
            have.labels,
            have.annotations,
        )
        if kind is None and relabel:
            kind = ActionKind.RELABEL
        if kind is None:
            plan.adopted.append(want.uid)
        else:
            plan.actions.append(Action(kind, want.uid, want.name, want, relabel=relabel))
    plan.actions += _restarts(by_uid.values())
    return plan


def _restarts(actual: Iterable[ActualVM]) -> list[Action]:
    """Hand-made VMs (no owner label) that their restart policy wants running again; a VM of
    an ignited is its manifest's business (a manifest that wants it running starts it)."""
    return [
        Action(ActionKind.RESTART, vm.uid, vm.name, reason=vm.restart_reason)
        for vm in actual
        if vm.owner() is None and not vm.running and vm.restart_reason
    ]


def desired_metadata(want: DesiredVM, owner: str) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) of the VM ignited keeps for ``want``: the manifest's, marked as
    ours (owner label, spec hash, source file)."""
    meta = want.vm.metadata
    labels = {**meta.labels, OWNER_LABEL: owner}
    annotations = {
        **meta.annotations,
        SPEC_HASH_ANNOTATION: want.spec_hash,
        SOURCE_ANNOTATION: want.file,
    }
    return labels, annotations


def _decide(want: DesiredVM, have: ActualVM) -> ActionKind | None:
    if have.annotations.get(SPEC_HASH_ANNOTATION) != want.spec_hash:
        return ActionKind.REPLACE
    if want.running and not have.running:
        return ActionKind.START
    if not want.running and have.running:
        return ActionKind.STOP
    return None


def _name_conflict(want: DesiredVM, other: ActualVM) -> Conflict:
    who = f"ignited ({other.owner()})" if other.owner() else "hand"
    return Conflict(
        want.uid,
        want.name,
        f"{want.source}: the name {want.name!r} is taken by VM {other.uid}, made by {who}; "
        "it is left alone",
    )


def _not_ours(want: DesiredVM, have: ActualVM) -> Conflict:
    who = f"another ignited ({have.owner()})" if have.owner() else "hand (no owner label)"
    return Conflict(
        want.uid,
        want.name,
        f"{want.source}: VM {have.name} ({have.uid}) exists but was made by {who}; "
        "it is left alone",
    )
