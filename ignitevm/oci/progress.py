"""A progress bar per layer on a terminal (rich); silent otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any, cast

from ignitevm.oci.types import LayerDescriptor


class _CountingReader:
    def __init__(self, raw: IO[bytes], advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._advance(len(data))
        return data

    def readable(self) -> bool:
        return True


class ProgressReporter:
    """Context manager; ``callback(layer)`` gives a byte counter for one layer's bar."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None

    def __enter__(self) -> ProgressReporter:
        if self.enabled:
            from rich.progress import (  # lazily: rich is heavy
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def callback(self, layer: LayerDescriptor) -> Callable[[int], None] | None:
        if self._progress is None:
            return None
        progress = self._progress
        task = progress.add_task(layer.digest[7:19], total=layer.size or None)
        return lambda n: progress.advance(task, n)

    def wrap(self, raw: IO[bytes], layer: LayerDescriptor) -> IO[bytes]:
        advance = self.callback(layer)
        if advance is None:
            return raw
        return cast(IO[bytes], _CountingReader(raw, advance))
