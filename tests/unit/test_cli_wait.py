"""``--wait`` of ``ignite run`` and ``ignite start`` (issue 14 item 4): Ignite's bool flag with
an optional value; ``--wait=false`` returns once the VMM is launched (the library's
``VM.start(wait=False)``, which the CLI calls)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from ignitevm.cli.main import cli


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    class FakeVM:
        uid = name = "0123456789abcdef"
        status = SimpleNamespace(network=SimpleNamespace(ip_addresses=[]))

        def __init__(self, query: str) -> None:
            self.query = query

        def start(self, **kw: Any) -> FakeVM:
            calls.append({"query": self.query, **kw})
            return self

    monkeypatch.setattr("ignitevm.client.client.VMs.get", lambda self, query: FakeVM(query))
    return calls


@pytest.mark.parametrize(
    ("args", "wait"),
    [([], True), (["--wait"], True), (["--wait=true"], True), (["--wait=false"], False),
     (["--wait=0"], False), (["--wait=T"], True)],
)  # fmt: skip
def test_start_wait_values(started: list[dict[str, Any]], args: list[str], wait: bool) -> None:
    result = CliRunner().invoke(cli, ["start", *args, "myvm"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert started == [started[0]] and started[0]["wait"] is wait
    assert started[0]["query"] == "myvm"


def test_a_wait_value_that_is_no_bool_is_refused(started: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(cli, ["start", "--wait=later", "myvm"])
    assert result.exit_code != 0 and "--wait=false" in result.output
    assert started == []


def test_run_passes_wait_false(
    started: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_create(ctx: object, image: object, params: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(uid="0123456789abcdef")

    monkeypatch.setattr("ignitevm.cli.vm._do_create", fake_create)
    result = CliRunner().invoke(cli, ["run", "--wait=false", "img"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert started[0]["wait"] is False
