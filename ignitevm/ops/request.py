"""The VM that `ignite create/run` (or the library) asks for: the configuration's defaults <
a --config manifest < the given settings (the table in ignitevm/api/settings.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignitevm.api import VM, load_object
from ignitevm.api.settings import apply_settings
from ignitevm.errors import ValidationError
from ignitevm.ops.services import Services


def build_vm(
    svc: Services, settings: Mapping[str, Any], *, config_file: Path | None = None,
    manifest: VM | None = None,
) -> VM:  # fmt: skip
    """The VM to create: ``settings`` (name -> value; None: not given) over the manifest
    ``config_file`` (a VM object), the VM object ``manifest`` as it is (ignited's, copied) or,
    without either, over the configuration's vmDefaults."""
    if manifest is not None:
        vm = manifest.model_copy(deep=True)
    elif config_file is not None:
        obj = load_object(config_file)
        if not isinstance(obj, VM):
            raise ValidationError(
                f"{config_file}: kind {obj.kind} is not a VM", hint="--config takes a VM"
            )
        vm = obj
        vm.status = VM().status  # a manifest's status is what it wants, not what is
    elif settings.get("snapshot"):
        vm = VM()  # the snapshot's machine (ops/restore.py), not the configured defaults
    else:
        vm = VM(spec=svc.config.spec.vm_defaults.model_copy(deep=True))
    return apply_settings(vm, settings)
