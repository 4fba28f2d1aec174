"""The command line parses like Ignite's cobra commands: global flags before or after every command
and subcommand, `-aq`, exec's remote flags, `--ssh` taking a value only after `=`, `--help`'s
global heading. Parse-level: the command's callback is replaced by a recorder, no VM is touched."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from ignitevm.cli.app import GLOBAL_OPTIONS, App
from ignitevm.cli.lazy import GlobalOptionsMixin
from ignitevm.cli.main import cli

VM_VERBS = [
    ("run", ["img"]), ("create", ["img"]), ("start", ["vm1"]), ("stop", ["vm1"]),
    ("kill", ["vm1"]), ("rm", ["vm1"]), ("ps", []), ("ls", []), ("logs", ["vm1"]),
    ("attach", ["vm1"]), ("ssh", ["vm1"]), ("cp", ["a", "vm1:/b"]),
]  # fmt: skip
# every command and subcommand with the arguments it needs to parse
COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("run",): ["img"],
    ("create",): ["img"],
    ("start",): ["vm1"],
    ("stop",): ["vm1"],
    ("kill",): ["vm1"],
    ("rm",): ["vm1"],
    ("ps",): [],
    ("logs",): ["vm1"],
    ("attach",): ["vm1"],
    ("ssh",): ["vm1"],
    ("cp",): ["vm1:/etc/motd", "/tmp/x"],
    ("inspect",): ["vm", "vm1"],
    ("image", "import"): ["oci-archive:/tmp/x.tar"],
    ("image", "ls"): [],
    ("image", "list"): [],
    ("image", "rm"): ["img1"],
    ("kernel", "import"): ["apt:linux-image-amd64"],
    ("kernel", "ls"): [],
    ("kernel", "list"): [],
    ("kernel", "rm"): ["k1"],
    ("kernel", "build"): [],
    ("rmi",): ["img1"],
    ("rmk",): ["k1"],
    ("version",): [],
    ("completion",): ["bash"],
    **{("vm", verb): args for verb, args in VM_VERBS},
}
# exec takes flags only before the VM: after it, they belong to the remote command
EXEC_ARGS = ["vm1", "true"]

# flag words -> what the App holds afterwards
GLOBALS: list[tuple[list[str], str, object]] = [
    (["--log-level", "debug"], "log_level", "debug"),
    (["--log-level=warning"], "log_level", "warning"),
    (["-q"], "quiet", True),
    (["--quiet"], "quiet", True),
    (["--ignite-config", "/etc/ignite/other.yaml"], "config_path", "/etc/ignite/other.yaml"),
    (["--runtime", "docker"], "runtime", "docker"),
    (["--runtime=containerd"], "runtime", "containerd"),
    (["--network-plugin", "user"], "network_plugin", "user"),
    (["--id-prefix", "myign"], "id_prefix", "myign"),
]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def _leaf(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    ctx = click.Context(cli)
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, name)
        assert found is not None, path
        command = found
    return command


def parse(
    monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], argv: list[str]
) -> tuple[App, dict[str, Any]]:
    """Run `ignite ARGV` with the leaf command's callback replaced: (the App, its parameters)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(_leaf(path), "callback", lambda **params: seen.update(params))
    app = App()
    result = CliRunner().invoke(cli, argv, obj=app, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return app, seen


def _value(app: App, attr: str) -> object:
    value = getattr(app, attr)
    return str(value) if attr == "config_path" and value is not None else value


@pytest.mark.parametrize(("flag", "attr", "expected"), GLOBALS)
@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_command_takes_every_global_flag_after_it(
    monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], flag: list[str], attr: str,
    expected: object,
) -> None:  # fmt: skip
    args = COMMANDS[path]
    for argv in ([*path, *flag, *args], [*path, *args, *flag]):
        app, params = parse(monkeypatch, path, argv)
        if attr == "network_plugin" and "network_plugin" in params:
            # run/create/start have the option under their own name: the same flag
            assert params["network_plugin"] == expected, argv
        else:
            assert _value(app, attr) == expected, argv


@pytest.mark.parametrize(("flag", "attr", "expected"), GLOBALS)
@pytest.mark.parametrize("path", [("exec",), ("vm", "exec")], ids=" ".join)
def test_exec_takes_global_flags_before_the_vm(
    monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], flag: list[str], attr: str,
    expected: object,
) -> None:  # fmt: skip
    app, params = parse(monkeypatch, path, [*path, *flag, *EXEC_ARGS])
    assert _value(app, attr) == expected
    assert params["vm"] == "vm1" and params["command"] == ("true",)


def test_exec_passes_flags_after_the_vm_to_the_remote_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, params = parse(
        monkeypatch, ("exec",), ["exec", "vm1", "ls", "-q", "--log-level", "debug", "-t"]
    )
    assert params["command"] == ("ls", "-q", "--log-level", "debug", "-t")
    assert app.quiet is False and app.log_level == "info" and params["tty"] is False
    app, params = parse(monkeypatch, ("vm", "exec"), ["vm", "exec", "-t", "-q", "vm1", "ls", "-q"])
    assert params["tty"] is True and app.quiet is True and params["command"] == ("ls", "-q")


def test_global_flags_before_and_between_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = parse(monkeypatch, ("vm", "ps"), ["-q", "vm", "ps"])
    assert app.quiet
    app, _ = parse(monkeypatch, ("image", "ls"), ["image", "--log-level", "debug", "ls"])
    assert app.log_level == "debug"
    app, _ = parse(
        monkeypatch, ("kernel", "ls"), ["--id-prefix", "a", "kernel", "--runtime", "docker", "ls"]
    )
    assert (app.id_prefix, app.runtime) == ("a", "docker")


def test_the_last_log_level_wins_and_takes_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = parse(monkeypatch, ("ps",), ["--log-level", "error", "ps", "--log-level", "debug"])
    assert app.log_level == "debug"
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    app, _ = parse(monkeypatch, ("ps",), ["--log-level", "debug", "ps", "--log-level=warning"])
    assert logging.getLogger().getEffectiveLevel() == logging.WARNING


def test_combined_short_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    app, params = parse(monkeypatch, ("ps",), ["ps", "-aq"])
    assert params["all_"] is True and app.quiet is True
    app, params = parse(monkeypatch, ("rm",), ["rm", "-fq", "a", "b"])
    assert params["force"] is True and app.quiet is True and params["vms"] == ("a", "b")


def test_run_network_plugin_given_before_the_command_is_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, params = parse(monkeypatch, ("run",), ["--network-plugin", "user", "run", "img"])
    assert app.network_plugin == "user" and params["network_plugin"] is None
    app, params = parse(
        monkeypatch, ("start",), ["--network-plugin", "user", "start", "vm1", "--network-plugin",
                                  "none"]
    )  # fmt: skip
    assert params["network_plugin"] == "none"  # the command's own wins when both are given


def test_bad_global_flag_value_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["ps", "--runtime", "podman"], obj=App())
    assert result.exit_code == 2 and "podman" in result.output


@pytest.mark.parametrize(
    ("argv", "image", "ssh"),
    [
        (["run", "--name=V", "--ssh", "img"], "img", "true"),
        (["run", "--ssh", "img", "--name", "V"], "img", "true"),
        (["run", "img", "--ssh"], "img", "true"),
        (["run", "--ssh=/keys/id.pub", "img"], "img", "/keys/id.pub"),
        (["create", "--ssh", "oci-archive:/tmp/x.tar"], "oci-archive:/tmp/x.tar", "true"),
        (["vm", "run", "-n", "V", "--ssh", "img"], "img", "true"),
        (["run", "img"], "img", None),
        # --ssh as the value of another option stays that option's value
        (["run", "--kernel-args", "--ssh", "img"], "img", None),
        (["run", "img", "--", "--ssh"], "img", None),
    ],
)
def test_ssh_takes_a_value_only_after_equals(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], image: str, ssh: str | None
) -> None:
    path = tuple(argv[:2]) if argv[0] == "vm" else (argv[0],)
    if argv[-2:] == ["--", "--ssh"]:
        # `--` ends the options: the word after it is an argument (one too many here)
        result = CliRunner().invoke(cli, argv, obj=App())
        assert result.exit_code == 2 and "unexpected extra argument" in result.output
        return
    _, params = parse(monkeypatch, path, argv)
    assert params["image"] == image and params["ssh"] == ssh


def test_help_lists_global_flags_under_their_own_heading() -> None:
    for argv in (["ps", "--help"], ["vm", "ps", "-h"], ["image", "--help"], ["run", "--help"]):
        out = CliRunner().invoke(cli, argv).output
        own, _, inherited = out.partition("Global Options:")
        assert inherited, argv
        for opt in ("--log-level", "--quiet", "--ignite-config", "--runtime", "--id-prefix"):
            assert opt in inherited and opt not in own, (argv, opt)
    run_help = CliRunner().invoke(cli, ["run", "--help"]).output
    assert "--ssh[=PUBKEY]" in run_help
    # run's --network-plugin is its own option
    assert "--network-plugin" in run_help.partition("Global Options:")[0]
    root = CliRunner().invoke(cli, ["--help"]).output
    assert "Global Options:" not in root and "--log-level" in root


def test_every_command_is_an_ignite_command() -> None:
    ctx = click.Context(cli)

    def walk(group: click.Group) -> Iterator[click.Command]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert isinstance(command, GlobalOptionsMixin), name
            yield command
            if isinstance(command, click.Group):
                yield from walk(command)

    names = {c.name for c in walk(cli)}
    assert {"run", "exec", "import", "build", "rmi", "rmk", "completion"} <= names
    assert len(GLOBAL_OPTIONS) == 6


def test_ignited_log_level_before_or_after_the_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    from ignitevm.cli import ignited

    seen: list[str | None] = []
    monkeypatch.setattr(ignited, "_serve", lambda g, params, source: seen.append(g.log_level))
    for argv in (["daemon", "--log-level", "debug"], ["--log-level", "debug", "daemon"]):
        result = CliRunner().invoke(ignited.cli, [*argv, "--manifest-dir", "/nonexistent"])
        assert result.exit_code == 0, result.output
    assert seen == ["debug", "debug"]


def test_id_prefix_overrides_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  idPrefix: conf\n"
    )
    monkeypatch.setenv("IGNITE_STATE_DIR", str(tmp_path / "state"))
    assert App(config_path=config).services().config.spec.id_prefix == "conf"
    assert App(config_path=config, id_prefix="flag").services().config.spec.id_prefix == "flag"


@pytest.mark.parametrize("path", [("run",), ("create",), ("vm", "run")], ids=" ".join)
def test_sandbox_image_is_accepted(monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...]) -> None:
    _, params = parse(monkeypatch, path, [*path, "--sandbox-image", "weaveworks/ignite:dev", "img"])
    assert params["sandbox_image"] == "weaveworks/ignite:dev" and params["image"] == "img"


def test_exec_drops_a_leading_double_dash() -> None:
    from ignitevm.cli.access import _command

    assert _command(("--", "uname", "-a")) == ["uname", "-a"]
    assert _command(("ls", "--", "-a")) == ["ls", "--", "-a"]
