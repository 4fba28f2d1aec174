"""The client side of the supervisor: what ops/ calls to launch a VM, follow its console and
stop it (docs/runtime.md). The supervisor itself is ``ignitevm.spawn.supervisor``."""
