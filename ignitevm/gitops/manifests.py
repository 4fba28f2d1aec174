"""The desired state: VM manifests read from a directory tree (a git checkout or a plain dir).

Rules (docs/gitops.md):
- every ``*.yaml``, ``*.yml`` and ``*.json`` file below the root, nested directories included,
  hidden files and directories (``.git``) left out; several documents per file;
- documents that are not Ignite objects, and Ignite objects that are not VMs, are skipped and
  counted;
- a VM without ``metadata.uid`` gets ``uid_from_name(name)``; a VM needs a name;
- ``status.running: false`` means "created, stopped"; no status, or ``running: true``, means "run";
- with a host name, only VMs whose ``ignite.weave.works/host`` annotation equals it are wanted;
  without one, only VMs that carry no such annotation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ignitevm.api import VM, load_documents, to_dict, uid_from_name
from ignitevm.api.names import NAME_HINT, name_problem
from ignitevm.errors import IgniteError, ValidationError

log = logging.getLogger(__name__)

HOST_ANNOTATION = "ignite.weave.works/host"
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class DesiredVM:
    vm: VM  # as the manifest says (uid filled in); never handed to create as is: copy it
    source: str  # "file:line", relative to the manifest root
    file: str  # the file, relative to the manifest root
    spec_hash: str
    running: bool

    @property
    def uid(self) -> str:
        return self.vm.metadata.uid

    @property
    def name(self) -> str:
        return self.vm.metadata.name


@dataclass(frozen=True)
class ManifestError:
    file: str  # relative to the manifest root: VMs created from it are not pruned while it is bad
    message: str
    hint: str | None = None


@dataclass
class ManifestSet:
    vms: dict[str, DesiredVM] = field(default_factory=dict)  # by uid
    errors: list[ManifestError] = field(default_factory=list)
    skipped: int = 0  # documents of other kinds
    other_hosts: int = 0  # VMs meant for another host
    complete: bool = True  # False: the root itself was missing, so nothing may be pruned

    @property
    def broken_files(self) -> frozenset[str]:
        return frozenset(e.file for e in self.errors)


def spec_hash(vm: VM) -> str:
    """What a change of makes ignited replace the VM: the name and the whole spec."""
    data = {"name": vm.metadata.name, "spec": to_dict(vm)["spec"]}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def wants_running(vm: VM) -> bool:
    """No status, or a status without ``running``, or ``running: true``: run (#659, #667)."""
    if "status" not in vm.model_fields_set or "running" not in vm.status.model_fields_set:
        return True
    return vm.status.running


def is_for_host(vm: VM, host: str | None) -> bool:
    wanted = vm.metadata.annotations.get(HOST_ANNOTATION)
    return wanted == host if host else not wanted


def manifest_files(root: Path) -> list[Path]:
    """Every manifest file below ``root`` in a stable order, hidden entries left out."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(SUFFIXES)
        )
    return found


def read_manifests(root: Path, host: str | None = None) -> ManifestSet:
    """Read every VM manifest below ``root``; bad documents become errors, never exceptions."""
    result = ManifestSet()
    if not root.is_dir():
        result.complete = False
        result.errors.append(
            ManifestError(".", f"{root}: no such directory", hint="check --manifest-dir/--path")
        )
        return result
    names: dict[str, str] = {}  # name -> source, to report duplicates
    for path in manifest_files(root):
        rel = path.relative_to(root).as_posix()
        for doc in load_documents(path):
            where = rel if doc.line is None else f"{rel}:{doc.line}"
            if doc.error is not None:
                result.errors.append(_error(rel, root, doc.error))
                continue
            if doc.skipped or not isinstance(doc.obj, VM):
                result.skipped += 1
                continue
            try:
                desired = _desired(doc.obj, rel, where)
            except IgniteError as exc:
                result.errors.append(ManifestError(rel, exc.message, exc.hint))
                continue
            if not is_for_host(desired.vm, host):
                result.other_hosts += 1
                continue
            clash = result.vms.get(desired.uid) or names.get(desired.name)
            if clash is not None:
                first = clash.source if isinstance(clash, DesiredVM) else clash
                result.errors.append(
                    ManifestError(
                        rel,
                        f"{where}: VM {desired.name!r} ({desired.uid}) is also defined at {first}",
                        hint="give every VM manifest its own metadata.name and metadata.uid",
                    )
                )
                continue
            result.vms[desired.uid] = desired
            names[desired.name] = where
    return result


def _desired(vm: VM, rel: str, where: str) -> DesiredVM:
    meta = vm.metadata
    if not meta.name:
        raise ValidationError(
            f"{where}: metadata.name is missing",
            hint="ignited needs a name for every VM (the uid defaults to one derived from it)",
        )
    problem = name_problem(meta.name)
    if problem is not None:
        raise ValidationError(
            f"{where}: metadata.name: invalid VM name {meta.name!r}: {problem}", hint=NAME_HINT
        )
    if not meta.uid:
        meta.uid = uid_from_name(meta.name)
    return DesiredVM(
        vm=vm, source=where, file=rel, spec_hash=spec_hash(vm), running=wants_running(vm)
    )


def _error(rel: str, root: Path, exc: IgniteError) -> ManifestError:
    # load_documents names the file by its full path: show it relative to the manifest root
    message = exc.message.replace(f"{root}/", "", 1)
    return ManifestError(rel, message, exc.hint)
