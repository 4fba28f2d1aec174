"""The CLI's shared state: global flags and the lazily built Services."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ignitevm.ops.services import Services


@dataclass
class App:
    config_path: Path | None = None
    quiet: bool = False
    log_level: str = "info"
    _services: Services | None = field(default=None, repr=False)

    @property
    def debug(self) -> bool:
        return self.log_level == "debug"

    def services(self) -> Services:
        if self._services is None:
            from ignitevm.ops.services import build_services

            self._services = build_services(self.config_path)
        return self._services


pass_app = click.make_pass_decorator(App)


def setup_logging(level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(
        level=numeric,
        format="%(levelname).1s %(name)s: %(message)s"
        if numeric <= logging.DEBUG
        else "%(message)s",
    )
