"""ignitevm.testing: a pytest plugin that gives each test a real, fresh VM (docs/library.md
"Testing against real machines"), as testcontainers gives containers.

Installed with ignitevm (the ``pytest11`` entry point), so a test only asks for it::

    @pytest.mark.ignitevm(image="ignitevm/default", memory="256MB")
    def test_uname(vm):
        assert vm.exec("uname -s", check=True).stdout == "Linux\\n"

The ``vm`` fixture's image and settings come from the test's ``ignitevm`` marker (the library's
keywords: ``memory=``, ``ssh=``, ``ports=``, ...), over the ini options::

    [pytest]
    ignitevm_image = ignitevm/default
    ignitevm_settings =
        memory=256MB
        network_plugin=user
    ignitevm_state_dir = /var/lib/firecracker   # default: the library's
    ignitevm_fork = true

With ``ignitevm_fork`` (the default), the first test of an image and settings boots a template
VM once and snapshots it; every test then gets a VM resumed from that snapshot (a fraction of
a second instead of a boot). Where snapshots are impossible (not root, shares or volumes in
the settings) each test boots its own VM. ``fork=False`` in a marker asks for a boot. Every VM
is removed after its test, whatever the test did; the templates at the end of the session.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ignitevm.client import VM, Client

__all__ = ["ignitevm_client", "vm"]

# what a VM resumed from a snapshot may still choose; the rest is the snapshot's machine
_PER_COPY = {"name", "labels", "ports", "network_plugin", "restart"}
_ON = ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("ignitevm_image", "the image of the vm fixture's VMs (ignitevm.testing)")
    parser.addini("ignitevm_settings", "VM settings of the vm fixture, KEY=VALUE per line",
                  type="linelist", default=[])  # fmt: skip
    parser.addini("ignitevm_state_dir", "the state directory of ignitevm's Client")
    parser.addini("ignitevm_config", "the ignite configuration file of ignitevm's Client")
    parser.addini("ignitevm_fork", "resume each test's VM from a snapshot of a template VM",
                  default="true")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ignitevm(image=None, fork=True, **settings): the VM that the vm fixture makes "
        "(ignitevm.testing; settings are the library's keywords)",
    )


def parse_settings(lines: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` lines: true/false become booleans, a key given again makes a list."""
    from ignitevm.errors import ValidationError

    settings: dict[str, Any] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(f"ignitevm_settings: {line!r} is not KEY=VALUE",
                                  hint="e.g. memory=256MB")  # fmt: skip
        parsed: Any = value.strip()
        if parsed.lower() in ("true", "false"):
            parsed = parsed.lower() == "true"
        if key in settings:
            before = settings[key]
            settings[key] = [*(before if isinstance(before, list) else [before]), parsed]
        else:
            settings[key] = parsed
    return settings


class Templates:
    """One snapshot per (image, settings), made on first use; removed at the end."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.made: dict[str, str | None] = {}  # key -> snapshot uid (None: impossible)
        self.vms: list[VM] = []

    def snapshot_for(self, image: str | None, settings: dict[str, Any]) -> str | None:
        from ignitevm.errors import IgniteError

        key = json.dumps([image, settings], sort_keys=True, default=str)
        if key in self.made:
            return self.made[key]
        self.made[key] = None
        if settings.get("shares") or settings.get("volumes"):
            return None
        name = "ignitevm-testing-" + hashlib.sha256(key.encode()).hexdigest()[:10]
        base = {k: v for k, v in settings.items() if k != "name"}
        try:
            template = self.client.vms.run(image, name=name, **base)
            self.vms.append(template)
            template.wait_ready()
            snap = template.snapshot(name, stop=True)
        except IgniteError as exc:
            warnings.warn(f"ignitevm.testing: each test boots its own VM (no snapshot: "
                          f"{exc.message})", stacklevel=2)  # fmt: skip
            return None
        self.made[key] = snap.metadata.uid
        return snap.metadata.uid

    def close(self) -> None:
        from ignitevm.errors import IgniteError

        for template in self.vms:
            template.remove(force=True)
        for uid in filter(None, self.made.values()):
            try:
                self.client.snapshots.remove(uid, force=True)
            except IgniteError as exc:
                warnings.warn(f"ignitevm.testing: snapshot {uid} left: {exc.message}",
                              stacklevel=2)  # fmt: skip


@pytest.fixture(scope="session")
def ignitevm_client(pytestconfig: pytest.Config) -> Client:
    """The ignitevm.Client of the session (the ini's ``ignitevm_state_dir``/``ignitevm_config``)."""
    from ignitevm.client import Client

    state_dir = pytestconfig.getini("ignitevm_state_dir") or None
    config = pytestconfig.getini("ignitevm_config") or None
    return Client(state_dir=state_dir, config=config)


@pytest.fixture(scope="session")
def _ignitevm_templates(ignitevm_client: Client) -> Iterator[Templates]:
    templates = Templates(ignitevm_client)
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture
def vm(
    request: pytest.FixtureRequest, ignitevm_client: Client, _ignitevm_templates: Templates
) -> Iterator[VM]:
    """A running VM of its own for this test, removed after it (ignitevm.testing)."""
    config = request.config
    settings = parse_settings(config.getini("ignitevm_settings"))
    image: str | None = config.getini("ignitevm_image") or None
    fork = str(config.getini("ignitevm_fork")).lower() in _ON
    marker = request.node.get_closest_marker("ignitevm")
    if marker is not None:
        wanted = dict(marker.kwargs)
        image = wanted.pop("image", image)
        fork = bool(wanted.pop("fork", fork))
        settings.update(wanted)
    snapshot = _ignitevm_templates.snapshot_for(image, settings) if fork else None
    if snapshot is not None:
        mine = {k: v for k, v in settings.items() if k in _PER_COPY}
        made = ignitevm_client.vms.run(snapshot=snapshot, **mine)
    else:
        made = ignitevm_client.vms.run(image, **settings)
    with made:  # removed however the test ends
        yield made
