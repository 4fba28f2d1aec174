"""The state directory: ``<root>/{image,kernel,vm}/<uid>/metadata.json`` (see docs/internals.md).

Writes are atomic (temp file in the same directory, fsync, rename) and serialized per object by
``<dir>/.meta.lock``. Readers never lock: a rename is atomic, so they see the old or the new file.
"""

from __future__ import annotations

import builtins
import errno
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, overload

from ignitevm.api.names import is_uid
from ignitevm.api.types import Kind
from ignitevm.errors import (
    AlreadyExistsError,
    AmbiguousError,
    ConflictError,
    IgniteError,
    NotFoundError,
    ValidationError,
)
from ignitevm.layout import NAMES_LOCK
from ignitevm.store.locks import file_lock, is_locked, try_hold_lock
from ignitevm.userpaths import ROOT_STATE_DIR, default_state_dir

if TYPE_CHECKING:
    from ignitevm.api.configuration import Configuration
    from ignitevm.api.objects import Object
    from ignitevm.api.snapshot import Snapshot
    from ignitevm.api.types import VM, Image, Kernel

log = logging.getLogger(__name__)

METADATA = "metadata.json"
META_LOCK = ".meta.lock"
DEFAULT_STATE_DIR = ROOT_STATE_DIR  # root's; a user's is in userpaths.py

_HINTS = {
    Kind.VM: "see `ignite ps -a`",
    Kind.IMAGE: "see `ignite image ls`, or import it with `ignite image import`",
    Kind.KERNEL: "see `ignite kernel ls`, or import it with `ignite kernel import`",
    Kind.SNAPSHOT: "see `ignite snapshot ls`",
}

T = TypeVar("T", "VM", "Image", "Kernel", "Snapshot")
_AnyList = list["Object"] | list["VM"] | list["Image"] | list["Kernel"] | list["Snapshot"]


class Store:
    """Objects by kind and uid. ``root`` is created lazily, as are its subdirectories."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def object_dir(self, kind: Kind, uid: str) -> Path:
        if not is_uid(uid):
            raise ValidationError(f"invalid uid {uid!r}", hint="uids are 16 lower-case hex chars")
        return self.root / kind.dir / uid

    def tmp_dir(self) -> Path:
        """``<root>/tmp``: scratch space on the store's filesystem, for atomic renames; private
        (0700): imports unpack image contents there."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        _ensure_mode(path, 0o700)
        return path

    def cache_dir(self) -> Path:
        """``<root>/cache``: OCI blobs (image contents) and kernel packages; private (0700)."""
        path = self.root / "cache"
        path.mkdir(parents=True, exist_ok=True)
        _ensure_mode(path, 0o700)
        return path

    # --- reading -----------------------------------------------------------------------------

    @overload
    def list(self, kind: Literal[Kind.VM]) -> builtins.list[VM]: ...
    @overload
    def list(self, kind: Literal[Kind.IMAGE]) -> builtins.list[Image]: ...
    @overload
    def list(self, kind: Literal[Kind.KERNEL]) -> builtins.list[Kernel]: ...
    @overload
    def list(self, kind: Literal[Kind.SNAPSHOT]) -> builtins.list[Snapshot]: ...
    @overload
    def list(self, kind: Kind) -> builtins.list[Object]: ...

    def list(self, kind: Kind) -> _AnyList:
        """All readable objects of ``kind``, oldest first; unreadable ones are logged, skipped."""
        base = self.root / kind.dir
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise IgniteError(
                f"cannot read the state directory {base}: {exc.strerror}",
                hint="run as root, or point IGNITE_STATE_DIR at a directory you can read",
            ) from None
        objects: builtins.list[Object] = []
        for name in names:
            if not is_uid(name):
                continue
            obj = self._read_quietly(kind, name)
            if obj is not None:
                objects.append(obj)
        objects.sort(key=_sort_key)
        return objects

    def damaged(self, kind: Kind) -> builtins.list[str]:
        """Uids of ``kind`` directories whose object cannot be read (a damaged or missing
        metadata.json, e.g. a create killed half way): shown as such, removable by uid."""
        base = self.root / kind.dir
        try:
            names = os.listdir(base)
        except OSError:
            return []
        return sorted(n for n in names if is_uid(n) and self._read_quietly(kind, n) is None)

    @overload
    def find(self, kind: Literal[Kind.VM], query: str) -> VM | None: ...
    @overload
    def find(self, kind: Literal[Kind.IMAGE], query: str) -> Image | None: ...
    @overload
    def find(self, kind: Literal[Kind.KERNEL], query: str) -> Kernel | None: ...
    @overload
    def find(self, kind: Literal[Kind.SNAPSHOT], query: str) -> Snapshot | None: ...
    @overload
    def find(self, kind: Kind, query: str) -> Object | None: ...

    def find(self, kind: Kind, query: str) -> Object | None:
        """By exact uid, then exact name, then uid prefix; AmbiguousError if several match."""
        if not query:
            return None
        if is_uid(query):
            obj = self._read_quietly(kind, query)
            if obj is not None:
                return obj
        objects = self.list(kind)
        by_name = [o for o in objects if o.metadata.name == query]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            raise AmbiguousError(kind.dir, query, [_label(o) for o in by_name])
        by_prefix = [o for o in objects if o.metadata.uid.startswith(query.lower())]
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            raise AmbiguousError(kind.dir, query, [_label(o) for o in by_prefix])
        return None

    @overload
    def require(self, kind: Literal[Kind.VM], query: str) -> VM: ...
    @overload
    def require(self, kind: Literal[Kind.IMAGE], query: str) -> Image: ...
    @overload
    def require(self, kind: Literal[Kind.KERNEL], query: str) -> Kernel: ...
    @overload
    def require(self, kind: Literal[Kind.SNAPSHOT], query: str) -> Snapshot: ...
    @overload
    def require(self, kind: Kind, query: str) -> Object: ...

    def require(self, kind: Kind, query: str) -> Object:
        obj = self.find(kind, query)
        if obj is None:
            raise NotFoundError(f"{kind.dir} {query!r} not found", hint=_HINTS[kind])
        return obj

    def exists(self, kind: Kind, uid: str) -> bool:
        return (self.object_dir(kind, uid) / METADATA).is_file()

    def is_running(self, uid: str) -> bool:
        """True while a supervisor holds the lock on ``vm/<uid>/`` (docs/internals.md)."""
        return is_locked(self.object_dir(Kind.VM, uid))

    # --- writing -----------------------------------------------------------------------------

    @contextmanager
    def meta_lock(self, kind: Kind, uid: str, *, create: bool = True) -> Iterator[None]:
        """Serialize metadata writers of one object (``<dir>/.meta.lock``).

        Creates the object's directory unless ``create`` is false, in which case a missing object
        is a NotFoundError.
        """
        path = self.object_dir(kind, uid)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            try:
                stack.enter_context(file_lock(path / META_LOCK))
            except FileNotFoundError:
                raise NotFoundError(f"{kind.dir} {uid} not found", hint=_HINTS[kind]) from None
            yield

    @contextmanager
    def names_lock(self, kind: Kind) -> Iterator[None]:
        """Serialize the claims of names and uids of one kind (``<kind>/.names.lock``): a
        creator checks that its name is free and adds its object under it, so two creators of
        one name cannot both succeed."""
        base = self.root / kind.dir
        base.mkdir(parents=True, exist_ok=True)
        with file_lock(base / NAMES_LOCK):
            yield

    def add_staged(self, obj: Object, staged: Path) -> None:
        """Make ``staged`` (a complete object directory built elsewhere on the store's
        filesystem, e.g. in a scratch directory) the object ``obj``: its metadata is written
        into it, then the directory is renamed into place, so the object appears whole or not
        at all. ConflictError if an object with that uid exists. Call it under
        ``names_lock`` when the name must be unique."""
        kind, uid = _identity(obj)
        target = self.object_dir(kind, uid)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._write_in(staged, obj)
        try:
            os.rename(staged, target)  # fails on an existing, non-empty directory
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            raise AlreadyExistsError(f"a {kind.dir} with uid {uid} already exists") from None
        _fsync_dir(target.parent)

    def save(self, obj: Object) -> None:
        """Write ``obj`` atomically under its meta lock; creates the object's directory."""
        kind, uid = _identity(obj)
        with self.meta_lock(kind, uid):
            self._write(kind, uid, obj)

    @overload
    def update(self, kind: Literal[Kind.VM], uid: str, fn: Callable[[VM], VM]) -> VM: ...
    @overload
    def update(
        self, kind: Literal[Kind.IMAGE], uid: str, fn: Callable[[Image], Image]
    ) -> Image: ...
    @overload
    def update(
        self, kind: Literal[Kind.KERNEL], uid: str, fn: Callable[[Kernel], Kernel]
    ) -> Kernel: ...

    def update(self, kind: Kind, uid: str, fn: Callable[[T], T]) -> T:
        """Read-modify-write under the meta lock; ``fn`` may change ``obj`` in place or return a
        new one. NotFoundError if the object does not exist."""
        with self.meta_lock(kind, uid, create=False):
            current = self._read(kind, uid)
            if current is None:
                raise NotFoundError(f"{kind.dir} {uid} not found", hint=_HINTS[kind])
            new = fn(current)  # type: ignore[arg-type]
            if _identity(new) != (kind, uid):
                raise IgniteError(f"update of {kind.dir} {uid} changed its kind or uid")
            self._write(kind, uid, new)
            return new

    def delete(self, kind: Kind, uid: str) -> None:
        """Remove the object's directory; a crash never leaves half an object visible. No-op if
        it does not exist; ConflictError while a process holds the directory (a VM's
        supervisor)."""
        import shutil

        from ignitevm.store.scratch import grave_name, sweep

        path = self.object_dir(kind, uid)
        grave = self.tmp_dir() / grave_name(kind.dir, uid)
        try:
            # under the meta lock, so no update writes into the grave; the directory's own
            # lock moves with it (same inode) and marks the grave as being removed, so a
            # sweep by another process leaves it alone until this one is done or dead
            with self.meta_lock(kind, uid, create=False):
                fd = try_hold_lock(path)
                if fd is None:
                    raise ConflictError(
                        f"{kind.dir} {uid} is in use: a process holds its directory",
                        hint="stop the VM first" if kind == Kind.VM else None,
                    )
                try:
                    path.rename(grave)
                except BaseException:
                    os.close(fd)
                    raise
        except (NotFoundError, FileNotFoundError):
            return  # already gone
        try:
            shutil.rmtree(grave, ignore_errors=True)
            if grave.exists():
                log.warning("could not remove all of %s; remove it by hand", grave)
        finally:
            os.close(fd)
        sweep(self.root / "tmp")  # what deletes and imports killed earlier left

    # --- internals ---------------------------------------------------------------------------

    def _read(self, kind: Kind, uid: str) -> Object | None:
        """The object, None if it does not exist; raises IgniteError if it cannot be read."""
        from ignitevm.api.manifest import parse_object

        path = self.object_dir(kind, uid) / METADATA
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IgniteError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValidationError(f"{path}: invalid JSON: {exc}") from None
        obj = parse_object(data, str(path))
        if obj.kind != kind.value or obj.metadata.uid != uid:
            raise ValidationError(
                f"{path}: holds {obj.kind} {obj.metadata.uid!r}, expected {kind.value} {uid}"
            )
        return obj

    def _read_quietly(self, kind: Kind, uid: str) -> Object | None:
        try:
            return self._read(kind, uid)
        except IgniteError as exc:
            log.warning("skipping %s %s: %s", kind.dir, uid, exc)
            return None

    def _write(self, kind: Kind, uid: str, obj: Object) -> None:
        directory = self.object_dir(kind, uid)
        directory.mkdir(parents=True, exist_ok=True)
        self._write_in(directory, obj)

    def _write_in(self, directory: Path, obj: Object) -> None:
        from ignitevm.api.manifest import dump_object

        data = dump_object(obj, "json").encode()
        # a unique name in the same directory, so the rename is atomic (no tempfile: start-up cost)
        tmp = directory / f".{METADATA}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # whatever the umask
            os.replace(tmp, directory / METADATA)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)


def resolve_state_dir(config: Configuration | None = None) -> Path:
    """``IGNITE_STATE_DIR``, then the config's ``spec.stateDir``, then /var/lib/firecracker
    (root) or ``$XDG_DATA_HOME/ignitevm`` (anyone else: userpaths.py)."""
    env = os.environ.get("IGNITE_STATE_DIR")
    if env:
        return Path(env)
    if config is not None and config.spec.state_dir:
        return Path(config.spec.state_dir)
    return default_state_dir()


def _identity(obj: Object) -> tuple[Kind, str]:
    kind = Kind(obj.kind)
    uid = obj.metadata.uid
    if not is_uid(uid):
        raise ValidationError(
            f"cannot store {kind.dir} {obj.metadata.name!r}: its uid {uid!r} is not 16 hex chars",
            hint="give it a uid with ignitevm.api.new_uid()",
        )
    return kind, uid


def _label(obj: Object) -> str:
    return f"{obj.metadata.name} ({obj.metadata.uid})"


def _sort_key(obj: Object) -> tuple[float, str, str]:
    created = obj.metadata.created
    return (created.timestamp() if created else 0.0, obj.metadata.name, obj.metadata.uid)


def _ensure_mode(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` unless it has it (a directory made by an older version, or
    under another umask); only its owner may, so others leave it as it is."""
    st = path.stat()
    if st.st_mode & 0o7777 != mode and st.st_uid == os.geteuid():
        os.chmod(path, mode)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
