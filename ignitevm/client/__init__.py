"""The library (docs/library.md): ``Client``, the ``VM`` handle and ``ExecResult``. Import
them from ``ignitevm``; this package's layout is private."""

from ignitevm.client.client import Client, Images, Kernels, Snapshots, VMs
from ignitevm.client.vm import VM, ExecResult

__all__ = ["VM", "Client", "ExecResult", "Images", "Kernels", "Snapshots", "VMs"]
