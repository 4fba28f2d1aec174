"""The manifest sources: a directory (change detection) and git over file:// (real git, no net)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ignitevm.errors import ValidationError
from ignitevm.gitops.source import (
    DirectorySource,
    GitAuth,
    GitSource,
    SourceError,
    _ssh_command,
    gitops_workdir,
)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=GIT_ENV).stdout.strip()  # fmt: skip


def commit(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"vms/a.yaml": "a: 1\n", "other/b.yaml": "b: 1\n"}, "first")
    return repo


@pytest.fixture
def source_dir(tmp_path: Path) -> Iterator[Path]:
    work = tmp_path / "work"
    yield work
    shutil.rmtree(work, ignore_errors=True)


def test_follow_default_branch(upstream: Path, source_dir: Path) -> None:
    src = GitSource(f"file://{upstream}", path="vms", workdir=source_dir)
    snap = src.sync()
    assert snap.revision == git(upstream, "rev-parse", "HEAD") and snap.changed
    assert snap.revision_time > 1_000_000_000
    assert sorted(p.name for p in snap.root.iterdir()) == ["a.yaml"]
    assert not src.sync().changed
    second = commit(upstream, {"vms/a.yaml": None, "vms/c.yaml": "c: 1\n"})
    snap = src.sync()
    assert snap.changed and snap.revision == second
    assert sorted(p.name for p in snap.root.iterdir()) == ["c.yaml"]
    src.close()
    assert not source_dir.exists()


def test_branch(upstream: Path, source_dir: Path) -> None:
    git(upstream, "checkout", "-q", "-b", "prod")
    prod = commit(upstream, {"vms/p.yaml": "p: 1\n"})
    git(upstream, "checkout", "-q", "main")
    src = GitSource(str(upstream), branch="prod", path="vms", workdir=source_dir)
    snap = src.sync()
    assert snap.revision == prod
    assert (snap.root / "p.yaml").exists()


def test_unreachable_keeps_last_checkout(upstream: Path, source_dir: Path, tmp_path: Path) -> None:
    src = GitSource(f"file://{upstream}", workdir=source_dir)
    first = src.sync()
    upstream.rename(tmp_path / "moved")
    with pytest.raises(SourceError, match=r"git fetch of file://.* failed: fatal: ") as err:
        src.sync()
    assert err.value.hint and "last good checkout" in err.value.hint
    assert (first.root / "vms" / "a.yaml").exists()
    (tmp_path / "moved").rename(upstream)
    assert not src.sync().changed


def test_persistent_checkout_survives_a_restart(upstream: Path, tmp_path: Path) -> None:
    work = gitops_workdir(tmp_path / "state", f"file://{upstream}", None, None)
    assert work.parent == tmp_path / "state" / "gitops"
    src = GitSource(f"file://{upstream}", path="vms", workdir=work, persistent=True)
    first = src.sync()
    # a second ignited on the same checkout is refused while the first runs
    with pytest.raises(SourceError, match="another ignited follows"):
        GitSource(f"file://{upstream}", workdir=work, persistent=True).sync()
    src.close()
    assert (work / "repo" / "vms" / "a.yaml").exists()  # kept for the next run

    # the next run, with the repository away: the previous checkout stands in
    upstream.rename(tmp_path / "moved")
    again = GitSource(f"file://{upstream}", path="vms", workdir=work, persistent=True)
    with pytest.raises(SourceError):
        again.sync()
    fallback = again.last_good()
    assert fallback is not None and fallback.revision == first.revision
    assert fallback.root == first.root and (fallback.root / "a.yaml").exists()
    # back again: nothing new, so nothing changed
    (tmp_path / "moved").rename(upstream)
    assert not again.sync().changed
    again.close()
    # a temp-dir source has no previous run
    assert GitSource(f"file://{upstream}").last_good() is None


def test_unknown_branch(upstream: Path, source_dir: Path) -> None:
    with pytest.raises(SourceError, match="git fetch"):
        GitSource(f"file://{upstream}", branch="nope", workdir=source_dir).sync()


def test_bad_path() -> None:
    with pytest.raises(ValidationError):
        GitSource("file:///x", path="../etc")


def test_ssh_command_quotes_paths() -> None:
    cmd = _ssh_command(GitAuth(Path("/k/my key"), Path("/k/known_hosts")))
    assert "-i '/k/my key'" in cmd and "UserKnownHostsFile=/k/known_hosts" in cmd
    assert "StrictHostKeyChecking=yes" in cmd
    assert _ssh_command(GitAuth()) == ""


def test_askpass_env_keeps_password_out_of_argv(source_dir: Path) -> None:
    src = GitSource("https://example.invalid/r.git", workdir=source_dir,
                    auth=GitAuth(https_username="me", https_password="s3cret"))  # fmt: skip
    env = src._env()
    helper = Path(env["GIT_ASKPASS"])
    out = subprocess.run([str(helper), "Password for 'https://me@example.invalid': "],
                         env=env, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out == "s3cret\n"
    assert "s3cret" not in helper.read_text()


def test_directory_change_detection(tmp_path: Path) -> None:
    src = DirectorySource(tmp_path)
    assert src.sync().changed
    assert not src.sync().changed
    (tmp_path / "a.yaml").write_text("x: 1\n")
    assert src.sync().changed
    with pytest.raises(SourceError):
        DirectorySource(tmp_path / "nope").sync()
