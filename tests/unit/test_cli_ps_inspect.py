"""`ignite ps` and `ignite inspect` against a state directory of stored objects (no VM runs: the
supervisor's live state is faked): -t templates, -f filters, -q, -o json without -a."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from ignitevm.api import VM, Configuration, Image, ObjectMeta
from ignitevm.cli.app import App, run_cli
from ignitevm.cli.main import cli
from ignitevm.ops.services import Services
from ignitevm.spawn import runtime
from ignitevm.spawn.runtime import RuntimeState, RuntimeStatus
from ignitevm.store import Store

UP, DOWN = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    store = Store(tmp_path / "state")
    for uid, name in ((UP, "web"), (DOWN, "db")):
        vm = VM(metadata=ObjectMeta(name=name, uid=uid, created=datetime(2024, 1, 1, tzinfo=UTC)))
        vm.metadata.labels = {"testName": name.upper()}
        vm.spec.image.oci = "ignitevm/default:latest"
        vm.spec.memory = "800MB"  # type: ignore[assignment]
        vm.status.network.plugin = "cni"
        store.save(vm)
    image = Image(metadata=ObjectMeta(name="ignitevm/default:latest", uid="cccccccccccccccc"))
    image.spec.oci = "ignitevm/default:latest"
    store.save(image)

    def fake_status(vm_dir: Path) -> RuntimeStatus | None:
        if vm_dir.name != UP:
            return None
        return RuntimeStatus(supervisor_pid=42, vmm="qemu", state=RuntimeState.RUNNING,
                             started_at=1.7e9, ip_addresses=("10.61.0.5",),
                             network="cni")  # fmt: skip

    monkeypatch.setattr(runtime, "runtime_status", fake_status)
    return Services(config=Configuration(), store=store)


def ok(services: Services, *argv: str) -> str:
    result = CliRunner().invoke(cli, list(argv), obj=App(_services=services))
    assert result.exit_code == 0, (argv, result.output, result.exception)
    return result.stdout


def test_quiet_anywhere(services: Services) -> None:
    assert ok(services, "ps", "-q").split() == [UP]
    assert sorted(ok(services, "ps", "-aq").split()) == [UP, DOWN]
    assert sorted(ok(services, "-q", "vm", "ps", "-a").split()) == [UP, DOWN]
    assert ok(services, "image", "ls", "-q").split() == ["cccccccccccccccc"]
    assert ok(services, "kernel", "ls", "--quiet") == ""


def test_ps_template_once_per_vm(services: Services) -> None:
    out = ok(
        services, "ps", "-a", "-t", "{{.ObjectMeta.Name}} {{.Spec.Memory}} {{.Status.Running}}"
    )
    assert sorted(out.splitlines()) == ["db 800.0 MB false", "web 800.0 MB true"]
    # the template wins over -q, as in Ignite
    assert ok(services, "ps", "-q", "--template={{.Status.Network}}") == "{cni 10.61.0.5}\n"


def test_ps_filter_on_labels_as_a_go_map(services: Services) -> None:
    out = ok(services, "ps", "-a", "--filter={{.ObjectMeta.Labels}}=~testName:DB",
             "--template={{.ObjectMeta.Name}}")  # fmt: skip
    assert out == "db\n"


def test_ps_json_without_all_lists_running_vms_only(services: Services) -> None:
    assert [v["metadata"]["uid"] for v in json.loads(ok(services, "ps", "-o", "json"))] == [UP]
    everything = json.loads(ok(services, "ps", "-a", "-o", "json"))
    assert sorted(v["metadata"]["uid"] for v in everything) == [UP, DOWN]


def test_inspect_template(services: Services) -> None:
    assert ok(services, "inspect", "vm", "web", "-t", "{{.ObjectMeta.UID}}") == UP + "\n"
    out = ok(services, "inspect", "vm", DOWN[:4], "-o", "json", "-t", "{{.Status.Running}}")
    assert out == "false\n"  # never JSON when a template is given
    assert ok(services, "inspect", "image", "ignitevm/default:latest", "-t", "{{.Spec.OCI}}") == (
        "ignitevm/default:latest\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ps", "-t", "{{.Spec.Colour}}"], "can't evaluate field Colour in type VMSpec"),
        (["inspect", "vm", "web", "-t", "{{.Nope}}"], "can't evaluate field Nope in type VM"),
        (["ps", "-t", "{{.Name"], "unclosed action"),
        (["ps", "-a", "-f", "{{.Spec.Colour}}=red"], "can't evaluate field Colour"),
    ],
)
def test_template_errors(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:  # fmt: skip
    # through run_cli, as `ignite` runs: one `error:` line, exit code 2
    monkeypatch.setattr(App, "services", lambda self: services)
    with pytest.raises(SystemExit) as exit_:
        run_cli(cli, "ignite", argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_log_level_debug_after_the_command_shows_the_traceback(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(App, "services", lambda self: services)
    for argv, traceback in ((["inspect", "vm", "nope"], False),
                            (["inspect", "vm", "nope", "--log-level", "debug"], True)):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            run_cli(cli, "ignite", argv)
        assert exit_.value.code != 0
        err = capsys.readouterr().err
        assert "error: " in err and ("Traceback" in err) is traceback, err
