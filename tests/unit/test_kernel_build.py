"""`ignite kernel build` without compiling: the config fragment, argv, cache keys, and the
whole build flow against a fake `make` and `merge_config.sh`."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ignitevm import proc
from ignitevm.errors import IgniteError, MissingToolError, NotFoundError, ValidationError
from ignitevm.kernel import build as kb
from ignitevm.ops.kernel_build import kernel_name, parse_output

BANNER = b"Linux version 6.1.99-microvm (ignitevm@ignitevm) (gcc 12) #1 SMP\0"
ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57 + BANNER + b"\0" * 64

# A make that understands the three targets the builder uses. olddefconfig drops
# CONFIG_NEEDS_MISSING_DEP, as kconfig does with an option whose dependencies are off.
FAKE_MAKE = r"""#!/bin/sh
obj=; target=
for a in "$@"; do
  case "$a" in O=*) obj="${a#O=}";; -*|ARCH=*) ;; *) target="$a";; esac
done
echo "$*" >> "$FAKE_MAKE_LOG"
case "$target" in
  tinyconfig) printf 'CONFIG_64BIT=y\n# CONFIG_MODULES is not set\nCONFIG_PCI=y\n' \
                > "$obj/.config";;
  olddefconfig) grep -v NEEDS_MISSING_DEP "$obj/.config" > "$obj/.config.new"
                mv "$obj/.config.new" "$obj/.config";;
  vmlinux) [ -n "$FAKE_MAKE_FAIL" ] && { echo "error: something broke" >&2; exit 2; }
           printf '%s' "$FAKE_ELF" > "$obj/vmlinux";;
esac
"""
FAKE_MERGE = 'shift 3; base="$1"; frag="$2"; out="$(dirname "$base")"; ' \
    'cat "$base" "$frag" > "$out/.config.m"; mv "$out/.config.m" "$base"\n'  # fmt: skip


def test_project_fragment_has_what_the_vmms_need() -> None:
    opts = kb.parse_config(kb.fragment_text())
    for name in (
        "CONFIG_PVH",
        "CONFIG_VIRTIO_MMIO",
        "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
        "CONFIG_VIRTIO_BLK",
        "CONFIG_VIRTIO_NET",
        "CONFIG_VIRTIO_VSOCKETS",
        "CONFIG_EXT4_FS",
        "CONFIG_CRYPTO_CRC32C",
        "CONFIG_OVERLAY_FS",
        "CONFIG_ACPI_BUTTON",
        "CONFIG_INPUT_EVDEV",
        "CONFIG_SERIAL_8250_CONSOLE",
        "CONFIG_BLK_DEV_INITRD",
        "CONFIG_DEVTMPFS",
        "CONFIG_UNIX",
        "CONFIG_PACKET",
    ):
        assert opts.get(name) == "y", name
    assert opts["CONFIG_MODULES"] is None
    assert opts["CONFIG_DEBUG_INFO_NONE"] == "y"
    assert opts["CONFIG_LOCALVERSION"] == '"-microvm"'


def test_parse_config_values_unset_and_last_wins() -> None:
    text = (
        '# comment\nCONFIG_A=y\nCONFIG_B="str ing"\n# CONFIG_C is not set\n'
        "CONFIG_A=m\n  CONFIG_D=0x10  \n#CONFIG_E is not set\nnonsense\n"
    )
    assert kb.parse_config(text) == {
        "CONFIG_A": "m",
        "CONFIG_B": '"str ing"',
        "CONFIG_C": None,
        "CONFIG_D": "0x10",
    }


def test_dropped_options() -> None:
    fragment = {
        "CONFIG_A": "y",
        "CONFIG_B": None,
        "CONFIG_C": "y",
        "CONFIG_D": None,
        "CONFIG_E": "4",
    }
    config = {"CONFIG_A": "y", "CONFIG_C": None, "CONFIG_D": "y", "CONFIG_E": "8"}
    dropped = kb.dropped_options(fragment, config)
    assert [str(d) for d in dropped] == [
        "CONFIG_C: wanted y, got n",
        "CONFIG_D: wanted n, got y",
        "CONFIG_E: wanted 4, got 8",
    ]


def test_argv() -> None:
    src, obj = Path("/s"), Path("/o")
    assert kb.make_argv(src, obj, "vmlinux", jobs=3) == [
        "make", "-C", "/s", "O=/o", "ARCH=x86_64", "-j3", "vmlinux",
    ]  # fmt: skip
    assert kb.make_argv(src, obj, "tinyconfig")[-1] == "tinyconfig"
    assert kb.merge_argv(src, obj, Path("/f.config")) == [
        "sh", "/s/scripts/kconfig/merge_config.sh", "-m", "-O", "/o", "/o/.config", "/f.config",
    ]  # fmt: skip
    assert kb.niced(["make"], 10) == ["nice", "-n", "10", "make"]
    assert kb.niced(["make"], 0) == ["make"]
    env = kb.build_env({"PATH": "/bin", "KBUILD_BUILD_HOST": "laptop"})
    assert env["PATH"] == "/bin"
    assert env["KBUILD_BUILD_HOST"] == "ignitevm"
    assert env["KBUILD_BUILD_TIMESTAMP"].endswith("1970")


def test_keys_follow_source_and_fragment(tmp_path: Path) -> None:
    tarball = tmp_path / "linux-source-6.1.tar.xz"
    tarball.write_bytes(b"one")
    k1 = kb.source_key(tarball)
    assert kb.build_key(k1, "A") != kb.build_key(k1, "B")
    tarball.write_bytes(b"two")
    assert kb.source_key(tarball) != k1
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "Makefile").write_text("x")
    d1 = kb.source_key(tree)
    assert kb.source_key(tree) == d1
    (tree / "sub" / "new.c").write_text("y")
    assert kb.source_key(tree) != d1


def test_find_and_require_source(tmp_path: Path) -> None:
    assert kb.find_debian_source(tmp_path) is None
    for ver in ("6.1", "6.12", "6.9"):
        (tmp_path / f"linux-source-{ver}.tar.xz").write_bytes(b"")
    found = kb.find_debian_source(tmp_path)
    assert found is not None and found.name == "linux-source-6.12.tar.xz"
    with pytest.raises(NotFoundError, match="does not exist"):
        kb.require_source(tmp_path / "nope")
    with pytest.raises(NotFoundError, match="not a Linux source tree"):
        kb.require_source(tmp_path)


def test_missing_build_packages_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(proc, "find_tool", lambda name: None if name in ("gcc", "ld") else "/x")
    missing = kb.missing_build_packages([tmp_path])
    assert missing == ["build-essential", "binutils", "libelf-dev", "libssl-dev"]
    monkeypatch.setattr(kb, "missing_build_packages", lambda: ["bison", "flex"])
    with pytest.raises(MissingToolError) as exc:
        kb.require_build_packages()
    assert exc.value.hint == "install them: apt-get install -y bison flex"


@pytest.fixture
def fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text(FAKE_MAKE)
    make.chmod(make.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MAKE_LOG", str(tmp_path / "make.log"))
    monkeypatch.setenv("FAKE_ELF", ELF.decode("latin-1").replace("\0", ""))
    monkeypatch.setattr(kb, "require_build_packages", lambda: None)
    src = tmp_path / "linux"
    (src / "scripts" / "kconfig").mkdir(parents=True)
    (src / "Makefile").write_text("# fake\n")
    (src / "scripts" / "kconfig" / "merge_config.sh").write_text(FAKE_MERGE)
    return src


def test_build_flow_configures_builds_and_reuses(fake_tree: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    fragment = "CONFIG_PVH=y\n# CONFIG_PCI is not set\nCONFIG_NEEDS_MISSING_DEP=y\n"
    result = kb.build_kernel(fake_tree, work, fragment=fragment, jobs=2, niceness=0)
    assert not result.reused
    assert result.version == "6.1.99-microvm"
    assert result.vmlinux.read_bytes().startswith(b"\x7fELF")
    assert [str(d) for d in result.dropped] == ["CONFIG_NEEDS_MISSING_DEP: wanted y, got n"]
    calls = (tmp_path / "make.log").read_text().splitlines()
    assert [c.split()[-1] for c in calls] == ["tinyconfig", "olddefconfig", "vmlinux"]
    assert "-j2" in calls[-1]
    assert (result.vmlinux.parent / "build-seconds").read_text().split()[1] == "full"
    config = kb.parse_config((result.vmlinux.parent / "config").read_text())
    assert config["CONFIG_PVH"] == "y" and config["CONFIG_PCI"] is None

    again = kb.build_kernel(fake_tree, work, fragment=fragment, niceness=0)
    assert again.reused and again.vmlinux == result.vmlinux and again.key == result.key
    assert len((tmp_path / "make.log").read_text().splitlines()) == 3

    other = kb.build_kernel(fake_tree, work, fragment=fragment + "CONFIG_X=y\n", niceness=0)
    assert not other.reused and other.key != result.key
    assert (other.vmlinux.parent / "build-seconds").read_text().split()[1] == "incremental"


def test_unpack_source_once(tmp_path: Path) -> None:
    tree = tmp_path / "linux-source-6.1"
    tree.mkdir()
    (tree / "Makefile").write_text("VERSION = 6\n")
    tarball = tmp_path / "linux-source-6.1.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(tree, arcname="linux-source-6.1")
    dest = tmp_path / "work" / "src-x"
    top = kb.unpack_source(tarball, dest)
    assert top == dest / "linux-source-6.1" and (top / "Makefile").read_text() == "VERSION = 6\n"
    tarball.write_bytes(b"not read again")
    assert kb.unpack_source(tarball, dest) == top
    assert not dest.with_name("src-x.tmp").exists()
    with pytest.raises(IgniteError):
        kb.unpack_source(tarball, tmp_path / "work" / "src-y")
    assert not (tmp_path / "work" / "src-y").exists()


def test_build_failure_shows_the_log_tail(
    fake_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MAKE_FAIL", "1")
    with pytest.raises(kb.KernelBuildError, match="something broke") as exc:
        kb.build_kernel(fake_tree, tmp_path / "work", fragment="CONFIG_A=y\n", niceness=0)
    assert exc.value.hint is not None and "build-" in exc.value.hint
    assert not list((tmp_path / "work").glob("out-*"))


def test_names_and_outputs() -> None:
    assert kernel_name("6.1.192-microvm") == "ignitevm/kernel:6.1.192-microvm"
    assert kernel_name("6.1.192") == "ignitevm/kernel:6.1.192-microvm"
    assert parse_output("oci-archive:/tmp/k.tar") == ("oci-archive", Path("/tmp/k.tar"))
    assert parse_output("docker-archive:k.tar")[0] == "docker-archive"
    for bad in ("k.tar", "dir:/x", "oci-archive:"):
        with pytest.raises(ValidationError):
            parse_output(bad)
    assert issubclass(kb.KernelBuildError, IgniteError)


def test_use_case_stores_reuses_renames_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ops.kernel_build over a fake compiler: the stored kernel, its reuse by source + config,
    the name moving to a newer build, and the exported image's single /boot/vmlinux."""
    from ignitevm.api import Configuration, Kind
    from ignitevm.ops import kernel_build as ops
    from ignitevm.ops.services import Services
    from ignitevm.store import Store

    built: list[str] = []

    def fake_build(source: Path, workdir: Path, *, fragment: str, **_: object) -> kb.BuildResult:
        built.append(fragment)
        out = workdir / f"out-{len(built)}"
        out.mkdir(parents=True)
        (out / "vmlinux").write_bytes(ELF)
        (out / "config").write_text(fragment)
        return kb.BuildResult(out / "vmlinux", "6.1.99-microvm", "k", False, 1.5)

    def fake_initramfs(out: Path, *, modules_dir: Path | None, version: str) -> None:
        assert modules_dir is None
        out.write_bytes(b"initramfs")

    monkeypatch.setattr(kb, "build_kernel", fake_build)
    monkeypatch.setattr("ignitevm.kernel.build_initramfs", fake_initramfs)
    svc = Services(config=Configuration(), store=Store(tmp_path / "state"))
    tarball = tmp_path / "linux-source-6.1.tar.xz"
    tarball.write_bytes(b"source")
    first = ops.build_microvm_kernel(svc, source=tarball, workdir=tmp_path / "w")
    assert first.built and first.kernel.metadata.name == "ignitevm/kernel:6.1.99-microvm"
    assert first.kernel.status.version == "6.1.99-microvm"
    again = ops.build_microvm_kernel(svc, source=tarball, workdir=tmp_path / "w")
    assert not again.built and again.kernel.metadata.uid == first.kernel.metadata.uid
    assert len(built) == 1

    frag = tmp_path / "other.config"
    frag.write_text("CONFIG_X=y\n")
    archive = tmp_path / "k.oci.tar"
    newer = ops.build_microvm_kernel(
        svc, source=tarball, workdir=tmp_path / "w", fragment=frag, output=f"oci-archive:{archive}"
    )
    assert built == [kb.fragment_text(), "CONFIG_X=y\n"]
    names = {k.metadata.uid: k.metadata.name for k in svc.store.list(Kind.KERNEL)}
    old_uid = first.kernel.metadata.uid
    assert names == {
        newer.kernel.metadata.uid: "ignitevm/kernel:6.1.99-microvm",
        old_uid: f"ignitevm/kernel:6.1.99-microvm-{old_uid[:8]}",
    }
    assert newer.archive == archive
    stored = svc.store.object_dir(Kind.KERNEL, newer.kernel.metadata.uid) / "config"
    assert stored.read_text() == "CONFIG_X=y\n"  # preflight reads it
    with tarfile.open(archive) as outer:
        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest_digest = index["manifests"][0]["digest"].partition(":")[2]
        manifest = json.loads(outer.extractfile(f"blobs/sha256/{manifest_digest}").read())  # type: ignore[union-attr]
        layer_digest = manifest["layers"][0]["digest"].partition(":")[2]
        layer = outer.extractfile(f"blobs/sha256/{layer_digest}").read()  # type: ignore[union-attr]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == (
        "ignitevm/kernel:6.1.99-microvm"
    )
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        assert inner.getnames() == ["boot", "boot/config-6.1.99-microvm", "boot/vmlinux"]
        assert inner.extractfile("boot/config-6.1.99-microvm").read() == b"CONFIG_X=y\n"  # type: ignore[union-attr]
        assert inner.extractfile("boot/vmlinux").read() == ELF  # type: ignore[union-attr]


def test_prune_workdir_keeps_only_the_current_build(tmp_path: Path) -> None:
    from ignitevm.kernel.build import prune_workdir

    key, src = "a" * 64, "b" * 64
    current = [f"out-{key[:16]}", f"src-{src[:16]}", f"obj-{src[:16]}"]
    old = [f"out-{'c' * 16}", f"src-{'d' * 16}", f"obj-{'d' * 16}"]
    for name in current + old:
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text("x")
    for name in (f"build-{key[:16]}.log", f"build-{'c' * 16}.log", f"fragment-{'c' * 16}.config"):
        (tmp_path / name).write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    removed = prune_workdir(tmp_path, key, src)
    assert sorted(removed) == sorted([*old, f"build-{'c' * 16}.log", f"fragment-{'c' * 16}.config"])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*current, f"build-{key[:16]}.log", "notes.txt"])
