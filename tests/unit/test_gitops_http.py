"""gitops over HTTP with basic auth: `git http-backend` behind a small server on 127.0.0.1 that
demands a user name and password. The password reaches git through GIT_ASKPASS only: never in
argv, the logs, or the clone's config."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ignitevm.gitops.source import GitAuth, GitSource, SourceError

BACKEND = Path("/usr/lib/git-core/git-http-backend")
pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not BACKEND.exists(), reason="git http-backend is missing"
)

USER, PASSWORD = "deploy", "s3cret-t0ken"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip


def _handler(root: Path) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
                   "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(length), "REMOTE_USER": USER,
                   "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", "")}  # fmt: skip
            out = subprocess.run([str(BACKEND)], input=body, env=env, capture_output=True).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                key, _, value = line.partition(": ")
                if key.lower() == "status":
                    status = int(value.split()[0])
                elif key:
                    headers.append((key, value))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def http_repo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL of a repository that needs basic auth, its HEAD commit)."""
    work, bare = tmp_path / "work", tmp_path / "srv" / "vms.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "vm.yaml").write_text("x: 1\n")
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "c"], check=True, env=GIT_ENV)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tmp_path / "srv"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/vms.git", head
    finally:
        server.shutdown()
        server.server_close()


def test_basic_auth_through_askpass(
    http_repo: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, head = http_repo
    caplog.set_level(logging.DEBUG)
    src = GitSource(url, workdir=tmp_path / "clone", auth=GitAuth(https_username=USER,
                    https_password=PASSWORD))  # fmt: skip
    snap = src.sync()
    assert snap.revision == head
    assert (snap.root / "vm.yaml").read_text() == "x: 1\n"
    assert PASSWORD not in caplog.text
    for path in (tmp_path / "clone").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    src.close()


def test_wrong_password_is_a_source_error(http_repo: tuple[str, str], tmp_path: Path) -> None:
    url, _ = http_repo
    src = GitSource(url, workdir=tmp_path / "clone",
                    auth=GitAuth(https_username=USER, https_password="wrong"))  # fmt: skip
    with pytest.raises(SourceError, match=r"git fetch of http://127\.0\.0\.1") as err:
        src.sync()
    assert "wrong" not in err.value.message


def test_no_credentials_does_not_prompt(http_repo: tuple[str, str], tmp_path: Path) -> None:
    url, _ = http_repo
    with pytest.raises(SourceError):
        GitSource(url, workdir=tmp_path / "clone").sync()


def test_password_in_url_is_redacted(http_repo: tuple[str, str], tmp_path: Path) -> None:
    url, _ = http_repo
    bad = url.replace("http://", f"http://{USER}:wrong-pw@")
    with pytest.raises(SourceError) as err:
        GitSource(bad, workdir=tmp_path / "clone").sync()
    assert "wrong-pw" not in err.value.message
    assert f"{USER}:***@" in err.value.message
