"""Click classes of `ignite`: a group that imports a subcommand's module only when that subcommand
runs, and commands that parse like Ignite's cobra commands (docs/cli.md): the global flags are
accepted before or after every command and subcommand, and a flag such as ``--ssh`` takes a value
only as ``--ssh=VALUE`` (cobra's NoOptDefVal), so the next word stays an argument."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import click

from ignitevm.cli.app import GLOBAL_OPTIONS


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # name -> "module:attribute"
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


class OptionalValueOption(click.Option):
    """A long option whose value is optional and can only be attached: ``--ssh`` alone stands for
    ``no_value``; ``--ssh=KEY.pub`` gives one (cobra's NoOptDefVal)."""

    def __init__(self, *args: Any, no_value: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.secondary_opts or any(not opt.startswith("--") for opt in self.opts):
            raise TypeError(f"{self.opts}: only long options can have an optional value")
        self.no_value = no_value

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        return f"{', '.join(self.opts)}[={self.metavar or 'VALUE'}]", record[1]


class GlobalOptionsMixin(click.Command):
    """Every command and group gets the global flags as its own parameters, as cobra's
    persistent flags; ``--help`` lists them under a heading of their own."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        names = {p.name for p in params}
        opts = {opt for p in params for opt in p.opts}
        # a command's own option of the same name (run's --network-plugin) is the one it takes
        extra = [g for g in GLOBAL_OPTIONS if g.name not in names and not opts & set(g.opts)]
        help_option = self.get_help_option(ctx)
        at = params.index(help_option) if help_option in params else len(params)
        return [*params[:at], *extra, *params[at:]]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        inherited = ctx.parent is not None  # the root's own options are the global flags
        own: list[tuple[str, str]] = []
        global_: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                (global_ if inherited and param in GLOBAL_OPTIONS else own).append(record)
        if own:
            with formatter.section("Options"):
                formatter.write_dl(own)
        if global_:
            with formatter.section("Global Options"):
                formatter.write_dl(global_)
        if isinstance(self, click.Group):
            self.format_commands(ctx, formatter)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _attach_optional_values(self.get_params(ctx), args))


class IgniteCommand(GlobalOptionsMixin, click.Command):
    pass


class IgniteGroup(GlobalOptionsMixin, LazyGroup):
    command_class = IgniteCommand
    group_class = type  # click: groups made with @group.group() are IgniteGroups too

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, GlobalOptionsMixin):
            # a plain click command would refuse the global flags after its name
            raise TypeError(f"command {cmd_name!r} must be an IgniteCommand or an IgniteGroup")
        return command


def _attach_optional_values(params: Sequence[click.Parameter], args: list[str]) -> list[str]:
    """Rewrite a bare ``--ssh`` as ``--ssh=<no_value>``: click would take the next word as its
    value. Words that are the values of other options are left alone."""
    bare = {opt: p.no_value for p in params if isinstance(p, OptionalValueOption) for opt in p.opts}
    if not bare:
        return args
    takes_value = {
        opt
        for p in params
        if isinstance(p, click.Option) and not p.is_flag and not p.count
        for opt in p.opts
    }
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        if arg in bare:
            out.append(f"{arg}={bare[arg]}")
        else:
            out.append(arg)
            if arg in takes_value and i + 1 < len(args):
                i += 1
                out.append(args[i])
        i += 1
    return out
