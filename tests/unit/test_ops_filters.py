from __future__ import annotations

import pytest

from ignitevm.api import VM
from ignitevm.errors import ValidationError
from ignitevm.ops.filters import match_all, parse_filters


def _vm(name: str, running: bool = False, memory: str = "512MB") -> VM:
    vm = VM()
    vm.metadata.name = name
    vm.metadata.uid = "0123456789abcdef"
    vm.metadata.labels = {"env": "test", "ignite.weave.works/owner": "ignited", "testName": "T1"}
    vm.spec.memory = memory  # type: ignore[assignment]
    vm.spec.cpus = 2
    vm.status.running = running
    return vm


@pytest.mark.parametrize(
    ("expr", "name", "expected"),
    [
        ("{{.ObjectMeta.Name}}=web", "web", True),
        ("{{.ObjectMeta.Name}}==web", "web", True),
        ("{{.ObjectMeta.Name}}=web", "db", False),
        ("{{.ObjectMeta.Name}}!=web", "db", True),
        ("{{.ObjectMeta.Name}}=~^w", "web", True),
        ("{{.ObjectMeta.Name}}!~^w", "web", False),
        ("{{.ObjectMeta.Name}}=~e,{{.ObjectMeta.Name}}!=web", "web", False),
        ("{{.Name}}=web", "web", True),  # promoted from the embedded ObjectMeta, as in Go
        ("{{.metadata.name}}=web", "web", True),  # JSON names are forgiven
        ("{{.ObjectMeta.Labels.env}}=test", "x", True),
        ("{{.ObjectMeta.Labels.nope}}=<no value>", "x", True),
        # a whole map renders as Go's map[k:v ...], keys sorted (Ignite's e2e tests use this)
        ("{{.ObjectMeta.Labels}}=~testName:T1", "x", True),
        ("{{.ObjectMeta.Labels}}=~testName:T2", "x", False),
        ("{{.ObjectMeta.Labels}}=map[env:test ignite.weave.works/owner:ignited testName:T1]",
         "x", True),
        # sizes as Ignite's Size.String(), bools and numbers as Go prints them
        ("{{.Spec.Memory}}=512.0 MB", "x", True),
        ("{{.Spec.Memory}}=~512", "x", True),
        ("{{.Spec.Memory}}=512MB", "x", False),
        ("{{.Spec.CPUs}}=2", "x", True),
        ("{{.Status.Running}}=false", "x", True),
        ("{{.Status.Runtime}}=<nil>", "x", True),
        ('{{index .ObjectMeta.Labels "ignite.weave.works/owner"}}=ignited', "x", True),
        ('{{index .ObjectMeta.Labels "ignite.weave.works/owner"}}=other', "x", False),
    ],
)  # fmt: skip
def test_filters(expr: str, name: str, expected: bool) -> None:
    assert match_all(parse_filters(expr), _vm(name)) is expected


def test_running_filter() -> None:
    assert match_all(parse_filters("{{.Status.Running}}=true"), _vm("a", running=True))


@pytest.mark.parametrize(
    "bad", ["name=web", "{{.ObjectMeta.Name}}", "{{.Name}}=~(unclosed", "{{foo .Name}}=x"]
)
def test_bad_filters_name_themselves(bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_filters(bad)
    assert "filter" in err.value.message


def test_unknown_field_is_an_error_naming_it() -> None:
    filters = parse_filters("{{.Spec.Colour}}=red")
    with pytest.raises(ValidationError) as err:
        match_all(filters, _vm("x"))
    assert "can't evaluate field Colour in type VMSpec" in err.value.message
    assert "{{.Spec.Colour}}=red" in err.value.message
    assert err.value.hint is not None and "CPUs" in err.value.hint
