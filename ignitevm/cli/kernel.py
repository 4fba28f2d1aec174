"""`ignite kernel import|ls|rm`, `ignite rmk`."""

from __future__ import annotations

from pathlib import Path

import click

from ignitevm.cli.app import App, pass_app
from ignitevm.cli.image import apply_registry_options, registry_options
from ignitevm.cli.lazy import IgniteCommand, IgniteGroup
from ignitevm.cli.output import format_age, format_bytes, print_table


@click.group(cls=IgniteGroup)
def kernel() -> None:
    """Manage VM kernels."""


@kernel.command("import")
@click.argument("source", required=False)
@click.option(
    "--vmlinux",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A kernel file (ELF vmlinux or a compressed bzImage) instead of SOURCE.",
)
@click.option(
    "--modules",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="With --vmlinux: its /lib/modules/<version> directory.",
)
@click.option("--name", default=None, help="Store the kernel under this name.")
@registry_options
@pass_app
def import_(
    app: App,
    source: str | None,
    vmlinux: Path | None,
    modules: Path | None,
    name: str | None,
    registry_config_dir: Path | None,
    insecure_registries: tuple[str, ...],
    platform: str,
) -> None:
    """Import a kernel and build its initramfs.

    SOURCE: an OCI image (/boot/vmlinux or /boot/vmlinuz-*, /lib/modules/<version>),
    deb:FILE (a Debian linux-image package) or apt:PACKAGE (downloaded with apt-get,
    e.g. apt:linux-image-amd64).
    """
    apply_registry_options(app, registry_config_dir, insecure_registries, platform)
    k = app.client().kernels.import_(source, vmlinux=vmlinux, modules=modules, name=name)
    click.echo(k.metadata.uid if app.quiet else f"{k.metadata.uid}  {k.metadata.name}")


@kernel.command("build")
@click.option(
    "--source",
    type=click.Path(exists=True, path_type=Path),
    help="A linux-source-*.tar.xz or an unpacked tree (default: Debian's linux-source package "
    "in /usr/src).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build directory, kept for incremental rebuilds (default: <state dir>/tmp/kernel-build).",
)
@click.option(
    "--config",
    "fragment",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A kconfig fragment to use instead of the project's microvm.config.",
)
@click.option("--name", default=None, help="Store the kernel under this name.")
@click.option(
    "--output", default=None, help="Also export it: oci-archive:FILE|docker-archive:FILE."
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Default: all CPUs.")
@click.option("--nice", "niceness", type=click.IntRange(0, 19), default=10, show_default=True)
@pass_app
def build(
    app: App,
    source: Path | None,
    workdir: Path | None,
    fragment: Path | None,
    name: str | None,
    output: str | None,
    jobs: int | None,
    niceness: int,
) -> None:
    """Build a microVM kernel (PVH, virtio-mmio, everything built in) and store it.

    Reuses the previous build while the source and the config are unchanged.
    """
    result = app.client().kernels._build(
        source=source,
        workdir=workdir,
        fragment=fragment,
        name=name,
        output=output,
        jobs=jobs,
        niceness=niceness,
    )
    k = result.kernel
    for opt in result.dropped:
        click.echo(f"warning: config option not kept: {opt}", err=True)
    if app.quiet:
        click.echo(k.metadata.uid)
        return
    how = f"built in {result.seconds:.0f} s" if result.built else "reused"
    click.echo(f"{k.metadata.uid}  {k.metadata.name}  {k.status.version}  ({how})")
    if result.archive is not None:
        click.echo(f"exported to {result.archive}")


@kernel.command("ls")
@pass_app
def ls(app: App) -> None:
    """List the imported kernels."""
    kernels = app.client().kernels.list()
    if app.quiet:
        for k in kernels:
            click.echo(k.metadata.uid)
        return
    rows = [
        [
            k.metadata.uid,
            k.metadata.name,
            format_age(k.metadata.created),
            format_bytes(k.status.oci_source.size.bytes),
            k.status.version,
        ]
        for k in kernels
    ]
    print_table(["KERNEL ID", "NAME", "CREATED", "SIZE", "VERSION"], rows)


kernel.add_command(ls, "list")


@kernel.command("rm")
@click.argument("kernels", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even if VMs use the kernel.")
@pass_app
def rm(app: App, kernels: tuple[str, ...], force: bool) -> None:
    """Remove kernels."""
    client = app.client()
    for query in kernels:
        click.echo(client.kernels.remove(query, force=force).metadata.uid)


rmk = IgniteCommand(
    "rmk", callback=rm.callback, params=rm.params, help="Remove kernels (= ignite kernel rm)."
)
