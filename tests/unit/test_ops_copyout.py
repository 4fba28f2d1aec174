"""`ignite cp VM:PATH HOST` with a hostile guest (issue 10 defect 1, issue 14 item 6): crafted
tar streams fed to the unpacker (ops/copyout.py) and the move into place. Nothing may be
written outside the destination, no device node, no setuid bit or foreign owner without -a,
no symlink that leads out, and a refused stream leaves nothing but the scratch directory."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ignitevm.ops import copyout
from ignitevm.ops.copyout import CopyError, Unpacker, place

Add = Callable[[tarfile.TarFile], None]


def _stream(*adds: Add, fmt: int = tarfile.PAX_FORMAT) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for add in adds:
            add(tar)
    buf.seek(0)
    return buf


def _entry(
    name: str,
    kind: bytes = tarfile.DIRTYPE,
    *,
    data: bytes = b"",
    mode: int = 0o755,
    link: str = "",
    uid: int = 0,
    gid: int = 0,
    dev: tuple[int, int] = (0, 0),
) -> Add:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.linkname, info.uid, info.gid = kind, mode, link, uid, gid
        info.devmajor, info.devminor = dev
        info.mtime = 1_600_000_000
        if kind in tarfile.REGULAR_TYPES:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        else:
            tar.addfile(info)

    return add


def _file(name: str, data: bytes = b"x\n", **kw: object) -> Add:
    return _entry(name, tarfile.REGTYPE, data=data, **{"mode": 0o644, **kw})  # type: ignore[arg-type]


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(work, outside): the scratch directory and a sibling that must never be touched."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    return work, outside


def _listing(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "l" if p.is_symlink() else "d" if p.is_dir() else "f" if p.is_file() else "?"
        out[str(p.relative_to(root))] = f"{kind}{stat.S_IMODE(st.st_mode):o}:{st.st_uid}"
    return out


def test_files_dirs_and_inner_links_come_through(box: tuple[Path, Path]) -> None:
    work, _ = box
    stream = _stream(
        _entry("tree", mode=0o750),
        _file("tree/a.txt", b"hello\n", mode=0o640),
        _entry("tree/sub"),
        _file("tree/sub/run.sh", b"#!/bin/sh\n", mode=0o755),
        _entry("tree/sub/rel", tarfile.SYMTYPE, link="../a.txt"),
        _entry("tree/hard", tarfile.LNKTYPE, link="tree/a.txt"),
        _file("tree/deep/implicit/parent.txt", b"p\n"),
    )
    assert Unpacker(work, "copy").unpack(stream) == []
    root = work / "copy"
    assert (root / "a.txt").read_text() == "hello\n"
    assert stat.S_IMODE(root.stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "sub/run.sh").stat().st_mode) == 0o755
    assert os.readlink(root / "sub/rel") == "../a.txt"
    assert (root / "sub/rel").read_text() == "hello\n"
    assert (root / "hard").stat().st_ino == (root / "a.txt").stat().st_ino
    assert stat.S_IMODE((root / "deep/implicit").stat().st_mode) == 0o755
    assert int((root / "a.txt").stat().st_mtime) == 1_600_000_000


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "tree/../../outside/secret", "../outside/secret", "..", "other/x"]
)
def test_names_outside_the_copy_are_refused(box: tuple[Path, Path], name: str) -> None:
    work, outside = box
    stream = _stream(_entry("tree"), _file(name, b"owned\n"))
    with pytest.raises(CopyError, match=r"unsafe entry name|outside the copied"):
        Unpacker(work, "copy").unpack(stream)
    assert (outside / "secret").read_text() == "host secret\n"
    assert not (outside / "x").exists() and not Path("/etc/passwd").read_text().startswith("owned")


def test_devices_fifos_setuid_and_foreign_owners_are_dropped(box: tuple[Path, Path]) -> None:
    work, _ = box
    stream = _stream(
        _entry("tree"),
        _entry("tree/null", tarfile.CHRTYPE, mode=0o666, uid=1234, dev=(1, 3)),
        _entry("tree/disk", tarfile.BLKTYPE, mode=0o666, dev=(8, 0)),
        _entry("tree/fifo", tarfile.FIFOTYPE, mode=0o666),
        _file("tree/suid", b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=1234),
        _entry("tree/sticky", mode=0o1777, uid=1234),
    )
    skipped = Unpacker(work, "copy").unpack(stream)
    assert len(skipped) == 3 and "device node" in skipped[0]
    assert _listing(work / "copy") == {
        "sticky": f"d777:{os.getuid()}",
        "suid": f"f755:{os.getuid()}",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="keeping foreign owners needs root")
def test_archive_keeps_owners_and_special_bits_but_no_devices(box: tuple[Path, Path]) -> None:
    work, _ = box
    stream = _stream(
        _entry("tree", uid=1234, gid=1234),
        _entry("tree/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        _file("tree/suid", b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=1234),
        _entry("tree/l", tarfile.SYMTYPE, link="suid", uid=1234, gid=1234),
    )
    assert len(Unpacker(work, "copy", archive=True).unpack(stream)) == 1
    assert _listing(work / "copy") == {"l": "l777:1234", "suid": "f4755:1234"}
    assert (work / "copy").stat().st_uid == 1234


@pytest.mark.parametrize(
    ("links", "kept"),
    [
        ([("tree/abs", "/etc/shadow")], []),
        ([("tree/up", "../outside/secret")], []),
        ([("tree/sub/up", "../../outside")], []),
        ([("tree/self", "."), ("tree/esc", "self/..")], ["self"]),  # escapes through another
        ([("tree/a", "sub"), ("tree/b", "a/../x")], ["a", "b"]),  # stays inside: both kept
    ],
)
def test_symlinks_are_kept_only_inside_the_copy(
    box: tuple[Path, Path], links: list[tuple[str, str]], kept: list[str]
) -> None:
    work, _ = box
    adds = [_entry("tree"), _entry("tree/sub")]
    adds += [_entry(n, tarfile.SYMTYPE, link=t) for n, t in links]
    skipped = Unpacker(work, "copy").unpack(_stream(*adds))
    got = sorted(p.name for p in (work / "copy").rglob("*") if p.is_symlink())
    assert got == sorted(kept)
    assert len(skipped) == len(links) - len(kept)


def test_nothing_is_written_through_a_symlink_of_the_stream(box: tuple[Path, Path]) -> None:
    """tar's classic: a link to a host directory, then a file "through" it."""
    work, outside = box
    stream = _stream(
        _entry("tree"),
        _entry("tree/link", tarfile.SYMTYPE, link=str(outside)),
        _file("tree/link/secret", b"owned\n"),
        _entry("tree/hl", tarfile.LNKTYPE, link=str(outside / "secret")),
        _entry("tree/hl2", tarfile.LNKTYPE, link="tree/link/secret"),
    )
    skipped = Unpacker(work, "copy").unpack(stream)
    assert (outside / "secret").read_text() == "host secret\n"
    assert (work / "copy/link").is_dir() and not (work / "copy/link").is_symlink()
    assert len(skipped) == 2 and all("link" in s for s in skipped)


class _Endless(io.RawIOBase):
    """``head``, then zeros for ever; fails the test if more than ``limit`` bytes are read."""

    def __init__(self, head: bytes, limit: int) -> None:
        self.head, self.limit, self.done = head, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(buf)
        assert self.done + n <= self.limit, "the unpacker read a header it should have refused"
        chunk = (self.head[self.done : self.done + n]).ljust(n, b"\0")
        buf[:n] = chunk
        self.done += n
        return n


def test_a_huge_extended_header_is_refused_before_it_is_read(box: tuple[Path, Path]) -> None:
    """A GNU long-name header that claims a gigabyte: refused before tarfile reads it into
    memory (the stream would deliver it: zeros for ever)."""
    work, _ = box
    stream = _stream(_entry("tree"), _file("tree/" + "n" * 200 + "/x"), fmt=tarfile.GNU_FORMAT)
    raw = bytearray(stream.getvalue())
    at = raw.find(b"././@LongLink")
    assert at >= 0
    raw[at + 124 : at + 136] = b"%011o\0" % (1 << 30)  # its size field
    raw[at + 148 : at + 156] = b" " * 8
    raw[at + 148 : at + 156] = b"%06o\0 " % sum(raw[at : at + 512])  # its checksum
    endless = _Endless(bytes(raw[: at + 512]), limit=4 << 20)
    with pytest.raises(CopyError, match="extended header"):
        Unpacker(work, "copy").unpack(io.BufferedReader(endless))


def test_a_long_name_component_is_refused(box: tuple[Path, Path]) -> None:
    work, _ = box
    with pytest.raises(CopyError, match="unsafe entry name"):
        Unpacker(work, "copy").unpack(_stream(_entry("tree"), _file("tree/" + "n" * 300)))


def test_a_truncated_stream_is_an_error(box: tuple[Path, Path]) -> None:
    work, outside = box
    data = _stream(_entry("tree"), _file("tree/big", os.urandom(100_000))).getvalue()
    with pytest.raises(CopyError, match="broken archive"):
        Unpacker(work, "copy").unpack(io.BytesIO(data[:50_000]))
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_the_copy_stops_before_the_disk_fills(
    box: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guest that streams forever: the reserve of free space stops it with an error."""
    work, _ = box
    st = os.statvfs(work)
    monkeypatch.setattr(copyout, "RESERVE_MIN", st.f_bavail * st.f_frsize + (1 << 30))
    monkeypatch.setattr(copyout, "CHECK_BYTES", 1 << 16)
    stream = _stream(_entry("tree"), _file("tree/blob", os.urandom(1 << 18)))
    with pytest.raises(CopyError, match="nearly full"):
        Unpacker(work, "copy").unpack(stream)


def test_the_guest_names_nothing_on_the_host(box: tuple[Path, Path]) -> None:
    """A pseudo-file comes as a temporary 'f': the copy takes the name the user asked for."""
    work, _ = box
    Unpacker(work, "version").unpack(_stream(_file("f", b"Linux version 6.1\n")))
    assert (work / "version").read_text() == "Linux version 6.1\n"
    with pytest.raises(CopyError):
        Unpacker(work, "..")


def test_place_merges_and_never_follows_a_destination_symlink(tmp_path: Path) -> None:
    got, dest, outside = tmp_path / "got", tmp_path / "dest", tmp_path / "outside"
    for d in (got / "sub", dest / "sub", outside):
        d.mkdir(parents=True)
    (outside / "target").write_text("keep\n")
    (got / "sub" / "f").write_text("new\n")
    (got / "sub" / "n").write_text("n\n")
    (dest / "sub" / "old").write_text("old\n")
    (dest / "sub" / "f").symlink_to(outside / "target")
    place(got, dest)
    assert (dest / "sub" / "old").read_text() == "old\n"  # merged, not replaced
    assert not (dest / "sub" / "f").is_symlink() and (dest / "sub" / "f").read_text() == "new\n"
    assert (outside / "target").read_text() == "keep\n"
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "x").write_text("x\n")
    (dest / "blocker").write_text("file\n")
    with pytest.raises(CopyError, match="non-directory"):
        place(lone, dest / "blocker")


def _packed(src: Path, archive: bool = False) -> dict[str, tuple[bytes, tarfile.TarInfo]]:
    from ignitevm.ops.copy import _add

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, Path(os.path.realpath(src)), src.name, archive)
    buf.seek(0)
    out = {}
    with tarfile.open(fileobj=buf) as tar:
        for m in tar:
            f = tar.extractfile(m)
            out[m.name] = (f.read() if f else b"", m)
    return out


def test_to_vm_follows_a_top_level_link_and_reads_pseudo_files(tmp_path: Path) -> None:
    """ignite cp HOSTLINK VM:PATH copies the target's content under the link's name (Ignite's
    e2e TestCopySymlinkedFileFromHostToVM); a /proc file is sent with what it reads as."""
    target = tmp_path / "file"
    target.write_text("Some file content.")
    link = tmp_path / "file-link"
    link.symlink_to(target)
    packed = _packed(link)
    assert list(packed) == ["file-link"]
    data, info = packed["file-link"]
    assert info.isreg() and data == b"Some file content."
    assert info.uid == 0 and info.uname == "root"  # no -a: the VM's root owns the copy
    version = _packed(Path("/proc/version"))["version"][0]
    assert version.startswith(b"Linux version") and version == Path("/proc/version").read_bytes()
