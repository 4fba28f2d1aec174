"""The configuration file (kind Configuration): ``/etc/ignite/config.yaml`` for root,
``$XDG_CONFIG_HOME/ignite/config.yaml`` for anyone else (userpaths.py)."""

from __future__ import annotations

from pathlib import Path

from ignitevm.api.configuration import Configuration
from ignitevm.api.manifest import load_object
from ignitevm.errors import NotFoundError, ValidationError
from ignitevm.userpaths import ROOT_CONFIG, default_config_path

DEFAULT_CONFIG_PATH = ROOT_CONFIG  # root's; a user's is in userpaths.py


def load_configuration(path: Path | None, default: Path | None = None) -> Configuration:
    """Read ``path`` (``--ignite-config``); None: ``default`` (this user's default file) if it
    exists, else the defaults."""
    if path is None:
        default = default or default_config_path()
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
