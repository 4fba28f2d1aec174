"""Where things live for the user running ignite (docs/architecture.md "State and truth").

Root keeps Ignite's paths (``/var/lib/firecracker``, ``/etc/ignite/config.yaml``,
``/etc/firecracker/manifests``). Anyone else gets the XDG base directories, so two users of one
machine never share a VM, an image, a lock or a socket: ``$XDG_DATA_HOME/ignitevm``
(``~/.local/share/ignitevm``), ``$XDG_CONFIG_HOME/ignite/config.yaml``
(``~/.config/ignite/config.yaml``) and ``$XDG_CONFIG_HOME/ignite/manifests``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from ignitevm.errors import IgniteError

ROOT_STATE_DIR = Path("/var/lib/firecracker")
ROOT_CONFIG = Path("/etc/ignite/config.yaml")
ROOT_MANIFEST_DIR = Path("/etc/firecracker/manifests")


def is_root() -> bool:
    return os.geteuid() == 0


def _xdg(variable: str, default: str) -> Path:
    # the XDG Base Directory spec: unset, empty or relative values are ignored
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / default


def default_state_dir() -> Path:
    return ROOT_STATE_DIR if is_root() else _xdg("XDG_DATA_HOME", ".local/share") / "ignitevm"


def default_config_path() -> Path:
    """The configuration read when ``--ignite-config`` is not given. A user does not read
    /etc/ignite/config.yaml: it configures root's VMs (their state dir, the cni network)."""
    if is_root():
        return ROOT_CONFIG
    return _xdg("XDG_CONFIG_HOME", ".config") / "ignite" / "config.yaml"


def default_manifest_dir() -> Path:
    if is_root():
        return ROOT_MANIFEST_DIR
    return _xdg("XDG_CONFIG_HOME", ".config") / "ignite" / "manifests"


def private_runtime_dir() -> Path:
    """A directory only this user can enter, for sockets whose path must be short:
    ``$XDG_RUNTIME_DIR/ignitevm`` or ``$TMPDIR/ignitevm-<uid>`` (``/tmp``). A name another
    user made first (or a symlink) is refused, never used: a socket there could be theirs."""
    uid = os.geteuid()
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    path = (
        Path(base) / "ignitevm"
        if os.path.isabs(base) and _private(Path(base), uid)
        else Path(os.environ.get("TMPDIR") or "/tmp") / f"ignitevm-{uid}"
    )
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    if not _private(path, uid):
        raise IgniteError(
            f"{path} is not a private directory of this user (uid {uid})",
            hint=f"remove {path}: another user may have created it; ignite makes it again",
        )
    return path


def _private(path: Path, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    mode = st.st_mode
    return stat.S_ISDIR(mode) and st.st_uid == uid and not mode & 0o077
