"""The CLI's shared state: global flags and the lazily built Services."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ignitevm.ops.services import Services


def ignore_preflight_option() -> Any:
    """``--ignore-preflight-checks``, the same for `ignite start/run` and `ignited`."""
    return click.option(
        "--ignore-preflight-checks",
        "ignore_preflight",
        default="",
        metavar="NAME,...|all",
        help="Preflight checks whose failure is only a warning when a VM starts (Root, KVM, "
        "VMMBinary, TunDevice, CNIPlugins, HostPorts, KernelFitsVMM).",
    )


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
        # at debug level, milliseconds since the start: where the time of a command goes
        format="%(relativeCreated)6.0f %(levelname).1s %(name)s: %(message)s"
        if numeric <= logging.DEBUG
        else "%(message)s",
    )


def wants_debug(args: list[str]) -> bool:
    """--log-level debug (or IGNITE_DEBUG=1): show tracebacks of failed commands."""
    pairs = zip(args, [*args[1:], ""], strict=True)
    flagged = any(a == "--log-level" and b == "debug" for a, b in pairs)
    return flagged or "--log-level=debug" in args or os.environ.get("IGNITE_DEBUG") == "1"


def run_cli(group: click.Group, prog_name: str, argv: list[str] | None) -> None:
    """Run a click group as a program: an IgniteError becomes one `error:` line and a `hint:`
    (a traceback only with --log-level debug); the exit code is the error's."""
    from ignitevm.errors import IgniteError

    args = sys.argv[1:] if argv is None else argv
    try:
        group.main(args=args, prog_name=prog_name, standalone_mode=False)
    except IgniteError as exc:
        if wants_debug(args):
            logging.getLogger(prog_name).exception("command failed")
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(0)
