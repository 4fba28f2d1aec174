"""Digests, verifying readers and the content-addressed blob cache (``sha256/<hex>``)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from ignitevm.errors import IgniteError, ValidationError

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
CHUNK = 1 << 20


class DigestMismatchError(IgniteError):
    """A blob's content does not match the digest it was asked for by."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{what}: digest mismatch: expected {expected}, got {actual}",
            hint="the source or the download is corrupt; fetch it again or rebuild the image",
        )
        self.expected = expected
        self.actual = actual


def digest_hex(digest: str) -> str:
    """The hex part of a ``sha256:<hex>`` digest; other algorithms are refused."""
    match = _DIGEST.match(digest)
    if match is None:
        raise ValidationError(
            f"unsupported or malformed digest {digest!r}",
            hint="only sha256 digests (sha256:<64 hex>) are supported",
        )
    return match.group(1)


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def verify_bytes(data: bytes, expected: str, what: str) -> None:
    digest_hex(expected)
    actual = sha256_bytes(data)
    if actual != expected:
        raise DigestMismatchError(what, expected, actual)


class HashingReader:
    """A read-only stream that hashes what passes through it; ``verify`` checks the digest
    after draining whatever the consumer left unread (tar padding, trailing garbage)."""

    def __init__(self, raw: IO[bytes], expected: str, what: str) -> None:
        digest_hex(expected)
        self._raw = raw
        self._hasher = hashlib.sha256()
        self.expected = expected
        self.what = what
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hasher.update(data)
        self.count += len(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def verify(self) -> None:
        while self.read(CHUNK):
            pass
        actual = "sha256:" + self._hasher.hexdigest()
        if actual != self.expected:
            raise DigestMismatchError(self.what, self.expected, actual)


class BlobCache:
    """Verified blobs stored as ``<cache_dir>/sha256/<hex>``; shared by every import."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "sha256"

    def path(self, digest: str) -> Path:
        return self.root / digest_hex(digest)

    def find(self, digest: str) -> Path | None:
        path = self.path(digest)
        return path if path.is_file() else None

    def read_bytes(self, digest: str) -> bytes | None:
        path = self.find(digest)
        if path is None:
            return None
        data = path.read_bytes()
        if sha256_bytes(data) != digest:
            log.warning("cached blob %s is corrupt; dropping it", digest)
            self.drop(digest)
            return None
        return data

    def put_bytes(self, digest: str, data: bytes, what: str) -> None:
        verify_bytes(data, digest, what)
        with self.writer(digest, what) as f:
            f.write(data)

    def drop(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    @contextmanager
    def writer(self, digest: str, what: str) -> Iterator[HashingWriter]:
        """Write a blob to a temp file; it enters the cache only if its digest matches."""
        target = self.path(digest)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                out = HashingWriter(f)
                yield out
            actual = out.digest()
            if actual != digest:
                raise DigestMismatchError(what, digest, actual)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class HashingWriter:
    """Writes through to a file and hashes what it writes."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._hasher = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self._hasher.update(data)
        self.count += len(data)
        return self._f.write(data)

    def digest(self) -> str:
        return "sha256:" + self._hasher.hexdigest()
