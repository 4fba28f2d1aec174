"""`ignite cp SRC DST`: files and directories between the host and a VM (either side
`VM:PATH`), recursive, like `docker cp`: a top-level symlink is followed (its target's content
is copied under the link's name), a pseudo-file (/proc, /sys) is copied by its content, and
what comes out of a VM is unpacked as a hostile archive (ops/copyout.py). A tar stream over
SSH: the guest needs only `tar`, no scp or sftp server (the default image's dropbear has
neither). Without `archive` (-a) the copy belongs to root in the VM and to the invoking user on
the host, without setuid/setgid bits; with it owners and those bits are kept."""

from __future__ import annotations

import io
import logging
import os
import posixpath
import shlex
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import IgniteError, NotFoundError, ValidationError
from ignitevm.ops.access import SSHTarget, connect, require_target
from ignitevm.ops.copyout import CopyError, Unpacker, describe_skipped, place
from ignitevm.ops.services import Services

log = logging.getLogger(__name__)

# a pseudo-file's stat size says nothing (0 in /proc, 4096 in /sys): read it, up to this much
MAX_PSEUDO_FILE = 16 << 20
PSEUDO_ROOTS = ("/proc/", "/sys/")


def split_vm_path(text: str) -> tuple[str, str] | None:
    """("vm", "/path") for `VM:PATH`; None for a host path (which may contain ':' after a '/')."""
    vm, sep, path = text.partition(":")
    if not sep or not vm or "/" in vm or vm.startswith("."):
        return None
    return vm, path or "."


def copy(svc: Services, src: str, dst: str, *, identity: Path | None = None,
         timeout: float = 10, archive: bool = False) -> None:  # fmt: skip
    s, d = split_vm_path(src), split_vm_path(dst)
    if (s is None) == (d is None):
        raise ValidationError(
            "ignite cp copies between the host and a VM: exactly one side must be VM:PATH",
            hint="e.g. ignite cp ./file my-vm:/root/ or ignite cp my-vm:/etc/os-release .",
        )
    if d is not None:
        target = require_target(svc, d[0], identity)
        connect(target, timeout)
        _to_vm(target, Path(src), d[1], timeout, archive)
    else:
        assert s is not None
        if posixpath.normpath(s[1]) in ("/", "//"):
            raise ValidationError("cannot copy a VM's whole root", hint="name a path below /")
        target = require_target(svc, s[0], identity)
        connect(target, timeout)
        _from_vm(target, s[1], Path(dst), timeout, archive)


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


def _to_vm(target: SSHTarget, src: Path, dest: str, timeout: float, archive: bool) -> None:
    if not src.exists():
        raise NotFoundError(f"{src} does not exist")
    # the link's own name, its target's content (docker cp -L for the top level)
    name = Path(os.path.abspath(src)).name or "root"
    real = Path(os.path.realpath(src))
    script = _UNPACK % {"dest": shlex.quote(dest), "name": shlex.quote(name)}
    argv = [*target.argv(tty=False, timeout=timeout), f"sh -c {shlex.quote(script)}"]
    child = proc.start(argv, stdin=proc.PIPE, stdout=proc.DEVNULL, stderr=proc.PIPE)
    assert child.stdin is not None and child.stderr is not None
    try:
        with tarfile.open(fileobj=child.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, real, name, archive)
    except BrokenPipeError:
        pass  # ssh or the remote tar gave up: its exit code and stderr say why
    finally:
        child.stdin.close()
    err = child.stderr.read().decode(errors="replace")
    if child.wait() != 0:
        raise IgniteError(
            f"copying {src} to {target.vm.metadata.name}:{dest} failed: {err.strip()}"
        )


def _add(tar: tarfile.TarFile, real: Path, name: str, archive: bool) -> None:
    """``real`` into the archive as ``name``; a pseudo-file with the content it reads as."""

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if not archive:  # docker cp: the copy belongs to the container's root
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
        return info

    st = real.stat()
    pseudo = str(real).startswith(PSEUDO_ROOTS) or st.st_size == 0
    if not (stat.S_ISREG(st.st_mode) and pseudo):
        tar.add(real, arcname=name, recursive=True, filter=owner)
        return
    with open(real, "rb") as f:
        data = f.read(MAX_PSEUDO_FILE + 1)
    if len(data) > MAX_PSEUDO_FILE:
        raise IgniteError(f"{real} reads as more than {MAX_PSEUDO_FILE >> 20} MiB: not copied")
    info = owner(tar.gettarinfo(str(real), arcname=name))
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# The guest resolves the path (a top-level link is followed, docker cp -L); a regular file
# whose size says nothing (a /proc or /sys pseudo-file, or stat size 0) is read into a temporary
# copy first, since tar would send stat's size of it. The host names the result, not the guest.
_PACK = """set -e
p=$(readlink -f %(src)s) && [ -e "$p" ] ||
  { echo "no such file or directory: "%(src)s >&2; exit 2; }
case "$p" in /proc/*|/sys/*) pseudo=1 ;; *) pseudo= ;; esac
if [ -f "$p" ] && { [ -n "$pseudo" ] || [ ! -s "$p" ]; }; then
  t=$(mktemp -d "${TMPDIR:-/tmp}/.ignite-cp.XXXXXX")
  trap 'rm -rf "$t"' EXIT
  cat "$p" >"$t/f"
  chmod "$(stat -c %%a "$p")" "$t/f"
  cd "$t" && tar -c -f - f
else
  cd "$(dirname "$p")" && tar -c -f - "$(basename "$p")"
fi
"""


def _from_vm(target: SSHTarget, src: str, dest: Path, timeout: float, archive: bool) -> None:
    name = posixpath.basename(posixpath.normpath(src))
    if name in ("", ".", ".."):
        raise ValidationError(f"cannot copy {src!r}: name the directory itself",
                              hint="e.g. VM:/root/dir instead of VM:/root/dir/..")  # fmt: skip
    # "./": a relative path that starts with '-' is no option to readlink
    script = _PACK % {"src": shlex.quote(src if src.startswith("/") else f"./{src}")}
    argv = [*target.argv(tty=False, timeout=timeout), f"sh -c {shlex.quote(script)}"]
    where = dest if dest.is_dir() else dest.parent
    if not where.is_dir():
        raise NotFoundError(f"{where} is not a directory")
    what = f"{target.vm.metadata.name}:{src}"
    # scratch on the destination's filesystem (renamed into place); 0700, removed whatever happens
    work = Path(tempfile.mkdtemp(prefix=".ignite-cp.", dir=where))
    try:
        child = proc.start(argv, stdin=proc.DEVNULL, stdout=proc.PIPE, stderr=proc.PIPE)
        assert child.stdout is not None and child.stderr is not None
        unpacker = Unpacker(work, name, archive=archive)
        try:
            skipped = unpacker.unpack(child.stdout)
        except (CopyError, OSError) as exc:
            child.kill()
            child.wait()
            err = child.stderr.read().decode(errors="replace").strip()
            reason = exc.message if isinstance(exc, IgniteError) else str(exc)
            hint = exc.hint if isinstance(exc, IgniteError) else None
            raise IgniteError(f"copying {what} failed: {err or reason}", hint=hint) from None
        err = child.stderr.read().decode(errors="replace").strip()
        if child.wait() != 0:
            raise IgniteError(f"copying {what} failed: {err}")
        place(work / name, dest / name if dest.is_dir() else dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if skipped:
        log.warning("%s: not copied: %s", what, describe_skipped(skipped))
