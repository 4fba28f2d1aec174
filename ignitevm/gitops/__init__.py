"""GitOps: ``ignited`` keeps VMs matching manifests from a directory or a git repository.

manifests.py reads the desired state, source.py fetches it (directory, git), plan.py decides,
reconcile.py acts (bounded pool, back-off) through opsbridge.py (ignitevm.ops), daemon.py loops,
metrics.py exports Prometheus metrics. See docs/gitops.md.
"""
