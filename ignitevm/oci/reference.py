"""Image references with Docker's defaults: ``[registry/]repo[:tag|@sha256:...]``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ignitevm.errors import ValidationError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# Docker Hub's API lives on a different host than its name.
_REGISTRY_ALIASES = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A parsed registry reference. ``tag`` is None only when a digest is given without one."""

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host:port that serves the distribution API for ``registry``."""
        return _REGISTRY_ALIASES.get(self.registry, self.registry)

    @property
    def target(self) -> str:
        """What to ask the manifests endpoint for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    # Docker's rule: the first component is a registry when it looks like a host.
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DEFAULT_REGISTRY, name


def parse_reference(text: str) -> Reference:
    """Parse ``text`` with Docker's defaults (docker.io, library/, latest)."""

    def bad(why: str) -> ValidationError:
        return ValidationError(
            f"invalid image reference {text!r}: {why}",
            hint="use [registry/]repository[:tag|@sha256:<hex>], e.g. docker.io/library/debian:12",
        )

    if not text or text != text.strip():
        raise bad("empty or surrounded by spaces")
    name, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        raise bad(f"bad digest {digest!r}")
    if at and digest.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise bad("a sha256 digest has 64 lowercase hex characters")
    registry, remainder = _split_registry(name)
    tag: str | None = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.match(tag):
            raise bad(f"bad tag {tag!r}")
    if not _HOST.match(registry):
        raise bad(f"bad registry {registry!r}")
    if registry in ("docker.io", "index.docker.io"):
        registry = DEFAULT_REGISTRY
        if "/" not in remainder:
            remainder = f"library/{remainder}"
    components = remainder.split("/")
    for comp in components:
        if not _COMPONENT.match(comp):
            raise bad(f"bad repository component {comp!r} (lowercase letters, digits, . _ -)")
    if len(remainder) > 255:
        raise bad("repository name longer than 255 characters")
    if tag is None and not at:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=remainder, tag=tag, digest=digest or None)
