"""ignitevm: Weave Ignite, "the GitOps VM", in Python."""

__version__ = "0.1.0"
