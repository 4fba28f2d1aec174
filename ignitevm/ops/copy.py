"""`ignite cp SRC DST`: files and directories between the host and a VM (either side
`VM:PATH`), recursive, modes kept. A tar stream over SSH: the guest needs only `tar`, no
scp or sftp server (the default image's dropbear has neither)."""

from __future__ import annotations

import posixpath
import shlex
import shutil
import tarfile
import tempfile
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import IgniteError, NotFoundError, ValidationError
from ignitevm.ops.access import SSHTarget, connect, require_target
from ignitevm.ops.services import Services
from ignitevm.untar import extract_safely


def split_vm_path(text: str) -> tuple[str, str] | None:
    """("vm", "/path") for `VM:PATH`; None for a host path (which may contain ':' after a '/')."""
    vm, sep, path = text.partition(":")
    if not sep or not vm or "/" in vm or vm.startswith("."):
        return None
    return vm, path or "."


def copy(svc: Services, src: str, dst: str, *, identity: Path | None = None,
         timeout: float = 10) -> None:  # fmt: skip
    s, d = split_vm_path(src), split_vm_path(dst)
    if (s is None) == (d is None):
        raise ValidationError(
            "ignite cp copies between the host and a VM: exactly one side must be VM:PATH",
            hint="e.g. ignite cp ./file my-vm:/root/ or ignite cp my-vm:/etc/os-release .",
        )
    if d is not None:
        target = require_target(svc, d[0], identity)
        connect(target, timeout)
        _to_vm(target, Path(src), d[1], timeout)
    else:
        assert s is not None
        target = require_target(svc, s[0], identity)
        connect(target, timeout)
        _from_vm(target, s[1], Path(dst), timeout)


_UNPACK = """set -e
t=$(mktemp -d "${TMPDIR:-/tmp}/.ignite-cp.XXXXXX")
trap 'rm -rf "$t"' EXIT
tar -x -p -f - -C "$t"
dest=%(dest)s
if [ -d "$dest" ]; then
  cp -a "$t/"%(name)s "$dest/"
else
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest"
  cp -a "$t/"%(name)s "$dest"
fi
"""


def _to_vm(target: SSHTarget, src: Path, dest: str, timeout: float) -> None:
    if not src.exists():
        raise NotFoundError(f"{src} does not exist")
    name = src.resolve().name or "root"
    script = _UNPACK % {"dest": shlex.quote(dest), "name": shlex.quote(name)}
    argv = [*target.argv(tty=False, timeout=timeout), f"sh -c {shlex.quote(script)}"]
    child = proc.start(argv, stdin=proc.PIPE, stdout=proc.DEVNULL, stderr=proc.PIPE)
    assert child.stdin is not None and child.stderr is not None
    try:
        with tarfile.open(fileobj=child.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.add(src, arcname=name, recursive=True)
    except BrokenPipeError:
        pass  # ssh or the remote tar gave up: its exit code and stderr say why
    finally:
        child.stdin.close()
    err = child.stderr.read().decode(errors="replace")
    if child.wait() != 0:
        raise IgniteError(
            f"copying {src} to {target.vm.metadata.name}:{dest} failed: {err.strip()}"
        )


def _put(got: Path, final: Path) -> None:
    """Move what was copied into place: a directory merges into an existing one (as cp -a and
    docker cp do), a file replaces a file."""
    if got.is_dir() and final.is_dir() and not final.is_symlink():
        shutil.copytree(got, final, symlinks=True, dirs_exist_ok=True)
    elif final.is_dir() and not final.is_symlink():
        raise IgniteError(f"cannot overwrite directory {final} with a file")
    else:
        got.replace(final)


def _from_vm(target: SSHTarget, src: str, dest: Path, timeout: float) -> None:
    parent, name = posixpath.split(posixpath.normpath(src))
    remote = f"cd {shlex.quote(parent or '/')} && tar -c -f - {shlex.quote(name)}"
    argv = [*target.argv(tty=False, timeout=timeout), remote]
    where = dest if dest.is_dir() else dest.parent
    if not where.is_dir():
        raise NotFoundError(f"{where} is not a directory")
    work = Path(tempfile.mkdtemp(prefix=".ignite-cp.", dir=where))
    try:
        child = proc.start(argv, stdin=proc.DEVNULL, stdout=proc.PIPE, stderr=proc.PIPE)
        assert child.stdout is not None and child.stderr is not None
        try:
            with tarfile.open(fileobj=child.stdout, mode="r|") as tar:
                extract_safely(tar, work)  # no path out of work, no device node
        except tarfile.TarError as exc:
            child.kill()
            err = child.stderr.read().decode(errors="replace").strip()
            raise IgniteError(
                f"copying {target.vm.metadata.name}:{src} failed: {err or exc}"
            ) from None
        err = child.stderr.read().decode(errors="replace").strip()
        if child.wait() != 0:
            raise IgniteError(f"copying {target.vm.metadata.name}:{src} failed: {err}")
        _put(work / name, dest / name if dest.is_dir() else dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
