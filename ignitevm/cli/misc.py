"""`ignite version`, `ignite completion`."""

from __future__ import annotations

import os

import click

from ignitevm.cli.lazy import IgniteCommand


@click.command(cls=IgniteCommand)
@click.option("-o", "--output", type=click.Choice(["short", "json", "yaml"]), default="short")
def version(output: str) -> None:
    """Print the versions of ignite and of the VMMs it found."""
    from ignitevm.client import Client

    info = Client.versions()  # no state directory needed
    if output == "json":
        import json

        click.echo(json.dumps(info, indent=2))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(info, sort_keys=False), nl=False)
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")


@click.command(cls=IgniteCommand)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script: eval "$(ignite completion bash)"."""
    from click.shell_completion import get_completion_class

    from ignitevm.cli.main import cli

    cls = get_completion_class(shell)
    if cls is None:  # click knows all three; keep mypy and odd click builds honest
        raise click.UsageError(f"no completion for {shell}")
    comp = cls(cli, {}, "ignite", "_IGNITE_COMPLETE")
    os.environ.setdefault("COMP_WORDS", "")
    click.echo(comp.source())
