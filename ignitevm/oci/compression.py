"""Layer decompression, detected by magic bytes (media types lie often enough)."""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
from enum import StrEnum
from typing import IO, Any, Protocol, cast

log = logging.getLogger(__name__)


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"
    BZIP2 = "bzip2"


_MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"BZh", Compression.BZIP2),
)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def detect(head: bytes) -> Compression:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


class PrefixedReader:
    """Puts back bytes already read from ``raw`` (the magic) in front of it."""

    def __init__(self, prefix: bytes, raw: Readable) -> None:
        self._prefix = prefix
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._raw.read(size)
        if size < 0:
            data, self._prefix = self._prefix + self._raw.read(), b""
            return data
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(data) < size:
            data += self._raw.read(size - len(data))
        return data

    def readable(self) -> bool:
        return True


def decompressed(raw: Readable) -> tuple[IO[bytes], Compression]:
    """Wrap ``raw`` in the decompressor its first bytes call for."""
    head = b""
    while len(head) < 6:
        more = raw.read(6 - len(head))
        if not more:
            break
        head += more
    kind = detect(head)
    source = cast(IO[bytes], PrefixedReader(head, raw))
    stream: Any
    if kind is Compression.GZIP:
        stream = gzip.GzipFile(fileobj=source, mode="rb")
    elif kind is Compression.ZSTD:
        import zstandard  # lazily: only zstd layers pay for it

        stream = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    elif kind is Compression.XZ:
        stream = lzma.LZMAFile(source)  # noqa: SIM115 (closed with the layer)
    elif kind is Compression.BZIP2:
        stream = bz2.BZ2File(source)
    else:
        stream = source
    return cast(IO[bytes], stream), kind
