"""Reading and writing objects: YAML/JSON documents, v1alpha2/v1alpha3 conversion, error messages.

Every error is an ``ignitevm.errors.ValidationError`` whose message names the file (and line, for
YAML syntax errors) and the field path, e.g. ``vm.yaml: spec.memory: invalid size '12XB'``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ignitevm.api.objects import MODELS, AnyObject
from ignitevm.api.types import API_GROUP, SUPPORTED_VERSIONS
from ignitevm.errors import IgniteError, ValidationError

if TYPE_CHECKING:
    import pydantic

_HINT = "see docs/api.md for the fields of ignite.weave.works/v1alpha4 objects"
_MAX_ERRORS = 5


@dataclass(frozen=True)
class LoadedDocument:
    """One document of a manifest file: an object, an error, or skipped (not an Ignite kind)."""

    path: Path
    index: int  # 0-based position of the document in the file
    line: int | None  # 1-based line where the document starts (YAML)
    kind: str | None
    api_version: str | None
    obj: AnyObject | None = None
    error: IgniteError | None = None
    skipped: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)


def parse_object(data: Any, source: str = "<input>") -> AnyObject:
    """Validate one decoded document (v1alpha2..v1alpha4) into a v1alpha4 model."""
    if not isinstance(data, Mapping):
        raise ValidationError(
            f"{source}: expected an object with apiVersion and kind, got {_type_name(data)}",
            hint=_HINT,
        )
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not api_version:
        raise ValidationError(f"{source}: apiVersion is missing", hint=_HINT)
    if not kind:
        raise ValidationError(f"{source}: kind is missing", hint=_HINT)
    group, _, version = str(api_version).partition("/")
    if group != API_GROUP or version not in SUPPORTED_VERSIONS:
        raise ValidationError(
            f"{source}: apiVersion: unsupported {api_version!r}",
            hint=f"use {API_GROUP}/v1alpha4 (v1alpha2 and v1alpha3 are read too)",
        )
    model = MODELS.get(str(kind))
    if model is None:
        raise ValidationError(
            f"{source}: kind: unknown kind {kind!r}", hint="use VM, Image, Kernel or Configuration"
        )
    converted = convert(dict(data), version)
    import pydantic

    try:
        return model.model_validate(converted)
    except pydantic.ValidationError as exc:
        raise _validation_error(exc, source) from None


def convert(data: dict[str, Any], version: str) -> dict[str, Any]:
    """Rewrite a v1alpha2 or v1alpha3 document (decoded) into v1alpha4's shape."""
    if version == "v1alpha4":
        return data
    import copy

    data = copy.deepcopy(data)
    kind = data["kind"]
    spec, status = data.get("spec"), data.get("status")
    if version == "v1alpha2":
        if isinstance(spec, dict):
            _claim_to_oci(spec)
            if kind == "VM":
                for key in ("image", "kernel"):
                    if isinstance(spec.get(key), dict):
                        _claim_to_oci(spec[key])
                network = spec.get("network")
                if isinstance(network, dict):
                    # early v1alpha2 had network.mode (cni | docker-bridge); v1alpha4 has the
                    # configuration's networkPlugin instead
                    network.pop("mode", None)
        if kind == "VM" and isinstance(status, dict) and "ipAddresses" in status:
            network = status.setdefault("network", {})
            if isinstance(network, dict):
                network["ipAddresses"] = status.pop("ipAddresses")
    if kind == "Configuration" and isinstance(spec, dict) and "namePrefix" in spec:
        spec.setdefault("idPrefix", spec.pop("namePrefix"))
    data["apiVersion"] = f"{API_GROUP}/v1alpha4"
    return data


def _claim_to_oci(spec: dict[str, Any]) -> None:
    claim = spec.pop("ociClaim", None)
    if isinstance(claim, dict) and "oci" not in spec:
        spec["oci"] = claim.get("ref", "")


def load_object(path: Path) -> AnyObject:
    """Read a file holding exactly one object (YAML or JSON)."""
    docs = load_documents(path)
    if len(docs) != 1:
        raise ValidationError(
            f"{path}: expected one object, found {len(docs)} documents",
            hint="put one object per file, or use ignited for several",
        )
    doc = docs[0]
    if doc.error is not None:
        raise doc.error
    if doc.obj is None:
        raise ValidationError(
            f"{doc.where}: apiVersion {doc.api_version!r} is not an Ignite object", hint=_HINT
        )
    return doc.obj


def load_documents(path: Path) -> list[LoadedDocument]:
    """Read every document of a YAML (``---`` separated) or JSON file; errors are returned."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        error = ValidationError(f"{path}: cannot read: {exc}", hint="check the file")
        return [LoadedDocument(path, 0, None, None, None, error=error)]
    if path.suffix.lower() == ".json":
        return list(_json_documents(path, text))
    return list(_yaml_documents(path, text))


def _json_documents(path: Path, text: str) -> Iterator[LoadedDocument]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        error = ValidationError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}", hint=_HINT)
        yield LoadedDocument(path, 0, exc.lineno, None, None, error=error)
        return
    items = data if isinstance(data, list) else [data]
    for index, item in enumerate(items):
        yield _document(path, index, None, item)


def _yaml_documents(path: Path, text: str) -> Iterator[LoadedDocument]:
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            line = node.start_mark.line + 1
            data = loader.construct_document(node)
            if data is not None:  # an empty document (a stray "---")
                yield _document(path, index, line, data)
            index += 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f"{path}:{line}" if line is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        error = ValidationError(f"{where}: invalid YAML: {problem}", hint="fix the YAML syntax")
        yield LoadedDocument(path, index, line, None, None, error=error)
    finally:
        loader.dispose()


def _document(path: Path, index: int, line: int | None, data: Any) -> LoadedDocument:
    where = f"{path}:{line}" if line is not None else str(path)
    if not isinstance(data, Mapping):
        error = ValidationError(
            f"{where}: expected an object with apiVersion and kind, got {_type_name(data)}",
            hint=_HINT,
        )
        return LoadedDocument(path, index, line, None, None, error=error)
    api_version, kind = data.get("apiVersion"), data.get("kind")
    api_str = str(api_version) if api_version else None
    kind_str = str(kind) if kind else None
    if api_str is not None and api_str.partition("/")[0] != API_GROUP:
        return LoadedDocument(path, index, line, kind_str, api_str, skipped=True)
    try:
        obj = parse_object(data, where)
    except ValidationError as exc:
        return LoadedDocument(path, index, line, kind_str, api_str, error=exc)
    return LoadedDocument(path, index, line, kind_str, api_str, obj=obj)


def to_dict(obj: AnyObject) -> dict[str, Any]:
    """The serialized form as plain data (what ``inspect`` prints and metadata.json holds)."""
    data: dict[str, Any] = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def dump_object(obj: AnyObject, fmt: Literal["json", "yaml"] = "json") -> str:
    """Serialize as ``ignite inspect -o json|yaml`` prints it (ends with a newline)."""
    data = to_dict(obj)
    if fmt == "yaml":
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        # Ignite converts JSON to YAML with sigs.k8s.io/yaml, which sorts keys
        text: str = yaml.dump(data, Dumper=dumper, sort_keys=True, default_flow_style=False)
        return text
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    raise ValidationError(f"unknown output format {fmt!r}", hint="use json or yaml")


def _validation_error(exc: pydantic.ValidationError, source: str) -> ValidationError:
    return ValidationError(f"{source}: {describe_validation_error(exc)}", hint=_HINT)


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """Every field error on one line ("spec.cpus: ...; spec.memroy: unknown field"): the CLI
    prints one `error:` line and one `hint:`, and ignited logs one line per error."""
    parts = [f"{_loc(err['loc'])}: {_message(err)}" for err in exc.errors()[:_MAX_ERRORS]]
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = str(part)
    return path or "(document)"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    # pydantic prefixes errors raised by our validators with "Value error, "
    msg = msg.removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in err:
        msg = f"{msg} (got {err['input']!r})"
    return msg


def _type_name(data: Any) -> str:
    return "nothing" if data is None else type(data).__name__
