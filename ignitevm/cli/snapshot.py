"""`ignite snapshot create|ls|rm`, `ignite fork`, `ignite pause|unpause|suspend`
(docs/snapshots.md)."""

from __future__ import annotations

import click

from ignitevm.cli.app import App, pass_app
from ignitevm.cli.lazy import IgniteCommand, IgniteGroup
from ignitevm.cli.output import format_age, format_bytes, print_table


@click.group(cls=IgniteGroup)
def snapshot() -> None:
    """Save running VMs; make VMs from them (ignite run --snapshot, ignite fork)."""


@snapshot.command("create")
@click.argument("vm")
@click.option("--name", default=None, help="Store the snapshot under this name.")
@click.option("--stop", is_flag=True, help="Leave the VM stopped instead of running on.")
@pass_app
def create(app: App, vm: str, name: str | None, stop: bool) -> None:
    """Snapshot a running VM: its memory, devices and disk, in a fraction of a second."""
    snap, figures = app.client().vms.get(vm)._snapshot(name, stop=stop)
    if app.quiet:
        click.echo(snap.metadata.uid)
        return
    paused = figures.get("paused_seconds", 0.0)
    click.echo(f"{snap.metadata.uid}  {snap.metadata.name}  (the VM was paused {paused:.3f} s; "
               f"{format_bytes(snap.status.size.bytes)} stored)")  # fmt: skip


@snapshot.command("ls")
@pass_app
def ls(app: App) -> None:
    """List the snapshots."""
    snaps = app.client().snapshots.list()
    if app.quiet:
        for s in snaps:
            click.echo(s.metadata.uid)
        return
    rows = [
        [
            s.metadata.uid,
            s.metadata.name,
            s.spec.source.name,
            str(s.status.machine.cpus),
            format_bytes(s.status.machine.memory.bytes),
            f"{format_age(s.metadata.created)} ago",
            format_bytes(s.status.size.bytes),
        ]
        for s in snaps
    ]
    print_table(["SNAPSHOT ID", "NAME", "VM", "CPUS", "MEMORY", "CREATED", "SIZE"], rows)


snapshot.add_command(ls, "list")


@snapshot.command("rm")
@click.argument("snapshots", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True,
              help="Remove even if VMs or snapshots sit on it.")  # fmt: skip
@pass_app
def rm(app: App, snapshots: tuple[str, ...], force: bool) -> None:
    """Remove snapshots."""
    client = app.client()
    for query in snapshots:
        click.echo(client.snapshots.remove(query, force=force).metadata.uid)


@click.command(cls=IgniteCommand)
@click.argument("vm")
@click.option("-n", "--count", type=click.IntRange(1, 64), default=1, show_default=True,
              help="How many VMs to make.")  # fmt: skip
@click.option("--name-prefix", default=None, metavar="PREFIX",
              help="Name them PREFIX1, PREFIX2, ... (default: the VM's name and '-').")  # fmt: skip
@pass_app
def fork(app: App, vm: str, count: int, name_prefix: str | None) -> None:
    """Snapshot a running VM and start COUNT copies of it, each its own machine."""
    from ignitevm.client.vm import fork_error

    made, failed = app.client().vms.get(vm)._fork(count, name_prefix=name_prefix,
                                                  network_plugin=None)  # fmt: skip
    for copy in made:
        click.echo(copy.uid if app.quiet else f"{copy.uid}  {copy.name}")
    if failed:
        raise fork_error(failed, count)


def _each(verb: str, help_text: str) -> click.Command:
    @click.command(verb, cls=IgniteCommand, help=help_text)
    @click.argument("vms", nargs=-1, required=True)
    @pass_app
    def command(app: App, vms: tuple[str, ...]) -> None:
        client = app.client()
        for query in vms:
            click.echo(getattr(client.vms.get(query), verb)().uid)

    return command


pause = _each("pause", "Freeze the vCPUs of running VMs (their memory kept).")
unpause = _each("unpause", "Let paused VMs run on.")
suspend = _each(
    "suspend", "Save running VMs to disk and free their memory; `ignite start` resumes them."
)
