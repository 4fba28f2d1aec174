"""The configuration file (``/etc/ignite/config.yaml``, kind Configuration)."""

from __future__ import annotations

from pathlib import Path

from ignitevm.api.configuration import Configuration
from ignitevm.api.manifest import load_object
from ignitevm.errors import NotFoundError, ValidationError

DEFAULT_CONFIG_PATH = Path("/etc/ignite/config.yaml")


def load_configuration(path: Path | None, default: Path = DEFAULT_CONFIG_PATH) -> Configuration:
    """Read ``path`` (``--ignite-config``); None: ``default`` if it exists, else the defaults."""
    if path is None:
        if not default.exists():
            return Configuration()
        path = default
    elif not path.exists():
        raise NotFoundError(
            f"configuration file {path} does not exist",
            hint="check the --ignite-config path",
        )
    obj = load_object(path)
    if not isinstance(obj, Configuration):
        raise ValidationError(
            f"{path}: kind: expected Configuration, found {obj.kind}",
            hint="the configuration file holds one object of kind Configuration",
        )
    return obj
