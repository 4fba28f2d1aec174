"""`ignite run|create|start|stop|kill|rm|ps|logs|attach`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ignitevm.cli.app import App, ignore_preflight_option, pass_app
from ignitevm.cli.lazy import IgniteCommand, OptionalValueOption
from ignitevm.cli.output import compile_go_template, format_age, format_bytes, print_table

if TYPE_CHECKING:
    from ignitevm.client import VM as VMHandle
    from ignitevm.ops.vmlist import VMView

log = logging.getLogger(__name__)


_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool, as Ignite's flags
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _parse_bool(value: str, flag: str) -> bool:
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise click.BadParameter(
        f"{value!r} is not true or false (a value goes after '=': {flag}=false)", param_hint=flag
    )


def _setting_option(name: str) -> Callable[[Any], Any]:
    """The flag of one VM setting (ignitevm/api/settings.py): text, checked by the setting."""
    from ignitevm.api.settings import BY_NAME

    s = BY_NAME[name]
    # --ssh takes a value only after '=' (cobra's NoOptDefVal): `--ssh IMAGE` is no key path
    ssh = name == "ssh"
    extra: dict[str, Any] = {"cls": OptionalValueOption, "no_value": "true"} if ssh else {}
    default = f"  [default: {s.default}]" if s.default else ""
    return click.option(*s.flags, s.name, multiple=s.repeat, default=None, metavar=s.metavar,
                        help=s.help + default, **extra)  # fmt: skip


def _create_options(f: Any) -> Any:
    """Every VM setting's flag, and create's own."""
    from ignitevm.api.settings import SETTINGS

    opts = [_setting_option(s.name) for s in SETTINGS if s.flags]
    opts += [
        click.option("--require-name", is_flag=True, help="Fail if no --name is given."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True,
                     path_type=Path), help="A VM manifest; flags given explicitly override it."),
        # Ignite ran each VM in a sandbox container of this image; ignitevm runs none
        click.option("--sandbox-image", default=None, metavar="OCI",
                     help="Accepted for Ignite compatibility and ignored (no sandbox container)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


def _start_options(f: Any) -> Any:
    opts = [
        click.option("-i", "--interactive", is_flag=True, help="Attach to the console after boot."),
        click.option("-d", "--debug", is_flag=True,
                     help="Debug the boot: /init traces; a failed boot keeps the VM."),
        click.option("--boot-timeout", type=float, default=180.0, show_default=True,
                     help="Seconds to wait for the guest's init."),
        # Ignite's bool flag with an optional value: --wait, --wait=true, --wait=false
        click.option("--wait", cls=OptionalValueOption, no_value="true", default="true",
                     metavar="BOOL", help="Wait for the guest to boot (--wait=false: return "
                     "once the VMM runs).  [default: true]"),
        ignore_preflight_option(),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


def _do_create(ctx: click.Context, image: str | None, params: dict[str, Any]) -> VMHandle:
    """The requested VM, created: config defaults < --config manifest < the flags given."""
    from ignitevm.api.settings import SETTINGS

    if params.get("sandbox_image"):
        log.debug("--sandbox-image %s ignored: ignitevm runs no container", params["sandbox_image"])
    # a flag not given is None: the manifest's or the configuration's value stays
    settings = {s.name: params.get(s.name) for s in SETTINGS if s.flags}
    settings = {k: v for k, v in settings.items() if v is not None}
    app: App = ctx.obj
    return app.client().vms.create(image, config_file=params["config_file"],
                                   require_name=params["require_name"], **settings)  # fmt: skip


@click.command(cls=IgniteCommand)
@click.argument("image", required=False)
@_create_options
@click.pass_context
def create(ctx: click.Context, /, image: str | None, **params: Any) -> None:
    """Create a VM from IMAGE without starting it."""
    click.echo(_do_create(ctx, image, params).uid)


@click.command(cls=IgniteCommand)
@click.argument("image", required=False)
@_create_options
@_start_options
@click.pass_context
def run(ctx: click.Context, /, image: str | None, **params: Any) -> None:
    """Create and start a VM from IMAGE (imported on first use)."""
    _do_start(ctx.obj, _do_create(ctx, image, params).uid, params)


def _do_start(app: App, query: str, params: dict[str, Any]) -> None:
    wait = _parse_bool(params["wait"], "--wait")
    vm = app.client().vms.get(query)
    vm.start(wait=wait, timeout=params["boot_timeout"], network_plugin=params.get("network_plugin"),
             debug=params["debug"], vmm=params.get("vmm"),
             ignore_preflight=params.get("ignore_preflight") or ())  # fmt: skip
    if app.quiet:
        click.echo(vm.uid)
    else:
        ips = ", ".join(vm.status.network.ip_addresses) or "no address"
        click.echo(f"{vm.uid}  {vm.name}  running ({ips})")
    if params["interactive"]:
        _attach(app, vm.uid)


@click.command(cls=IgniteCommand)
@click.argument("vm")
@_start_options
@_setting_option("network_plugin")
@_setting_option("vmm")
@pass_app
def start(app: App, /, vm: str, **params: Any) -> None:
    """Start a created or stopped VM."""
    _do_start(app, vm, params)


@click.command(cls=IgniteCommand)
@click.argument("vms", nargs=-1, required=True)
@click.option("-f", "--force-kill", "--force", "force", is_flag=True, help="Kill instead.")
@click.option("-t", "--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the guest to power off.")  # fmt: skip
@pass_app
def stop(app: App, vms: tuple[str, ...], force: bool, timeout: float) -> None:
    """Stop VMs: ACPI power button, then a hard stop after the timeout."""
    client = app.client()
    for query in vms:
        click.echo(client.vms.get(query).stop(force=force, timeout=timeout).uid)


@click.command(cls=IgniteCommand)
@click.argument("vms", nargs=-1, required=True)
@pass_app
def kill(app: App, vms: tuple[str, ...]) -> None:
    """Stop VMs at once (no graceful shutdown)."""
    client = app.client()
    for query in vms:
        click.echo(client.vms.get(query).kill().uid)


@click.command(cls=IgniteCommand)
@click.argument("vms", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="Stop running VMs first.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True,
              path_type=Path), help="Remove the VM this manifest names.")  # fmt: skip
@pass_app
def rm(app: App, vms: tuple[str, ...], force: bool, config_file: Path | None) -> None:
    """Remove VMs."""
    from ignitevm.errors import ValidationError

    queries = list(vms)
    if config_file is not None:
        from ignitevm.api import VM, load_object

        obj = load_object(config_file)
        if not isinstance(obj, VM):
            raise ValidationError(f"{config_file}: kind {obj.kind} is not a VM")
        queries.append(obj.metadata.uid or obj.metadata.name)
    if not queries:
        raise ValidationError("name at least one VM", hint="ignite rm VM... or --config FILE")
    client = app.client()
    for query in queries:
        click.echo(client.vms.remove(query, force=force).uid)


@click.command(cls=IgniteCommand)
@click.option("-a", "--all", "all_", is_flag=True, help="Show stopped VMs too.")
@click.option(
    "-f",
    "--filter",
    "filter_",
    default="",
    help="Only VMs that match, e.g. '{{.ObjectMeta.Name}}=x' (=, !=, =~, !~; a comma "
    "between filters: all of them).",
)
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@click.option(
    "-t",
    "--template",
    default="",
    metavar="GO-TEMPLATE",
    help="Print each VM with a Go template, e.g. '{{.ObjectMeta.Name}} {{.Spec.Memory}}'.",
)
@pass_app
def ps(app: App, all_: bool, filter_: str, output: str, template: str) -> None:
    """List running VMs (-a: all)."""
    tmpl = compile_go_template(template)  # first: a mistake fails before the VMs are read
    views = app.client().vms._views(all=all_, filters=filter_ or None)
    if tmpl is not None:  # as Ignite: the template wins over -q
        for v in views:
            click.echo(tmpl.render(v.vm))
        return
    if output != "table":
        _dump([v.vm for v in views], output)
        return
    if app.quiet:
        for v in views:
            click.echo(v.vm.metadata.uid)
        return
    print_table(_PS_HEADERS, [_ps_row(v) for v in views])


_PS_HEADERS = ["VM ID", "IMAGE", "KERNEL", "SIZE", "CPUS", "MEMORY", "CREATED", "STATUS",
               "IPS", "PORTS", "NAME"]  # fmt: skip


def _ps_row(view: VMView) -> list[str]:
    vm, st = view.vm, view.vm.status
    if view.damaged:  # its metadata.json is unreadable: `ignite rm -f UID` removes it
        return [vm.metadata.uid, *["?"] * 6, "Unknown", "", "", ""]
    if st.paused:
        status = "Paused"
    elif st.running:
        status = f"Up {format_age(st.start_time)}"
    else:
        status = "Suspended" if st.suspended else "Stopped"
    return [
        vm.metadata.uid,
        vm.spec.image.oci,
        vm.spec.kernel.oci,
        format_bytes(vm.spec.disk_size.bytes),
        str(vm.spec.cpus),
        format_bytes(vm.spec.memory.bytes),
        f"{format_age(vm.metadata.created)} ago",
        status,
        ", ".join(st.network.ip_addresses),
        ", ".join(view.ports),
        vm.metadata.name,
    ]


def _dump(objs: list[Any], fmt: str) -> None:
    import json

    from ignitevm.api import to_dict

    data = [to_dict(o) for o in objs]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


@click.command(cls=IgniteCommand)
@click.argument("vm")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
@pass_app
def logs(app: App, vm: str, follow: bool) -> None:
    """Print a VM's serial console."""
    for chunk in app.client().vms.get(vm).follow_logs(follow=follow):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


@click.command(cls=IgniteCommand)
@click.argument("vm")
@pass_app
def attach(app: App, vm: str) -> None:
    """Attach to a VM's serial console (detach: Ctrl-P Ctrl-Q)."""
    _attach(app, vm)


def _attach(app: App, query: str) -> None:
    if sys.stdin.isatty():
        click.echo("attached: detach with Ctrl-P Ctrl-Q", err=True)
    app.client().vms.get(query).attach(sys.stdin.fileno(), sys.stdout.fileno())
