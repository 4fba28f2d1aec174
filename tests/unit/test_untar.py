"""Tars from untrusted sources (ignite cp from a guest): nothing lands outside the destination,
no device node is made, set-id bits go; with Python's extraction filters and with the checks
that stand in for them where Python has none (Debian 12's 3.11.2)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ignitevm import untar
from ignitevm.untar import UnsafeTarError, extract_safely


@pytest.fixture(params=["builtin", "fallback"])
def filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "fallback":
        monkeypatch.setattr(untar, "FILTERS", False)
    elif not untar.FILTERS:
        pytest.skip("this Python has no extraction filters")
    yield request.param


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r|")


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o644
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def test_ordinary_tree(tmp_path: Path, filters: str) -> None:
    tar = _tar(
        (_info("d", tarfile.DIRTYPE, mode=0o755), b""),
        (_info("d/f", mode=0o4755), b"x"),
        (_info("d/l", tarfile.SYMTYPE, linkname="/etc/localtime"), b""),  # kept as it is
        (_info("d/h", tarfile.LNKTYPE, linkname="d/f", mode=0o4755), b""),
    )
    extract_safely(tar, tmp_path)
    assert (tmp_path / "d/f").read_bytes() == b"x"
    assert stat.S_IMODE((tmp_path / "d/f").stat().st_mode) == 0o755  # no set-id bit
    assert os.readlink(tmp_path / "d/l") == "/etc/localtime"
    assert (tmp_path / "d/h").stat().st_ino == (tmp_path / "d/f").stat().st_ino


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([(_info("../x"), b"evil")], id="dotdot"),
        pytest.param([(_info("a/../../x"), b"evil")], id="inner-dotdot"),
        pytest.param(
            [(_info("l", tarfile.SYMTYPE, linkname="/tmp"), b""), (_info("l/x"), b"evil")],
            id="through-symlink",
        ),
        pytest.param([(_info("h", tarfile.LNKTYPE, linkname="../outside/f"), b"")], id="hardlink"),
    ],
)
def test_nothing_lands_outside(tmp_path: Path, filters: str, members: list) -> None:  # type: ignore[type-arg]
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "f").write_text("keep")
    with pytest.raises(UnsafeTarError):
        extract_safely(_tar(*members), dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "outside"]
    assert [p.name for p in outside.iterdir()] == ["f"] and (outside / "f").read_text() == "keep"


def test_device_nodes_are_not_made(tmp_path: Path, filters: str) -> None:
    disk = _info("sda", tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o666)
    extract_safely(_tar((disk, b""), (_info("f"), b"ok")), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_data_mode_refuses_absolute_links(tmp_path: Path, filters: str) -> None:
    tar = _tar((_info("l", tarfile.SYMTYPE, linkname="/etc/passwd"), b""))
    with pytest.raises(UnsafeTarError):
        extract_safely(tar, tmp_path, data=True)
