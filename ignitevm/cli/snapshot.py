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
    from ignitevm.ops.snapshots import create_snapshot

    snap, figures = create_snapshot(app.services(), vm, name=name, stop=stop)
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
    from ignitevm.ops.snapshots import list_snapshots

    snaps = list_snapshots(app.services())
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
    from ignitevm.ops.snapshots import remove_snapshot

    for query in snapshots:
        click.echo(remove_snapshot(app.services(), query, force=force).metadata.uid)


@click.command(cls=IgniteCommand)
@click.argument("vm")
@click.option("-n", "--count", type=click.IntRange(1, 64), default=1, show_default=True,
              help="How many VMs to make.")  # fmt: skip
@click.option("--name-prefix", default=None, metavar="PREFIX",
              help="Name them PREFIX1, PREFIX2, ... (default: the VM's name and '-').")  # fmt: skip
@pass_app
def fork(app: App, vm: str, count: int, name_prefix: str | None) -> None:
    """Snapshot a running VM and start COUNT copies of it, each its own machine."""
    from ignitevm.errors import IgniteError
    from ignitevm.ops.fork import fork_vm

    result = fork_vm(app.services(), vm, count, name_prefix=name_prefix,
                     network_plugin=app.network_plugin)  # fmt: skip
    for made in result.vms:
        click.echo(made.metadata.uid if app.quiet else f"{made.metadata.uid}  {made.metadata.name}")
    if result.failed:
        names = ", ".join(name for name, _ in result.failed)
        raise IgniteError(
            f"{len(result.failed)} of {count} forks did not start ({names}): "
            f"{result.failed[0][1].message}",
            hint="see `ignite logs` of each; they are created: ignite start or rm them",
        )


def _each(verb: str, help_text: str) -> click.Command:
    @click.command(verb, cls=IgniteCommand, help=help_text)
    @click.argument("vms", nargs=-1, required=True)
    @pass_app
    def command(app: App, vms: tuple[str, ...]) -> None:
        from ignitevm.ops import pausing

        act = getattr(pausing, f"{verb}_vm")
        for query in vms:
            click.echo(act(app.services(), query).metadata.uid)

    return command


pause = _each("pause", "Freeze the vCPUs of running VMs (their memory kept).")
unpause = _each("unpause", "Let paused VMs run on.")
suspend = _each(
    "suspend", "Save running VMs to disk and free their memory; `ignite start` resumes them."
)
