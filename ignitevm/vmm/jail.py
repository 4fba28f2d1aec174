"""The VMM's jail: a per-VM unprivileged uid/gid, a mount namespace whose root holds only what
the VMM needs, no capabilities, and the VM's own cgroup (docs/runtime.md "The jail").

The supervisor (root) prepares a ``JailSpec`` and runs ``enter`` in the forked child before it
execs the VMM: join the cgroup, enter or make the network namespace, make a private mount
namespace, build the new root (a tmpfs with /usr read-only, a few device nodes and the VM's
files bind-mounted at their own paths, so every path on the VMM's command line still works),
``pivot_root`` into it, drop to the VM's uid/gid (which clears every capability) and set
``no_new_privs``. Only ``os`` calls and ctypes functions loaded beforehand run in the child.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The reserved range of per-VM ids: far above login users (1000...) and the subordinate ids
# rootless containers take (/etc/subuid: 100000...); hostinfo-free so the supervisor stays lean.
JAIL_ID_BASE = 1_900_000_000
JAIL_ID_COUNT = 65_536
CLAIMS = Path("/run/ignitevm/jail")  # <id>.lock, flock'd by the supervisor of the VM using it

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
SYS_PIVOT_ROOT = 155  # x86_64
# the device nodes a VMM may open (QEMU: entropy, /dev/null for its stdio defaults)
DEVICES = ("null", "zero", "full", "random", "urandom")
_OLD_ROOT = ".old-root"


@dataclass(frozen=True)
class Bind:
    source: Path
    readonly: bool = True


@dataclass(frozen=True)
class JailSpec:
    uid: int
    gid: int
    root: Path  # an empty directory: the new root is a tmpfs mounted there, in the child only
    binds: tuple[Bind, ...]  # each appears at its own path inside the jail
    devices: tuple[str, ...] = DEVICES  # names under /dev ("kvm" when KVM is used)
    netns: Path | None = None  # join this network namespace (None: see new_netns)
    new_netns: bool = False  # a new, empty one: a VMM that gets its taps as fds needs no other
    cgroup_procs: tuple[Path, ...] = ()  # join these groups before anything else
    proc: bool = False  # a /proc showing only the jail's own processes (/proc/self/fd/N paths)


class JailError(OSError):
    """The host refused a step of the jail (the message names it)."""


def claim_id(vm_uid: str, claims: Path = CLAIMS) -> tuple[int, int] | None:
    """(id, fd of its claim) for the VM: its preferred id in the reserved range, or the next
    free one; the fd holds the claim until ``release_id``. None when the range is exhausted."""
    claims.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = int(vm_uid[:8], 16) % JAIL_ID_COUNT
    for step in range(JAIL_ID_COUNT):
        ident = JAIL_ID_BASE + (start + step) % JAIL_ID_COUNT
        fd = _try_claim(claims / f"{ident}.lock")
        if fd is not None:
            return ident, fd
    return None


def _try_claim(path: Path) -> int | None:
    """The fd of ``path`` locked by this process, or None when another holds it. A releaser
    unlinks the file before it lets go: a lock won on an unlinked file is no claim, so the
    file locked must still be the one at ``path`` (else open it again)."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # released (and unlinked) between our open and our lock: again


def release_id(ident: int, fd: int, claims: Path = CLAIMS) -> None:
    """Give the id back: its file goes (one per id ever used would pile up in /run), then
    the lock. A claim of a VMM killed with its supervisor stays until the id is claimed again."""
    (claims / f"{ident}.lock").unlink(missing_ok=True)
    os.close(fd)


class _Libc:
    def __init__(self) -> None:
        # the C library Python itself links (find_library would run ldconfig: ~20 ms)
        self.c = ctypes.CDLL(None, use_errno=True)

    def check(self, result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise JailError(err, f"jail: {what}: {os.strerror(err)}")

    def mount(self, src: str, dst: str, fstype: str | None, flags: int, data: str = "") -> None:
        result = self.c.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None,
                              flags, data.encode() if data else None)  # fmt: skip
        self.check(result, f"mount {src} on {dst}")


def preexec(spec: JailSpec) -> Callable[[], None]:
    """The function to run in the forked child (subprocess's preexec_fn). On failure it writes
    the reason to stderr (the supervisor's log) and exits 126: no VMM runs unjailed by accident."""
    libc = _Libc()  # loaded in the parent: no dlopen after fork
    parent = os.getpid()

    def run() -> None:
        try:
            _enter(spec, libc, parent)
        except BaseException as exc:  # reported on stderr, then the child exits
            os.write(2, f"{exc}\n".encode(errors="replace"))
            os._exit(126)

    return run


def _enter(spec: JailSpec, libc: _Libc, parent: int) -> None:
    for procs in spec.cgroup_procs:
        with open(procs, "w") as f:
            f.write("0\n")  # "0": the writing process itself
    if spec.netns is not None:
        fd = os.open(spec.netns, os.O_RDONLY | os.O_CLOEXEC)
        libc.check(libc.c.setns(fd, CLONE_NEWNET), f"setns {spec.netns}")
        os.close(fd)
    flags = CLONE_NEWNS | (CLONE_NEWNET if spec.new_netns and spec.netns is None else 0)
    libc.check(libc.c.unshare(flags), "unshare")
    libc.mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing here propagates to the host
    _build_root(spec, libc)
    _pivot(spec.root, libc)
    _drop(spec.uid, spec.gid, libc, parent)


def _build_root(spec: JailSpec, libc: _Libc) -> None:
    root = str(spec.root)
    libc.mount("ignitevm-jail", root, "tmpfs", MS_NOSUID, "mode=0755,size=1m,nr_inodes=4096")
    for name in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{name}"):  # merged /usr: the links into /usr/
            os.symlink(os.readlink(f"/{name}"), f"{root}/{name}")
    _bind(libc, "/usr", root + "/usr", readonly=True, directory=True)
    if spec.proc:
        os.mkdir(root + "/proc", 0o555)
        libc.mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   "hidepid=invisible")  # fmt: skip
    os.mkdir(root + "/dev", 0o755)
    for name in spec.devices:
        _bind(libc, f"/dev/{name}", f"{root}/dev/{name}", readonly=False, directory=False,
              flags=MS_NOSUID | MS_NOEXEC)  # fmt: skip
    for bind in spec.binds:
        source = str(bind.source)
        _bind(libc, source, root + source, readonly=bind.readonly,
              directory=os.path.isdir(source))  # fmt: skip
    os.mkdir(f"{root}/{_OLD_ROOT}", 0o700)  # where pivot_root puts the host's root
    # the tmpfs itself read-only from now on: the VMM writes only to what it was given
    libc.mount("none", root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def _bind(libc: _Libc, source: str, target: str, *, readonly: bool, directory: bool,
          flags: int = MS_NOSUID | MS_NODEV) -> None:  # fmt: skip
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if directory:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    libc.mount(source, target, None, MS_BIND | MS_REC)
    # bind mounts take their flags only in a remount
    libc.mount("none", target, None, MS_REMOUNT | MS_BIND | flags | (MS_RDONLY if readonly else 0))


def _pivot(root: Path, libc: _Libc) -> None:
    os.chdir(root)
    libc.check(libc.c.syscall(SYS_PIVOT_ROOT, b".", _OLD_ROOT.encode()), "pivot_root")
    os.chdir("/")
    # the host's whole tree leaves this namespace; the empty directory stays (read-only tmpfs)
    libc.check(libc.c.umount2(f"/{_OLD_ROOT}".encode(), MNT_DETACH), "umount the host's root")


def _drop(uid: int, gid: int, libc: _Libc, parent: int) -> None:
    for cap in range(64):  # the bounding set too: nothing can be gained back (EINVAL: no such)
        libc.c.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # from uid 0 to another: every capability is gone
    libc.check(libc.c.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    # set after the uid change, which clears it; the VMM dies with the supervisor (kill -9)
    libc.check(libc.c.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent() -> Callable[[], None]:
    """The preexec_fn of an unjailed VMM: SIGKILL when the supervisor dies, even by kill -9."""
    libc = _Libc()
    parent = os.getpid()

    def run() -> None:
        libc.c.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)

    return run
