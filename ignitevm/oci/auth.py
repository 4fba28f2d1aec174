"""Registry credentials from Docker's ``config.json`` ("auths" entries)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ignitevm.errors import ValidationError

log = logging.getLogger(__name__)

# Names under which Docker stores Docker Hub's credentials.
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def default_config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def normalize_host(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``index.docker.io``; ``host:5000`` stays."""
    host = key.split("://", 1)[-1]
    host = host.split("/", 1)[0]
    return "docker.io" if host in _DOCKER_HUB else host


def _decode_entry(key: str, entry: Any, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        raise ValidationError(f"{path}: auths[{key!r}] is not an object")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"{path}: auths[{key!r}].auth is not base64 of 'user:password'",
                hint="run docker login again or write base64 of user:password",
            ) from exc
        user, sep, password = decoded.partition(":")
        if not sep:
            raise ValidationError(f"{path}: auths[{key!r}].auth lacks the ':' separator")
        return Credentials(user, password)
    if entry.get("username") is not None:
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    if entry.get("identitytoken"):
        log.debug("%s: identity tokens are not supported (entry %s)", path, key)
    return None


def load_auths(config_dir: Path | None) -> dict[str, Credentials]:
    """All usable credentials of ``<config_dir>/config.json``, keyed by normalized host."""
    path = (config_dir or default_config_dir()) / "config.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc}") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValidationError(f"{path} is not a JSON object")
    if doc.get("credsStore") or doc.get("credHelpers"):
        log.debug("%s: credential helpers are not supported; using 'auths' only", path)
    auths = doc.get("auths")
    if auths is None:
        auths = {}
    if not isinstance(auths, dict):
        raise ValidationError(f"{path}: 'auths' is not an object")
    result: dict[str, Credentials] = {}
    for key, entry in auths.items():
        creds = _decode_entry(str(key), entry, path)
        if creds is not None:
            result[normalize_host(str(key))] = creds
    return result


def find_credentials(registry: str, config_dir: Path | None) -> Credentials | None:
    """Credentials for ``registry`` (as written in references, e.g. ``127.0.0.1:5000``)."""
    return load_auths(config_dir).get(normalize_host(registry))
