"""`ignite inspect vm|image|kernel|snapshot NAME`."""

from __future__ import annotations

import click

from ignitevm.cli.app import App, pass_app
from ignitevm.cli.lazy import IgniteCommand
from ignitevm.cli.output import compile_go_template


@click.command(cls=IgniteCommand)
@click.argument("kind", type=click.Choice(["vm", "image", "kernel", "snapshot"],
                                        case_sensitive=False))  # fmt: skip
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default="json")
@click.option("-t", "--template", default="", metavar="GO-TEMPLATE",
              help="Print with a Go template instead, e.g. '{{.Spec.Memory}}'.")  # fmt: skip
@pass_app
def inspect(app: App, kind: str, name: str, output: str, template: str) -> None:
    """Print a stored object (a VM with its live state)."""
    from ignitevm.api import Object, dump_object

    tmpl = compile_go_template(template)  # first: a mistake fails before the object is looked up
    client = app.client()
    kind = kind.lower()
    obj: Object
    if kind == "vm":
        obj = client.vms.get(name).object
    elif kind == "image":
        obj = client.images.get(name)
    elif kind == "snapshot":
        obj = client.snapshots.get(name)
    else:
        obj = client.kernels.get(name)
    if tmpl is not None:  # as Ignite: the template wins over -o
        click.echo(tmpl.render(obj))
        return
    click.echo(dump_object(obj, "json" if output == "json" else "yaml").rstrip("\n"))
