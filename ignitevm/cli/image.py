"""`ignite image import|ls|rm`, `ignite rmi`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ignitevm.cli.app import App, pass_app
from ignitevm.cli.lazy import IgniteCommand, IgniteGroup
from ignitevm.cli.output import format_age, format_bytes, print_table


def registry_options(f: click.decorators.FC) -> click.decorators.FC:
    """Flags shared by everything that may pull from a registry."""
    f = click.option(
        "--registry-config-dir",
        "--client-config-dir",  # Ignite's later name of the flag
        "registry_config_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory with a Docker config.json holding registry credentials (default: the "
        "configuration's registryConfigDir, else ~/.docker).",
    )(f)
    f = click.option(
        "--insecure-registry",
        "insecure_registries",
        multiple=True,
        metavar="HOST[:PORT]",
        help="Skip TLS verification for this registry, or use plain HTTP when it has no TLS "
        "(plain HTTP always for localhost and 127.0.0.1).",
    )(f)
    f = click.option(
        "--platform", default="linux/amd64", show_default=True, help="Platform to resolve."
    )(f)
    return f


def apply_registry_options(
    app: App, registry_config_dir: Path | None, insecure_registries: tuple[str, ...], platform: str
) -> None:
    svc = app.services()
    given = svc.fetch  # the configuration's registryConfigDir, the environment's registries
    app._services = svc.with_fetch(
        registry_config_dir=registry_config_dir or given.registry_config_dir,
        insecure_registries=(*given.insecure_registries, *insecure_registries),
        platform=platform,
        progress=sys.stderr.isatty() and not app.quiet,
    )


@click.group(cls=IgniteGroup)
def image() -> None:
    """Manage base images for VMs."""


@image.command("import")
@click.argument("source")
@click.option("--name", default=None, help="Store the image under this name.")
@registry_options
@pass_app
def import_(
    app: App,
    source: str,
    name: str | None,
    registry_config_dir: Path | None,
    insecure_registries: tuple[str, ...],
    platform: str,
) -> None:
    """Import an OCI image as a VM base image.

    SOURCE: [registry/]repo[:tag|@digest], oci-archive:FILE, oci:DIR[:TAG],
    docker-archive:FILE, tar:FILE (a rootfs tarball) or dir:DIR.
    """
    apply_registry_options(app, registry_config_dir, insecure_registries, platform)
    img = app.client().images.import_(source, name=name)
    click.echo(img.metadata.uid if app.quiet else f"{img.metadata.uid}  {img.metadata.name}")


@image.command("ls")
@pass_app
def ls(app: App) -> None:
    """List the imported images."""
    client = app.client()
    images = client.images.list()
    if app.quiet:
        for img in images:
            click.echo(img.metadata.uid)
        return
    rows = [
        [
            img.metadata.uid,
            img.metadata.name,
            format_age(img.metadata.created),
            format_bytes(client.images.disk_usage(img)),
        ]
        for img in images
    ]
    print_table(["IMAGE ID", "NAME", "CREATED", "SIZE"], rows)


image.add_command(ls, "list")


@image.command("rm")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even if VMs use the image.")
@pass_app
def rm(app: App, images: tuple[str, ...], force: bool) -> None:
    """Remove images."""
    client = app.client()
    for query in images:
        click.echo(client.images.remove(query, force=force).metadata.uid)


rmi = IgniteCommand(
    "rmi", callback=rm.callback, params=rm.params, help="Remove images (= ignite image rm)."
)
