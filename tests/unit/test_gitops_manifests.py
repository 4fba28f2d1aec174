"""Reading the desired state: directory walk, documents, uids, running, host rule, hashes."""

from __future__ import annotations

import json
from pathlib import Path

from ignitevm.api import uid_from_name
from ignitevm.gitops.manifests import HOST_ANNOTATION, read_manifests, spec_hash

VM_YAML = """apiVersion: ignite.weave.works/v1alpha4
kind: VM
metadata:
  name: {name}
spec:
  image:
    oci: ignitevm/default:latest
"""


def test_nested_multi_doc_json_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "two.yml").write_text(
        VM_YAML.format(name="x") + "---\n" + VM_YAML.format(name="y")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
        + "---\napiVersion: ignite.weave.works/v1alpha4\nkind: Image\nspec: {oci: a}\n"
    )  # fmt: skip
    doc = {"apiVersion": "ignite.weave.works/v1alpha3", "kind": "VM",
           "metadata": {"name": "z", "uid": "0123456789abcdef"}}  # fmt: skip
    (tmp_path / "z.json").write_text(json.dumps(doc))
    (tmp_path / "README.md").write_text("not a manifest")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text("{{{")
    result = read_manifests(tmp_path)
    assert sorted(v.name for v in result.vms.values()) == ["x", "y", "z"]
    assert result.skipped == 2
    assert result.errors == []
    assert result.vms["0123456789abcdef"].source == "z.json"
    x = result.vms[uid_from_name("x")]
    assert x.source == "a/b/two.yml:1" and x.file == "a/b/two.yml"


def test_running_default_is_run(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VM_YAML.format(name="a"))
    (tmp_path / "b.yaml").write_text(VM_YAML.format(name="b") + "status:\n  running: false\n")
    (tmp_path / "c.yaml").write_text(VM_YAML.format(name="c") + "status:\n  running: true\n")
    (tmp_path / "d.yaml").write_text(VM_YAML.format(name="d") + "status: {}\n")
    running = {v.name: v.running for v in read_manifests(tmp_path).vms.values()}
    assert running == {"a": True, "b": False, "c": True, "d": True}


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(VM_YAML.format(name="ok") + "---\nkind: VM\n  x: [\n")
    (tmp_path / "field.yaml").write_text(VM_YAML.format(name="f") + "  memroy: 1GB\n")
    (tmp_path / "noname.yaml").write_text(VM_YAML.format(name='""'))
    result = read_manifests(tmp_path)
    messages = sorted(e.message for e in result.errors)
    assert len(messages) == 3, messages
    assert messages[0].startswith("bad.yaml:10: invalid YAML"), messages
    assert "field.yaml" in messages[1] and "memroy" in messages[1]
    assert "noname.yaml:1: metadata.name is missing" in messages[2]
    assert result.broken_files == {"bad.yaml", "field.yaml", "noname.yaml"}
    assert [v.name for v in result.vms.values()] == ["ok"]


def test_duplicates_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VM_YAML.format(name="same"))
    (tmp_path / "b.yaml").write_text(VM_YAML.format(name="same"))
    result = read_manifests(tmp_path)
    assert len(result.vms) == 1
    assert "also defined at a.yaml:1" in result.errors[0].message


def test_host_rule(tmp_path: Path) -> None:
    annotations = f"metadata:\n  annotations:\n    {HOST_ANNOTATION}: h1\n"
    annotated = VM_YAML.replace("metadata:\n", annotations)
    (tmp_path / "a.yaml").write_text(annotated.format(name="a"))
    (tmp_path / "b.yaml").write_text(VM_YAML.format(name="b"))
    assert [v.name for v in read_manifests(tmp_path, "h1").vms.values()] == ["a"]
    assert [v.name for v in read_manifests(tmp_path, "h2").vms.values()] == []
    plain = read_manifests(tmp_path)
    assert [v.name for v in plain.vms.values()] == ["b"]
    assert plain.other_hosts == 1


def test_spec_hash_follows_spec_and_name_not_status(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VM_YAML.format(name="a"))
    base = read_manifests(tmp_path).vms[uid_from_name("a")]
    (tmp_path / "a.yaml").write_text(VM_YAML.format(name="a") + "status:\n  running: false\n")
    same = read_manifests(tmp_path).vms[uid_from_name("a")]
    assert same.spec_hash == base.spec_hash == spec_hash(base.vm)
    (tmp_path / "a.yaml").write_text(VM_YAML.format(name="a") + "  memory: 1GB\n")
    assert read_manifests(tmp_path).vms[uid_from_name("a")].spec_hash != base.spec_hash


def test_missing_root_is_incomplete(tmp_path: Path) -> None:
    result = read_manifests(tmp_path / "nope")
    assert not result.complete
    assert "no such directory" in result.errors[0].message


def test_a_bad_vm_name_is_a_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VM_YAML.format(name='"web:1"'))
    (tmp_path / "b.yaml").write_text(VM_YAML.format(name="ok-1"))
    result = read_manifests(tmp_path)
    assert [v.name for v in result.vms.values()] == ["ok-1"]
    [error] = result.errors
    assert error.file == "a.yaml" and "metadata.name" in error.message
    assert "':' is not allowed" in error.message and error.hint
