"""Every bad input reaches the user as exactly two lines on stderr: one `error:` naming the flag
or the field, one `hint:` (issue 10, defect 6). Runs the real entry points in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ignitevm.cli.app import run_cli
from ignitevm.cli.ignited import cli as ignited_cli
from ignitevm.cli.main import main

VM_DOC = "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: b\n"
CONFIG_DOC = "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\n"


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("IGNITE_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "two-errors.yaml").write_text(VM_DOC + "spec:\n  cpus: 1000\n  memroy: 1GB\n")
    (tmp_path / "bad-port.yaml").write_text(
        VM_DOC + "spec:\n  network:\n    ports: [{hostPort: 70000, vmPort: 22}]\n"
    )
    (tmp_path / "config.yaml").write_text(CONFIG_DOC + "spec:\n  vmDefaults:\n    cpus: 0\n")
    (tmp_path / "config-field.yaml").write_text(CONFIG_DOC + "spec:\n  netwrkPlugin: cni\n")
    yield tmp_path
    logging.getLogger().setLevel(logging.WARNING)


CASES: list[tuple[list[str], str]] = [
    (["create", "img", "--cpus", "1000"], "error: --cpus 1000: "),
    (["create", "img", "--cpus", "many"], "error: --cpus 'many' is not a number"),
    (["create", "img", "--memory", "12XB"], "error: --memory '12XB': invalid size"),
    (["create", "img", "--size", "-1GB"], "error: --size '-1GB': invalid size"),
    (["create", "img", "-p", "99999:22"], "error: --ports port mapping '99999:22'"),
    (["create", "img", "--network-plugin", "foo"], "error: --network-plugin 'foo' is unknown"),
    (["create", "img", "--name", "a:b"], "error: --name 'a:b': "),
    (["create", "img", "-l", "x"], "error: --label 'x' is not KEY=VALUE"),
    (["create", "img", "--vmm", "kvm"], "error: --vmm 'kvm' is unknown"),
    (["create", "--config", "{d}/two-errors.yaml"], "spec.cpus: Input should be less"),
    (["create", "--config", "{d}/bad-port.yaml"], "spec.network.ports[0].hostPort: "),
    (["--ignite-config", "{d}/config.yaml", "ps"], "spec.vmDefaults.cpus: "),
    (["--ignite-config", "{d}/config-field.yaml", "ps"], "spec.netwrkPlugin: unknown field"),
    (["create", "img", "--nosuch"], "error: No such option '--nosuch'"),
    (["ps", "-o", "xml"], "error: Invalid value for '-o' / '--output'"),
    (["start"], "error: Missing argument 'VM'"),
]


@pytest.mark.parametrize(("argv", "expected"), CASES)
def test_bad_input_is_one_error_and_one_hint(
    files: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as done:
        main([a.format(d=files) for a in argv])
    assert done.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("error: ") and expected.format(d=files) in lines[0], lines
    assert lines[1].startswith("hint: "), lines


def test_a_model_error_reaching_the_cli_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from ignitevm.api import VM

    @click.group()
    def group() -> None:
        pass

    @group.command()
    def bad() -> None:
        VM().spec.cpus = 0  # validated assignment: a pydantic error no core code caught

    with pytest.raises(SystemExit) as done:
        run_cli(group, "ignite", ["bad"])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: cpus: Input should be greater than or equal to 1 (got 0)",
        "hint: see docs/api.md for the fields and their values",
    ]


def test_an_unexpected_error_is_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import click

    @click.command()
    def boom() -> None:
        raise FileExistsError(17, "File exists", "/var/lib/firecracker/vm/x")

    with pytest.raises(SystemExit) as done:
        run_cli(boom, "ignite", [])  # type: ignore[arg-type]
    assert done.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: File exists: /var/lib/firecracker/vm/x" and len(lines) == 2


@pytest.mark.usefixtures("restore_signals")  # ignited installs a SIGTERM handler
def test_ignited_logs_a_bad_manifest_as_one_error_and_one_hint(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = files / "manifests"
    manifests.mkdir()
    (manifests / "vm.yaml").write_text(VM_DOC + "spec:\n  cpus: 1000\n  memroy: 1GB\n")
    with pytest.raises(SystemExit) as done:
        run_cli(ignited_cli, "ignited",
                ["daemon", "--once", "--manifest-dir", str(manifests), "--network-plugin", "none",
                 "--workers", "1"])  # fmt: skip
    assert done.value.code == 1
    # the manifest's error and its hint (logged), the pass's error and its hint: a line each
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4, err
    assert "vm.yaml:1: spec.cpus: " in err[0] and "spec.memroy: unknown field" in err[0]
    assert "hint: see docs/api.md" in err[1]
    assert err[2:] == ["error: the pass ended with 1 error(s)",
                       "hint: see the log above; the other VMs were reconciled"]  # fmt: skip
