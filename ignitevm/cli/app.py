"""The CLI's shared state: the global flags (accepted before or after any command, see
docs/cli.md) and the library's Client over the lazily built Services: each command parses,
calls the library (ignitevm/client/) and prints."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ignitevm.client import Client
    from ignitevm.ops.services import Services

log = logging.getLogger(__name__)


def ignore_preflight_option() -> Any:
    """``--ignore-preflight-checks``, the same for `ignite start/run` and `ignited`."""
    return click.option(
        "--ignore-preflight-checks",
        "ignore_preflight",
        default="",
        metavar="NAME,...|all",
        help="Preflight checks whose failure is only a warning when a VM starts (Root, KVM, "
        "VMMBinary, TunDevice, CNIPlugins, HostPorts, KernelFitsVMM, Jail).",
    )


@dataclass
class App:
    """The global flags (given before or after any command, see docs/cli.md) and the Services."""

    config_path: Path | None = None
    quiet: bool = False
    log_level: str = "info"
    # Ignite's container runtime: accepted, and only noted at debug level (no containers here)
    runtime: str | None = None
    # the default plugin of the VMs that run/create/start set up (their own flag wins)
    network_plugin: str | None = None
    # overrides the configuration's spec.idPrefix
    id_prefix: str | None = None
    _services: Services | None = field(default=None, repr=False)

    @property
    def debug(self) -> bool:
        return self.log_level == "debug"

    def services(self) -> Services:
        if self._services is None:
            from ignitevm.ops.services import build_services

            svc = build_services(self.config_path)
            if self.id_prefix:
                svc.config.spec.id_prefix = self.id_prefix
            if self.runtime:
                log.debug("--runtime %s ignored: ignitevm runs no container runtime", self.runtime)
            log.debug(
                "state dir %s, configuration %s", svc.state_dir, self.config_path or "default"
            )
            self._services = svc
        return self._services

    def client(self) -> Client:
        """The library over these Services; the global --network-plugin is its default."""
        from ignitevm.client import Client

        return Client._from_services(self.services(), network_plugin=self.network_plugin)


pass_app = click.make_pass_decorator(App)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the sys.stderr of the moment (click's test runner swaps it per invocation)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str) -> None:
    """Apply a --log-level; again when a later one is given after the command (basicConfig would
    do nothing the second time)."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    # at debug level, milliseconds since the start: where the time of a command goes
    debug_format = "%(relativeCreated)6.0f %(levelname).1s %(name)s: %(message)s"
    handler.setFormatter(
        logging.Formatter(debug_format if numeric <= logging.DEBUG else "%(message)s")
    )
    root.setLevel(numeric)


LOG_LEVELS = ["debug", "info", "warning", "error"]
NETWORK_PLUGINS = ["cni", "user", "none", "docker-bridge"]  # docker-bridge: cni, warned
# Ignite's --runtime chose a container runtime; ignitevm runs no containers, every VM runs
# under QEMU: these values are accepted so Ignite's command lines keep working
RUNTIMES = ["qemu", "containerd", "docker"]


def _store(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A callback that puts a global flag on the App, wherever on the command line it was."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        # absent at this level (None, or a flag's False): keep what an outer level set
        if value is None or value is False:
            return
        app = ctx.ensure_object(App)
        setattr(app, attr, value)
        if attr == "log_level":
            setup_logging(value)

    return callback


def _global(decls: list[str], attr: str, **kwargs: Any) -> click.Option:
    return click.Option(decls, expose_value=False, callback=_store(attr), **kwargs)


GLOBAL_OPTIONS: tuple[click.Option, ...] = (
    _global(["--log-level"], "log_level", type=click.Choice(LOG_LEVELS), default=None,
            help="How much to log (default info); debug also prints tracebacks."),
    _global(["-q", "--quiet"], "quiet", is_flag=True, default=False,
            help="Print only ids (machine-readable output)."),
    _global(["--ignite-config"], "config_path", default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Configuration file (default /etc/ignite/config.yaml; for a user other than "
                 "root, ~/.config/ignite/config.yaml)."),
    _global(["--runtime"], "runtime", type=click.Choice(RUNTIMES, case_sensitive=False),
            default=None, help="Accepted for Ignite compatibility; VMs run under QEMU."),
    _global(["--network-plugin"], "network_plugin", type=click.Choice(NETWORK_PLUGINS),
            default=None, help="Default networking of the VMs run/create/start set up."),
    _global(["--id-prefix"], "id_prefix", default=None, metavar="PREFIX",
            help="Prefix of identifiers and names (default: the configuration's, ignite)."),
)  # fmt: skip


def wants_debug() -> bool:
    """--log-level debug (anywhere: it has taken effect when a command fails) or IGNITE_DEBUG=1:
    show tracebacks of failed commands."""
    return logging.getLogger().isEnabledFor(logging.DEBUG) or os.environ.get("IGNITE_DEBUG") == "1"


def run_cli(group: click.Group, prog_name: str, argv: list[str] | None) -> None:
    """Run a click group as a program: every failure becomes one `error:` line and one `hint:`
    (a traceback only with --log-level debug); the exit code is the error's."""
    from ignitevm.errors import IgniteError

    args = sys.argv[1:] if argv is None else argv
    try:
        group.main(args=args, prog_name=prog_name, standalone_mode=False)
    except IgniteError as exc:
        _fail(prog_name, exc.message, exc.hint, exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # a usage error: unknown flag, bad choice, missing arg
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else prog_name
        _fail(prog_name, exc.format_message(), f"see '{where} --help'", exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # not an IgniteError: still one line, the traceback on demand
        _fail(prog_name, *describe_unexpected(exc))
    sys.exit(0)


def _fail(prog_name: str, message: str, hint: str | None, code: int) -> None:
    if wants_debug():
        logging.getLogger(prog_name).exception("command failed")
    # one line each: a message that spans lines (a subprocess's stderr tail) is indented
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def describe_unexpected(exc: Exception) -> tuple[str, str, int]:
    """(message, hint, exit code) for an exception core code did not turn into an IgniteError:
    a model's validation error (bad input, exit 2), a file the user may not touch, or a bug."""
    if type(exc).__module__.startswith("pydantic"):  # not imported unless it was used
        import pydantic

        from ignitevm.api.manifest import describe_validation_error

        if isinstance(exc, pydantic.ValidationError):
            hint = "see docs/api.md for the fields and their values"
            return describe_validation_error(exc), hint, 2
    if isinstance(exc, PermissionError):
        where = f": {exc.filename}" if exc.filename else ""
        return (f"{exc.strerror or 'permission denied'}{where}",
                "run as root, or as the user that owns the state directory", 1)  # fmt: skip
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}", "check the path and the disk, then try again", 1
    return (f"unexpected {type(exc).__name__}: {exc}",
            "this is a bug in ignitevm: run again with --log-level debug for the traceback "
            "and report it", 1)  # fmt: skip
