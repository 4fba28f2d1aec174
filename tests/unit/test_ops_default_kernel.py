from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ignitevm.api import VM, Configuration, Kernel, ObjectMeta
from ignitevm.api.types import Vmm
from ignitevm.errors import ValidationError
from ignitevm.ops.create import _default_kernel
from ignitevm.ops.services import DEFAULT_KERNEL_SOURCE, Services
from ignitevm.store import Store


def _svc(tmp_path: Path) -> Services:
    return Services(config=Configuration(), store=Store(tmp_path))


def _kernel(svc: Services, name: str, uid: str, day: int) -> None:
    svc.store.save(Kernel(metadata=ObjectMeta(
        name=name, uid=uid, created=datetime(2026, 1, day, tzinfo=UTC))))  # fmt: skip


def test_qemu_vms_get_the_configured_kernel(tmp_path: Path) -> None:
    assert _default_kernel(_svc(tmp_path), VM()) == DEFAULT_KERNEL_SOURCE


def test_firecracker_vms_get_the_newest_built_kernel(tmp_path: Path) -> None:
    svc = _svc(tmp_path)
    vm = VM()
    vm.spec.vmm = Vmm.FIRECRACKER
    with pytest.raises(ValidationError, match="none is built"):
        _default_kernel(svc, vm)
    _kernel(svc, "ignitevm/kernel:6.1-microvm-0123abcd", "0123456789abcdef", 1)
    _kernel(svc, "ignitevm/kernel:6.1-microvm", "fedcba9876543210", 2)
    _kernel(svc, "apt:linux-image-amd64", "00112233445566ff", 3)
    assert _default_kernel(svc, vm) == "ignitevm/kernel:6.1-microvm"
