"""`ignite`: the command line. Parses, prints, picks exit codes; the work is in ops/."""

from __future__ import annotations

import logging

import click

from ignitevm.cli.app import App, run_cli, setup_logging
from ignitevm.cli.lazy import IgniteGroup

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
    "pause": "ignitevm.cli.snapshot:pause",
    "unpause": "ignitevm.cli.snapshot:unpause",
    "suspend": "ignitevm.cli.snapshot:suspend",
    "fork": "ignitevm.cli.snapshot:fork",
}

TOP_COMMANDS = {
    **{k: v for k, v in VM_COMMANDS.items() if k != "ls"},
    "inspect": "ignitevm.cli.inspect:inspect",
    "image": "ignitevm.cli.image:image",
    "kernel": "ignitevm.cli.kernel:kernel",
    "snapshot": "ignitevm.cli.snapshot:snapshot",
    "rmi": "ignitevm.cli.image:rmi",
    "rmk": "ignitevm.cli.kernel:rmk",
    "vm": "ignitevm.cli.main:vm",
    "completion": "ignitevm.cli.misc:completion",
    "version": "ignitevm.cli.misc:version",
}


@click.group(
    cls=IgniteGroup, lazy=TOP_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ignite: Docker's user experience for microVMs (Weave Ignite, in Python).

    The options below are global: they work before or after any command.
    """
    # the global options' callbacks have made the App already when one was given here;
    # see GLOBAL_OPTIONS in ignitevm/cli/app.py and docs/cli.md
    app = ctx.ensure_object(App)
    setup_logging(app.log_level)


@click.group(cls=IgniteGroup, lazy=VM_COMMANDS)
def vm() -> None:
    """Manage VMs (every VM verb)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of `ignite`."""
    run_cli(cli, "ignite", argv)
