"""`ignite`: the command line. Parses, prints, picks exit codes; the work is in ops/."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ignitevm.cli.app import App, run_cli, setup_logging
from ignitevm.cli.lazy import LazyGroup

log = logging.getLogger(__name__)

VM_COMMANDS = {
    "run": "ignitevm.cli.vm:run",
    "create": "ignitevm.cli.vm:create",
    "start": "ignitevm.cli.vm:start",
    "stop": "ignitevm.cli.vm:stop",
    "kill": "ignitevm.cli.vm:kill",
    "rm": "ignitevm.cli.vm:rm",
    "ps": "ignitevm.cli.vm:ps",
    "ls": "ignitevm.cli.vm:ps",
    "logs": "ignitevm.cli.vm:logs",
    "attach": "ignitevm.cli.vm:attach",
    "exec": "ignitevm.cli.access:exec_",
    "ssh": "ignitevm.cli.access:ssh",
    "cp": "ignitevm.cli.access:cp",
}

TOP_COMMANDS = {
    **{k: v for k, v in VM_COMMANDS.items() if k != "ls"},
    "inspect": "ignitevm.cli.inspect:inspect",
    "image": "ignitevm.cli.image:image",
    "kernel": "ignitevm.cli.kernel:kernel",
    "rmi": "ignitevm.cli.image:rmi",
    "rmk": "ignitevm.cli.kernel:rmk",
    "vm": "ignitevm.cli.main:vm",
    "completion": "ignitevm.cli.misc:completion",
    "version": "ignitevm.cli.misc:version",
}

LOG_LEVELS = ["debug", "info", "warning", "error"]


@click.group(
    cls=LazyGroup, lazy=TOP_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="How much to log.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only ids.")
@click.option(
    "--ignite-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (default /etc/ignite/config.yaml).",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str, quiet: bool, ignite_config: Path | None) -> None:
    """ignite: Docker's user experience for microVMs (Weave Ignite, in Python)."""
    setup_logging(log_level)
    ctx.obj = App(config_path=ignite_config, quiet=quiet, log_level=log_level)


@click.group(cls=LazyGroup, lazy=VM_COMMANDS)
def vm() -> None:
    """Manage VMs (every VM verb)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of `ignite`."""
    run_cli(cli, "ignite", argv)
