"""Where a user's VMs live (ignitevm/userpaths.py): root keeps Ignite's paths, anyone else the
XDG base directories; sockets in a directory no other user can have made; the network a user
gets by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ignitevm import userpaths
from ignitevm.api import Configuration
from ignitevm.errors import IgniteError
from ignitevm.ops.services import Services
from ignitevm.spawn.sshmux import control_path
from ignitevm.store import Store


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Not root, with HOME in tmp_path and no XDG variables."""
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "IGNITE_NETWORK_PLUGIN"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def test_root_keeps_ignites_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("XDG_DATA_HOME", "/somewhere")
    assert userpaths.default_state_dir() == Path("/var/lib/firecracker")
    assert userpaths.default_config_path() == Path("/etc/ignite/config.yaml")
    assert userpaths.default_manifest_dir() == Path("/etc/firecracker/manifests")


def test_a_user_gets_xdg_paths(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert userpaths.default_state_dir() == user / ".local/share/ignitevm"
    assert userpaths.default_config_path() == user / ".config/ignite/config.yaml"
    assert userpaths.default_manifest_dir() == user / ".config/ignite/manifests"
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")  # as the XDG spec says
    assert userpaths.default_state_dir() == Path("/data/ignitevm")
    assert userpaths.default_config_path() == user / ".config/ignite/config.yaml"


def test_a_user_reads_only_their_configuration(user: Path) -> None:
    from ignitevm.api import load_configuration

    assert load_configuration(None) == Configuration()  # /etc/ignite/config.yaml is root's
    path = user / ".config/ignite/config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\n"
                    "spec:\n  idPrefix: mine\n")  # fmt: skip
    assert load_configuration(None).spec.id_prefix == "mine"


def test_user_networking_is_a_users_default(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(user / "state")
    assert Services(Configuration(), store).default_network_plugin() == "user"
    explicit = Configuration.model_validate({"spec": {"networkPlugin": "cni"}})
    assert Services(explicit, store).default_network_plugin() == "cni"  # preflight says why
    monkeypatch.setenv("IGNITE_NETWORK_PLUGIN", "none")
    assert Services(Configuration(), store).default_network_plugin() == "none"
    monkeypatch.delenv("IGNITE_NETWORK_PLUGIN")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert Services(Configuration(), store).default_network_plugin() == "cni"


def test_private_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    uid = os.geteuid()
    path = userpaths.private_runtime_dir()
    assert path == tmp_path / f"ignitevm-{uid}"
    assert path.stat().st_mode & 0o777 == 0o700
    assert userpaths.private_runtime_dir() == path  # again: the same, accepted
    path.chmod(0o755)  # someone else's, or a mistake: never used
    with pytest.raises(IgniteError, match="not a private directory"):
        userpaths.private_runtime_dir()
    path.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    path.symlink_to(tmp_path / "elsewhere")  # a symlink planted at the name
    with pytest.raises(IgniteError, match="not a private directory"):
        userpaths.private_runtime_dir()
    path.unlink()
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert userpaths.private_runtime_dir() == runtime / "ignitevm"


def test_long_ssh_control_paths_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /tmp name another user could bind first would be a master that sees our commands."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    short = tmp_path / "vm"
    assert control_path(short) == short / "ssh.ctl"
    deep = tmp_path / ("d" * 120) / "vm"
    path = control_path(deep)
    assert path.parent == tmp_path / f"ignitevm-{os.geteuid()}" and len(str(path)) < 108
    assert control_path(tmp_path / ("e" * 120) / "vm") != path


def test_a_users_state_dir_is_private(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ignitevm.ops.services import build_services

    monkeypatch.delenv("IGNITE_STATE_DIR", raising=False)
    svc = build_services(None)
    assert svc.state_dir == user / ".local/share/ignitevm"
    assert svc.state_dir.stat().st_mode & 0o777 == 0o700
