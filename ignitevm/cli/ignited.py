"""`ignited`: reconcile VMs from a manifest directory (daemon) or a git repository (gitops)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ignitevm.cli.app import LOG_LEVELS, NETWORK_PLUGINS, RUNTIMES, ignore_preflight_option, run_cli
from ignitevm.errors import IgniteError, ValidationError
from ignitevm.userpaths import ROOT_MANIFEST_DIR, default_manifest_dir, is_root

if TYPE_CHECKING:
    from ignitevm.gitops.source import ManifestSource

log = logging.getLogger(__name__)

DEFAULT_MANIFEST_DIR = ROOT_MANIFEST_DIR  # root's; a user's is in userpaths.py


@dataclass
class Globals:
    log_level: str | None = None
    ignite_config: Path | None = None


def _common_options(f: Any) -> Any:
    opts = [
        click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None,
                     help="How much to log (default info)."),
        click.option("--ignite-config", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Configuration file (default /etc/ignite/config.yaml; "
                     "for a user other than root, ~/.config/ignite/config.yaml)."),
        click.option("--runtime", type=click.Choice(RUNTIMES, case_sensitive=False),
                     default=None, help="Accepted for Ignite compatibility; VMs run under QEMU."),
        click.option("--network-plugin", type=click.Choice(NETWORK_PLUGINS),
                     default=None, help="Networking of new VMs (default: the configuration's)."),
        click.option("--interval", default="30s", show_default=True, metavar="DURATION",
                     help="Re-sync and reconcile every DURATION (e.g. 10s, 2m) even without a "
                          "change."),
        click.option("--once", is_flag=True, help="One reconcile pass, then exit (1 on errors)."),
        click.option("--host", default=None, metavar="NAME",
                     help="Reconcile only manifests annotated ignite.weave.works/host=NAME."),
        click.option("--metrics-addr", default=None, metavar="HOST:PORT",
                     help="Prometheus metrics (default 127.0.0.1:9191 for root; off with --once "
                          "or for other users unless given; '' turns them off)."),
        click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True,
                     help="VMs acted on in parallel."),
        click.option("--boot-timeout", type=float, default=None,
                     help="Seconds to wait for a VM's init (default as ignite start)."),
        ignore_preflight_option(),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None, help="How much to log.")
@click.option("--ignite-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Configuration file (default /etc/ignite/config.yaml; for a user other "
                   "than root, ~/.config/ignite/config.yaml).")  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, ignite_config: Path | None) -> None:
    """ignited: keep the VMs of a manifest directory or a git repository running (GitOps)."""
    ctx.obj = Globals(log_level, ignite_config)


@cli.command()
@click.option("--manifest-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Directory of VM manifests (nested, YAML or JSON; default "
              "/etc/firecracker/manifests, for a user other than root "
              "~/.config/ignite/manifests).")  # fmt: skip
@_common_options
@click.pass_obj
def daemon(g: Globals, /, manifest_dir: Path | None, **params: Any) -> None:
    """Reconcile the VM manifests of a directory."""
    from ignitevm.gitops.source import DirectorySource

    _setup(g, params)
    _serve(g, params, DirectorySource(manifest_dir or default_manifest_dir()))


@cli.command()
@click.argument("repo")
@click.option("-b", "--branch", default=None, help="Branch to follow (default: the remote's HEAD).")
@click.option("--path", "subdir", default="", help="Sub-directory holding the manifests.")
@click.option(
    "--identity-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="SSH private key for ssh:// and user@host:path repositories.",
)
@click.option(
    "--hosts-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="SSH known_hosts file to check the server against.",
)
@click.option(
    "--https-username",
    default=None,
    envvar="IGNITED_HTTPS_USERNAME",
    help="HTTPS user name (or $IGNITED_HTTPS_USERNAME).",
)
@click.option(
    "--https-password",
    default=None,
    envvar="IGNITED_HTTPS_PASSWORD",
    help="HTTPS password or token (better: $IGNITED_HTTPS_PASSWORD, not in ps).",
)
@_common_options
@click.pass_obj
def gitops(g: Globals, /, repo: str, branch: str | None, subdir: str,
           identity_file: Path | None, hosts_file: Path | None, https_username: str | None,
           https_password: str | None, **params: Any) -> None:  # fmt: skip
    """Reconcile the VM manifests of a git repository, following a branch."""
    from ignitevm.gitops.source import GitAuth, GitSource, check_repo_url

    _setup(g, params)
    check_repo_url(repo)
    auth = GitAuth(identity_file, hosts_file, https_username, https_password)
    _serve(g, params, GitSource(repo, branch=branch, path=subdir.strip("/"), auth=auth))


@cli.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        click.echo(f"ignited version {dist_version('ignitevm')}")
    except PackageNotFoundError:
        click.echo("ignited version unknown (not installed)")


def _setup(g: Globals, params: dict[str, Any]) -> None:
    g.log_level = params.pop("log_level") or g.log_level or "info"
    g.ignite_config = params.pop("ignite_config") or g.ignite_config
    level = getattr(logging, g.log_level.upper(), logging.INFO)
    debug = level <= logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s"
        if debug
        else "%(asctime)s %(levelname).1s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )


def _serve(g: Globals, params: dict[str, Any], source: ManifestSource) -> None:
    from ignitevm.gitops.daemon import Daemon, hold_owner_lock
    from ignitevm.gitops.metrics import DEFAULT_METRICS_ADDR, Metrics, serve_metrics
    from ignitevm.gitops.opsbridge import ServicesOps
    from ignitevm.gitops.plan import owner_value
    from ignitevm.gitops.reconcile import Reconciler
    from ignitevm.gitops.source import GitSource, gitops_workdir
    from ignitevm.ops.preflight import parse_ignored
    from ignitevm.ops.services import build_services

    interval = parse_duration(params["interval"])
    once: bool = params["once"]
    addr = params["metrics_addr"]
    if addr is None:
        # a fixed port is one per machine: a second user's daemon could not start, and every
        # local user could read the first one's VMs
        addr = "" if once or not is_root() else DEFAULT_METRICS_ADDR
    svc = build_services(g.ignite_config)
    owner = owner_value(params["host"])
    # kept until the process ends (the kernel drops it however ignited dies)
    lock_fd = hold_owner_lock(svc.store.root, owner)
    if isinstance(source, GitSource) and source.workdir is None:
        # in the state dir, not a temp dir: a restart fetches only what is new and can fall
        # back on the last checkout while the repository is unreachable
        source.workdir = gitops_workdir(svc.store.root, source.url, source.branch, params["host"])
        source.persistent = True
    ops = ServicesOps(
        svc,
        params["network_plugin"],
        boot_timeout=params["boot_timeout"],
        ignore_preflight=parse_ignored(params["ignore_preflight"]),
    )
    metrics = Metrics()
    reconciler = Reconciler(ops, owner, metrics, workers=params["workers"])
    stop = threading.Event()
    runner = Daemon(source, reconciler, params["host"], interval, stop)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with serve_metrics(metrics, addr):
            if once:
                result = runner.run_once()
                if not result.ok:
                    raise IgniteError(
                        f"the pass ended with {len(result.errors) + len(result.failed)} error(s)",
                        hint="see the log above; the other VMs were reconciled",
                    )
                return
            log.info("reconciling every %g s (stop: SIGTERM or Ctrl-C)", interval)
            runner.run_forever()
    finally:
        source.close()
        os.close(lock_fd)


def parse_duration(text: str) -> float:
    """Go-style durations as Ignite took them: 30s, 2m, 1m30s, 500ms, 1h; a bare number: s."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    rest, total = text.strip(), 0.0
    try:
        if rest.replace(".", "", 1).isdigit():
            total = float(rest)
            rest = ""
        while rest:
            num = ""
            while rest and (rest[0].isdigit() or rest[0] == "."):
                num, rest = num + rest[0], rest[1:]
            unit = next(u for u in ("ms", "h", "m", "s") if rest.startswith(u))
            total, rest = total + float(num) * units[unit], rest[len(unit) :]
    except (StopIteration, ValueError):
        raise ValidationError(
            f"invalid duration {text!r}", hint="e.g. --interval 30s, 2m, 1m30s"
        ) from None
    if total <= 0:
        raise ValidationError(f"--interval {text!r} must be more than zero", hint="e.g. 30s")
    return total


def main(argv: list[str] | None = None) -> None:
    """Entry point of `ignited`."""
    run_cli(cli, "ignited", argv)


if __name__ == "__main__":
    main()
