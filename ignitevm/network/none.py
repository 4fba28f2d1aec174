"""Network plugin ``none``: the VM has no network device."""

from __future__ import annotations

from ignitevm.network.base import Attachment, NetworkRequest, PluginName


class NoNetwork:
    """Plugin ``none``: nothing to set up, nothing to undo."""

    name = PluginName.NONE

    def attach(self, req: NetworkRequest) -> Attachment:
        return Attachment()

    def detach(self, req: NetworkRequest) -> None:
        return None
