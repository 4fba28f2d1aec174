"""Build a microVM kernel (ELF vmlinux, everything built in) from a Linux source tree.

The config is ``make tinyconfig`` + the project's fragment (``microvm.config``) merged with
``scripts/kconfig/merge_config.sh`` + ``make olddefconfig``. Builds are out of tree (``O=``) in a
work directory that is kept: the extracted source and the object tree are reused, and a finished
build is reused as is while the source and the fragment are unchanged (the cache key hashes both).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ignitevm import proc
from ignitevm.errors import CommandError, IgniteError, MissingToolError, NotFoundError

log = logging.getLogger(__name__)

FRAGMENT_NAME = "microvm.config"
ARCH = "x86_64"
# Bump when the build procedure changes in a way that changes the output for the same inputs.
BUILDER_VERSION = "1"
SOURCE_GLOB = "linux-source-*.tar.xz"
DEBIAN_SOURCE_DIR = Path("/usr/src")
# Reproducible banner: the same inputs give the same vmlinux (and the same stored digest).
BUILD_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "Thu Jan  1 00:00:00 UTC 1970",
    "KBUILD_BUILD_USER": "ignitevm",
    "KBUILD_BUILD_HOST": "ignitevm",
    "KBUILD_BUILD_VERSION": "1",
}
# What a kernel build runs, and the Debian package that provides it.
BUILD_TOOLS = {
    "make": "make",
    "gcc": "build-essential",
    "ld": "binutils",
    "bc": "bc",
    "bison": "bison",
    "flex": "flex",
    "perl": "perl",
    "tar": "tar",
    "xz": "xz-utils",
}
# Headers the host tools (objtool, sign-file, ...) compile against.
BUILD_HEADERS = {
    "gelf.h": "libelf-dev",
    "openssl/opensslv.h": "libssl-dev",
}
INCLUDE_DIRS = (Path("/usr/include"), Path("/usr/include/x86_64-linux-gnu"))
ALL_BUILD_PACKAGES = ("build-essential", "bc", "bison", "flex", "libelf-dev", "libssl-dev",
                      "xz-utils", "linux-source")  # fmt: skip

_OPTION = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_NOT_SET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


class KernelBuildError(IgniteError):
    """The kernel build (configuration or compilation) failed."""


@dataclass(frozen=True)
class DroppedOption:
    """A fragment option that ``olddefconfig`` did not keep (unmet dependency, renamed...)."""

    name: str
    wanted: str | None  # None: "is not set"
    got: str | None

    def __str__(self) -> str:
        def show(v: str | None) -> str:
            return "n" if v is None else v

        return f"{self.name}: wanted {show(self.wanted)}, got {show(self.got)}"


@dataclass(frozen=True)
class BuildResult:
    vmlinux: Path
    version: str
    key: str  # sha256 hex of source + fragment + builder: the cache key
    reused: bool
    seconds: float
    dropped: tuple[DroppedOption, ...] = field(default_factory=tuple)


# --- the config fragment ---------------------------------------------------------------------


def fragment_text() -> str:
    """The project's fragment, shipped as package data."""
    return resources.files("ignitevm.kernel").joinpath(FRAGMENT_NAME).read_text()


def parse_config(text: str) -> dict[str, str | None]:
    """``CONFIG_X=v`` -> v, ``# CONFIG_X is not set`` -> None; a later line wins."""
    options: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _OPTION.match(line):
            options[m.group(1)] = m.group(2)
        elif m := _NOT_SET.match(line):
            options[m.group(1)] = None
    return options


def _unset(value: str | None) -> bool:
    return value is None or value == "n"


def dropped_options(
    fragment: Mapping[str, str | None], config: Mapping[str, str | None]
) -> list[DroppedOption]:
    """The fragment's options the final config does not have as asked. An option absent from
    the final config counts as "not set" (kconfig omits symbols whose dependencies are off)."""
    dropped = []
    for name, wanted in fragment.items():
        got = config.get(name)
        if _unset(wanted) and _unset(got):
            continue
        if wanted != got:
            dropped.append(DroppedOption(name, wanted, got))
    return dropped


# --- build dependencies ----------------------------------------------------------------------


def missing_build_packages(include_dirs: Sequence[Path] = INCLUDE_DIRS) -> list[str]:
    """Debian packages whose tools or headers a kernel build needs and that are missing."""
    missing: list[str] = []
    for tool, pkg in BUILD_TOOLS.items():
        if proc.find_tool(tool) is None and pkg not in missing:
            missing.append(pkg)
    for header, pkg in BUILD_HEADERS.items():
        if not any((d / header).is_file() for d in include_dirs) and pkg not in missing:
            missing.append(pkg)
    return missing


def require_build_packages() -> None:
    missing = missing_build_packages()
    if missing:
        raise MissingToolError(
            f"a kernel build needs Debian packages that are not installed: {' '.join(missing)}",
            hint=f"install them: apt-get install -y {' '.join(missing)}",
        )


# --- the source --------------------------------------------------------------------------------


def _version_key(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def find_debian_source(src_dir: Path = DEBIAN_SOURCE_DIR) -> Path | None:
    """The newest ``/usr/src/linux-source-<ver>.tar.xz`` (Debian's linux-source package)."""
    tarballs = sorted(src_dir.glob(SOURCE_GLOB), key=lambda p: _version_key(p.name))
    return tarballs[-1] if tarballs else None


def require_source(source: Path | None) -> Path:
    if source is None:
        found = find_debian_source()
        if found is None:
            raise NotFoundError(
                f"no kernel source given and no {DEBIAN_SOURCE_DIR}/{SOURCE_GLOB}",
                hint="apt-get install -y linux-source, or pass --source TARBALL|DIR",
            )
        return found
    if not source.exists():
        raise NotFoundError(f"kernel source {source} does not exist")
    if source.is_dir() and not (source / "Makefile").is_file():
        raise NotFoundError(
            f"{source} is not a Linux source tree (no Makefile)",
            hint="pass the top directory of an unpacked linux source",
        )
    return source


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _hash_tree(root: Path) -> str:
    """Path, file count and newest mtime: cheap (no reading) and changes when a file does."""
    count, newest = 0, 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        stack.append(Path(entry.path))
                    continue
                count += 1
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
    return hashlib.sha256(f"dir:{root.resolve()}:{count}:{newest}".encode()).hexdigest()


def source_key(source: Path) -> str:
    """Identity of a source: the tarball's sha256, or a stat summary of a directory."""
    return _hash_tree(source) if source.is_dir() else _hash_file(source)


def build_key(src_key: str, fragment: str) -> str:
    """The cache key of a build: source + fragment + builder version + arch."""
    text = f"ignitevm-kernel-build:{BUILDER_VERSION}:{ARCH}:{src_key}\n{fragment}"
    return hashlib.sha256(text.encode()).hexdigest()


def unpack_source(tarball: Path, dest: Path) -> Path:
    """Extract ``tarball`` once into ``dest`` (atomically) and return the tree's top dir."""
    if not dest.is_dir():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log.info("unpacking %s", tarball)
        try:
            proc.run(["tar", "-xf", tarball, "-C", tmp], hint=f"is {tarball} a kernel source?")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.rename(tmp, dest)
    tops = [p for p in dest.iterdir() if (p / "Makefile").is_file()]
    if len(tops) != 1:
        raise NotFoundError(f"{tarball} does not hold one Linux source tree")
    return tops[0]


# --- argv ------------------------------------------------------------------------------------


def make_argv(src: Path, obj: Path, *targets: str, jobs: int | None = None) -> list[str]:
    argv = ["make", "-C", str(src), f"O={obj}", f"ARCH={ARCH}"]
    if jobs is not None:
        argv.append(f"-j{jobs}")
    return argv + list(targets)


def merge_argv(src: Path, obj: Path, fragment: Path) -> list[str]:
    """merge_config.sh -m: merge text only (olddefconfig resolves it afterwards)."""
    script = src / "scripts" / "kconfig" / "merge_config.sh"
    return ["sh", str(script), "-m", "-O", str(obj), str(obj / ".config"), str(fragment)]


def niced(argv: list[str], niceness: int) -> list[str]:
    return ["nice", "-n", str(niceness), *argv] if niceness > 0 else argv


def build_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(BUILD_ENV)
    env["LC_ALL"] = "C"
    return env


# --- the build ---------------------------------------------------------------------------------


def _run_logged(argv: list[str], log_path: Path, what: str, cwd: Path) -> None:
    with log_path.open("ab") as out:
        out.write(f"+ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc.run(argv, stdout=out, stderr=proc.STDOUT, env=build_env(), cwd=cwd)
        except CommandError as exc:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise KernelBuildError(
                f"kernel {what} failed (exit {exc.returncode}):\n  " + "\n  ".join(tail),
                hint=f"full log: {log_path}; missing tools? apt-get install -y "
                + " ".join(ALL_BUILD_PACKAGES[:-1]),
            ) from exc


def configure(src: Path, obj: Path, fragment: Path, log_path: Path) -> list[DroppedOption]:
    """tinyconfig + fragment + olddefconfig into ``obj/.config``; returns what was dropped."""
    obj.mkdir(parents=True, exist_ok=True)
    _run_logged(make_argv(src, obj, "tinyconfig"), log_path, "configuration", src)
    _run_logged(merge_argv(src, obj, fragment), log_path, "configuration", src)
    _run_logged(make_argv(src, obj, "olddefconfig"), log_path, "configuration", src)
    wanted = parse_config(fragment.read_text())
    dropped = dropped_options(wanted, parse_config((obj / ".config").read_text()))
    for opt in dropped:
        log.warning("kernel config: %s (dependencies not met?)", opt)
    return dropped


def prune_workdir(workdir: Path, key: str, src_id: str) -> list[str]:
    """Remove what older builds left in ``workdir`` (other configs' outputs and logs, other
    sources' trees: 1.5 GB each); stored kernels are copies, so nothing stored depends on them.
    Returns the names removed."""
    keep = {f"out-{key[:16]}", f"build-{key[:16]}.log", f"fragment-{key[:16]}.config",
            f"src-{src_id[:16]}", f"obj-{src_id[:16]}"}  # fmt: skip
    removed = []
    for entry in sorted(workdir.iterdir()):
        if entry.name in keep or not entry.name.startswith(("out-", "build-", "fragment-",
                                                            "src-", "obj-")):  # fmt: skip
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    if removed:
        log.info("removed older builds from %s: %s", workdir, ", ".join(removed))
    return removed


def build_kernel(
    source: Path | None,
    workdir: Path,
    *,
    fragment: str | None = None,
    jobs: int | None = None,
    niceness: int = 10,
) -> BuildResult:
    """Build (or reuse) a vmlinux. ``source``: a ``linux-source-*.tar.xz`` or an unpacked tree
    (None: Debian's linux-source package). Layout of ``workdir``: ``src-<id>/`` the unpacked
    tarball, ``obj-<id>/`` the object tree, ``out-<key>/vmlinux`` finished builds."""
    from ignitevm.kernel.vmlinux import detect_version

    started = time.monotonic()
    src_path = require_source(source)
    text = fragment if fragment is not None else fragment_text()
    src_id = source_key(src_path)
    key = build_key(src_id, text)
    out = workdir / f"out-{key[:16]}"
    if (out / "vmlinux").is_file():
        log.info("reusing the kernel built in %s", out)
        version = (out / "version").read_text().strip()
        return BuildResult(out / "vmlinux", version, key, True, time.monotonic() - started)
    require_build_packages()
    workdir.mkdir(parents=True, exist_ok=True)
    src = src_path if src_path.is_dir() else unpack_source(src_path, workdir / f"src-{src_id[:16]}")
    obj = workdir / f"obj-{src_id[:16]}"
    log_path = workdir / f"build-{key[:16]}.log"
    log_path.unlink(missing_ok=True)
    frag_file = workdir / f"fragment-{key[:16]}.config"
    frag_file.write_text(text)
    dropped = configure(src, obj, frag_file, log_path)
    log.info("building vmlinux in %s (log: %s)", obj, log_path)
    fresh = not (obj / "vmlinux").exists()
    build = make_argv(src, obj, "vmlinux", jobs=jobs or os.cpu_count() or 1)
    _run_logged(niced(build, niceness), log_path, "build", src)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copyfile(obj / "vmlinux", tmp / "vmlinux")
    shutil.copyfile(obj / ".config", tmp / "config")
    version = detect_version(tmp / "vmlinux")
    (tmp / "version").write_text(version + "\n")
    seconds = time.monotonic() - started
    kind = "full" if fresh else "incremental"
    (tmp / "build-seconds").write_text(f"{seconds:.1f} {kind}\n")  # for bench/kernel.py
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    log.info("built kernel %s in %.0f s", version, seconds)
    prune_workdir(workdir, key, src_id)
    return BuildResult(out / "vmlinux", version, key, False, seconds, tuple(dropped))
