from __future__ import annotations

import pytest

from ignitevm.api import VM, to_dict
from ignitevm.errors import ValidationError
from ignitevm.ops.filters import match_all, parse_filters


def _vm(name: str, running: bool = False, memory: str = "512MB") -> dict[str, object]:
    vm = VM()
    vm.metadata.name = name
    vm.metadata.uid = "0123456789abcdef"
    vm.metadata.labels = {"env": "test", "ignite.weave.works/owner": "ignited"}
    vm.spec.memory = memory  # type: ignore[assignment]
    vm.status.running = running
    return to_dict(vm)


@pytest.mark.parametrize(
    ("expr", "name", "expected"),
    [
        ("{{.ObjectMeta.Name}}=web", "web", True),
        ("{{.ObjectMeta.Name}}=web", "db", False),
        ("{{.ObjectMeta.Name}}!=web", "db", True),
        ("{{.ObjectMeta.Name}}=~^w", "web", True),
        ("{{.ObjectMeta.Name}}!~^w", "web", False),
        ("{{.ObjectMeta.Name}}=~e,{{.ObjectMeta.Name}}!=web", "web", False),
        ("{{.ObjectMeta.Labels.env}}=test", "x", True),
        ("{{.Spec.Memory}}=512MB", "x", True),
        ("{{.Status.Running}}=false", "x", True),
        ('{{index .ObjectMeta.Labels "ignite.weave.works/owner"}}=ignited', "x", True),
        ('{{index .ObjectMeta.Labels "ignite.weave.works/owner"}}=other', "x", False),
    ],
)
def test_filters(expr: str, name: str, expected: bool) -> None:
    assert match_all(parse_filters(expr), _vm(name)) is expected


@pytest.mark.parametrize("bad", ["name=web", "{{.ObjectMeta.Name}}", "{{.Name}}=~(unclosed"])
def test_bad_filters_name_themselves(bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_filters(bad)
    assert "filter" in err.value.message
