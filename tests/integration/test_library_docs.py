"""docs/library.md's examples, run as they are written (in order, in one namespace), with
``ignitevm.Client()`` pointed at the session's state directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ignitevm
from tests.integration.conftest import ROOT, Ignite

DOC = ROOT / "docs" / "library.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_the_doc_has_examples() -> None:
    assert len(_blocks()) >= 3


def test_the_examples_of_docs_library_md_run(
    ignite: Ignite, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = ignitevm.Client
    monkeypatch.setattr(ignitevm, "Client", lambda *a, **kw: real(
        state_dir=ignite.state_dir, config=ignite.config))  # fmt: skip
    namespace: dict[str, object] = {}
    try:
        for block in _blocks():
            exec(compile(block, str(DOC), "exec"), namespace)
        out = capsys.readouterr().out
        assert "Linux 6." in out and "line 3" in out and "not found" in out
    finally:
        Path("/tmp/docs-os-release").unlink(missing_ok=True)
    client = real(state_dir=ignite.state_dir, config=ignite.config)
    assert not [v for v in client.vms.list() if v.name.startswith("docs-")]
