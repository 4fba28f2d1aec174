"""Metrics text format, the HTTP endpoint, durations and URL redaction."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from ignitevm.cli.ignited import parse_duration
from ignitevm.errors import ValidationError
from ignitevm.gitops.metrics import CONTENT_TYPE, Metrics, parse_addr, serve_metrics
from ignitevm.gitops.source import redact


def test_render_text_format() -> None:
    m = Metrics()
    m.count_action("create")
    m.count_error("manifest", 2)
    m.record_pass(0.25, 1700000000.0)
    m.record_commit('abc"def', 1690000000.0)
    m.record_state(running=1, stopped=2, desired=3, errors=1, skipped=4)
    text = m.render()
    assert "# TYPE ignited_reconcile_passes_total counter\n" in text
    assert "\nignited_reconcile_passes_total 1\n" in text
    assert 'ignited_reconcile_actions_total{action="create"} 1\n' in text
    assert 'ignited_reconcile_actions_total{action="remove"} 0\n' in text
    assert 'ignited_reconcile_errors_total{kind="manifest"} 2\n' in text
    assert 'ignited_vms{state="stopped"} 2\n' in text
    assert "ignited_reconcile_pass_duration_seconds_sum 0.25\n" in text
    assert "ignited_reconcile_pass_duration_seconds_count 1\n" in text
    assert 'ignited_last_applied_commit_info{commit="abc\\"def"} 1\n' in text
    assert "ignited_last_applied_commit_timestamp_seconds 1690000000.0\n" in text
    for line in text.splitlines():  # every sample line is NAME[{labels}] VALUE
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_no_commit_no_commit_samples() -> None:
    text = Metrics().render()
    assert "ignited_last_applied_commit_info{" not in text
    assert "# TYPE ignited_last_applied_commit_info gauge" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_endpoint() -> None:
    m = Metrics()
    with serve_metrics(m, f"127.0.0.1:{_free_port()}") as bound:
        assert bound is not None
        url = f"http://{bound[0]}:{bound[1]}"
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"] == CONTENT_TYPE
            assert b"ignited_reconcile_passes_total 0" in resp.read()
        m.record_pass(0.1, 1.0)
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            assert b"ignited_reconcile_passes_total 1" in resp.read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}/", timeout=5)
        assert err.value.code == 404


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with (
            pytest.raises(ValidationError, match="cannot serve metrics"),
            serve_metrics(Metrics(), f"127.0.0.1:{port}"),
        ):
            pass


def test_metrics_off() -> None:
    with serve_metrics(Metrics(), "") as bound:
        assert bound is None


def test_parse_addr() -> None:
    assert parse_addr("127.0.0.1:9191") == ("127.0.0.1", 9191)
    assert parse_addr(":9191") == ("127.0.0.1", 9191)
    with pytest.raises(ValidationError):
        parse_addr("9191")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("5", 5), ("0.5", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "0s", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_duration(text)


def test_redact() -> None:
    assert redact("fatal: https://me:s3cret@example.com:8443/r.git x") == (
        "fatal: https://me:***@example.com:8443/r.git x"
    )
    assert redact("git://127.0.0.1/repo") == "git://127.0.0.1/repo"
