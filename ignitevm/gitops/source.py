"""Where manifests come from: a directory, or a git repository followed with the `git` CLI.

Credentials never reach argv or the logs: the remote URL is written into the checkout's
``.git/config`` by Python, and an HTTPS password is handed to git by a GIT_ASKPASS helper that
reads it from the environment of that one git process.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from ignitevm import proc
from ignitevm.errors import CommandError, IgniteError, ValidationError

log = logging.getLogger(__name__)

GIT_TIMEOUT = 120.0
_ASKPASS = """#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "$IGNITED_GIT_USERNAME" ;;
  *) printf '%s\\n' "$IGNITED_GIT_PASSWORD" ;;
esac
"""


class SourceError(IgniteError):
    """The manifest source cannot be read (an unreachable repository, a missing directory)."""


@dataclass(frozen=True)
class Snapshot:
    root: Path  # the directory holding the manifests
    revision: str = ""  # the commit, for git
    revision_time: float = 0.0  # its commit time (Unix)
    changed: bool = True  # differs from the previous snapshot


class ManifestSource(Protocol):
    def sync(self) -> Snapshot: ...
    def last_good(self) -> Snapshot | None: ...
    def close(self) -> None: ...


@dataclass
class DirectorySource:
    root: Path
    _fingerprint: tuple[tuple[str, int, int], ...] | None = None

    def sync(self) -> Snapshot:
        if not self.root.is_dir():
            raise SourceError(
                f"manifest directory {self.root} does not exist",
                hint="create it, or pass --manifest-dir DIR",
            )
        from ignitevm.gitops.manifests import manifest_files

        fingerprint = tuple(
            (str(p), st.st_mtime_ns, st.st_size)
            for p in manifest_files(self.root)
            for st in (p.stat(),)
        )
        changed, self._fingerprint = fingerprint != self._fingerprint, fingerprint
        return Snapshot(self.root, changed=changed)

    def last_good(self) -> Snapshot | None:
        return None  # a directory is read where it is, or not at all

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class GitAuth:
    identity_file: Path | None = None
    hosts_file: Path | None = None
    https_username: str | None = None
    https_password: str | None = None


@dataclass
class GitSource:
    """A shallow clone of ``url`` (``branch``, default the remote's HEAD) in ``workdir`` (None:
    a private temp dir); every ``sync`` fetches and checks out the newest commit. On a failed
    fetch the last good checkout stays and the error is raised for the caller to report.

    ``persistent``: the workdir outlives the process (ignited keeps it in the state dir), so a
    restarted ignited fetches only what is new, and ``last_good`` offers the previous run's
    checkout while the repository cannot be reached."""

    url: str
    branch: str | None = None
    path: str = ""  # a sub-directory of the repository holding the manifests
    auth: GitAuth = field(default_factory=GitAuth)
    workdir: Path | None = None
    persistent: bool = False
    _commit: str = ""
    _commit_time: float = 0.0
    _lock_fd: int | None = None

    def __post_init__(self) -> None:
        _check_path(self.path)

    @property
    def checkout(self) -> Path:
        return self._workdir() / "repo"

    def _workdir(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="ignited-git-"))
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.persistent and self._lock_fd is None:
            self._lock_fd = _lock_workdir(self.workdir, self.url)
        return self.workdir

    def sync(self) -> Snapshot:
        git = proc.require_tool("git")
        repo = self.checkout
        if not (repo / ".git").is_dir():
            self._init(git, repo)
        ref = f"refs/heads/{self.branch}" if self.branch else "HEAD"
        self._git(git, "fetch", "--quiet", "--depth", "1", "--no-tags", "origin", ref)
        commit = self._git(git, "rev-parse", "FETCH_HEAD^{commit}").strip()
        changed = commit != self._commit
        if changed:
            self._git(git, "checkout", "--quiet", "--force", "--detach", commit)
            self._git(git, "clean", "-ffdxq")
            stamp = self._git(git, "show", "-s", "--format=%ct", commit).strip()
            self._commit, self._commit_time = commit, float(stamp or 0)
            log.info("checked out %s of %s", commit[:12], redact(self.url))
        return Snapshot(repo / self.path, self._commit, self._commit_time, changed)

    def last_good(self) -> Snapshot | None:
        """The checkout a previous run left in a persistent workdir, if it has a commit."""
        repo = self.checkout
        if not self.persistent or not (repo / ".git").is_dir():
            return None
        git = proc.find_tool("git")
        if git is None:
            return None
        try:
            commit = self._git(git, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").strip()
            stamp = self._git(git, "show", "-s", "--format=%ct", commit).strip()
        except SourceError:
            return None  # an empty or broken clone: nothing to fall back to
        self._commit, self._commit_time = commit, float(stamp or 0)
        return Snapshot(repo / self.path, commit, self._commit_time, True)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.workdir is not None and not self.persistent:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _init(self, git: str, repo: Path) -> None:
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        self._git(git, "init", "--quiet")
        # written here rather than with `git remote add URL`: argv is logged at debug level
        with open(repo / ".git" / "config", "a", encoding="utf-8") as config:
            config.write(f'[remote "origin"]\n\turl = {_config_quote(self.url)}\n')

    def _git(self, git: str, *args: str) -> str:
        argv = [git, "-c", "credential.helper=", *args]
        try:
            return proc.output(argv, cwd=self.checkout, env=self._env(), timeout=GIT_TIMEOUT)
        except CommandError as exc:
            detail = redact(_git_problem(exc.stderr))
            raise SourceError(
                f"git {args[0]} of {redact(self.url)} failed: {detail or exc.returncode}",
                hint="check the repository URL, --branch, and the credentials; "
                "the last good checkout stays in use",
            ) from None
        except proc.TimeoutExpired:
            raise SourceError(
                f"git {args[0]} of {redact(self.url)} timed out after {GIT_TIMEOUT:g} s",
                hint="the last good checkout stays in use",
            ) from None

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        ssh = _ssh_command(self.auth)
        if ssh:
            env["GIT_SSH_COMMAND"] = ssh
        if self.auth.https_username or self.auth.https_password:
            env["GIT_ASKPASS"] = str(self._askpass())
            env["IGNITED_GIT_USERNAME"] = self.auth.https_username or ""
            env["IGNITED_GIT_PASSWORD"] = self.auth.https_password or ""
        return env

    def _askpass(self) -> Path:
        helper = self._workdir() / "askpass.sh"
        if not helper.exists():
            helper.write_text(_ASKPASS)
            helper.chmod(0o700)
        return helper


def gitops_workdir(state_dir: Path, url: str, branch: str | None, host: str | None) -> Path:
    """Where ignited keeps its checkout of ``url``: ``<state>/gitops/<key>``, one per
    (repository, branch, --host), so a restart finds it again."""
    import hashlib

    key = hashlib.sha256(f"{url}\0{branch or ''}\0{host or ''}".encode()).hexdigest()[:16]
    return state_dir / "gitops" / key


def _lock_workdir(workdir: Path, url: str) -> int:
    """flock on the workdir for as long as the source lives (the store's directory lock): two
    ignited on one checkout would fight over it."""
    from ignitevm.store.locks import try_hold_lock

    fd = try_hold_lock(workdir)
    if fd is None:
        raise SourceError(
            f"another ignited follows {redact(url)} with this branch and --host on this machine "
            f"(its checkout {workdir} is in use)",
            hint="stop the other one, or give this one another --host",
        )
    return fd


def _git_problem(stderr: str) -> str:
    """The lines that say what went wrong (ssh's own, such as "Host key verification failed.",
    come before git's "fatal:" line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_NOISE)]
    return " / ".join(useful[-3:])


_NOISE = ("hint:", "warning:", "Please make sure you have the correct access rights",
          "and the repository exists.")  # fmt: skip


def _ssh_command(auth: GitAuth) -> str:
    if auth.identity_file is None and auth.hosts_file is None:
        return ""
    argv = ["ssh", "-o", "BatchMode=yes"]
    if auth.identity_file is not None:
        argv += ["-i", str(auth.identity_file), "-o", "IdentitiesOnly=yes"]
    if auth.hosts_file is not None:
        argv += ["-o", f"UserKnownHostsFile={auth.hosts_file}", "-o", "StrictHostKeyChecking=yes"]
    return shlex.join(argv)


def _config_quote(value: str) -> str:
    if any(c in value for c in "\n\r"):
        raise ValidationError("the repository URL contains a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_path(path: str) -> None:
    parts = Path(path).parts
    if Path(path).is_absolute() or ".." in parts:
        raise ValidationError(
            f"--path {path!r} must be a relative path inside the repository",
            hint="e.g. --path manifests/prod",
        )


def redact(text: str) -> str:
    """``https://user:secret@host/x`` -> ``https://user:***@host/x`` (anywhere in ``text``)."""
    out = []
    for word in text.split(" "):
        try:
            parts = urlsplit(word)
        except ValueError:
            out.append(word)
            continue
        if parts.scheme and parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
            word = urlunsplit(parts._replace(netloc=netloc))
        out.append(word)
    return " ".join(out)


def check_repo_url(url: str) -> None:
    """file://, git://, ssh://, scp-style user@host:path, http(s)://, or a local path."""
    if not url or url.startswith("-"):
        raise ValidationError(
            f"invalid repository {url!r}", hint="e.g. https://github.com/org/vms.git"
        )
