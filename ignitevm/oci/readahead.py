"""Decompress (and hash) a layer in a second thread while the first one writes files.

zlib, zstd, lzma and hashlib release the GIL on large buffers, so reading ahead in a thread
puts the second CPU to work: unpacking a gzip layer becomes bound by the tar parsing alone.
"""

from __future__ import annotations

import queue
import threading
from typing import IO

from ignitevm.errors import IgniteError

CHUNK = 1 << 20
DEPTH = 8  # chunks buffered ahead: bounds memory to ~8 MiB per layer


class ReadAhead:
    """A sequential reader over ``stream`` filled by a background thread.

    Use as a context manager; leaving it stops and joins the thread. Errors of the
    underlying stream (a corrupt gzip member, a digest mismatch) re-raise in ``read``.
    """

    def __init__(self, stream: IO[bytes], label: str) -> None:
        self._stream = stream
        self._label = label
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._fill, name=f"readahead {label}", daemon=True)
        self._thread.start()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._stream.read(CHUNK)
                if not self._put(data) or not data:
                    return
        except IgniteError as exc:
            self._put(exc)
        except Exception as exc:  # zlib.error, lzma.LZMAError, zstd errors, OSError, EOFError
            self._put(
                IgniteError(
                    f"layer {self._label}: cannot read or decompress: {type(exc).__name__}: {exc}",
                    hint="the layer is corrupt or truncated; fetch the image again",
                )
            )

    def _next_chunk(self) -> bool:
        if self._eof:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            return False
        self._buf, self._pos = item, 0
        return True

    def read(self, size: int = -1) -> bytes:
        avail = len(self._buf) - self._pos
        if 0 <= size <= avail:
            data = self._buf[self._pos : self._pos + size]
            self._pos += size
            return data
        parts = [self._buf[self._pos :]]
        got = avail
        self._buf, self._pos = b"", 0
        while (size < 0 or got < size) and self._next_chunk():
            take = len(self._buf) if size < 0 else min(len(self._buf), size - got)
            parts.append(self._buf[:take])
            self._pos = take
            got += take
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read to the end (so every byte gets hashed), surfacing any stream error."""
        while self._next_chunk():
            pass
        self._buf, self._pos = b"", 0

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
