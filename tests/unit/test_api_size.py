"""Size parsing and printing as Ignite (c2h5oh/datasize) does it, plus our decimals."""

from __future__ import annotations

import pickle

import pytest

from ignitevm.api import Size
from ignitevm.errors import ValidationError

MiB = 1 << 20
GiB = 1 << 30


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("512MB", 512 * MiB),
        ("800MB", 800 * MiB),
        ("3GB", 3 * GiB),
        ("4GB", 4 * GiB),
        ("4G", 4 * GiB),
        ("4g", 4 * GiB),
        ("4gib", 4 * GiB),
        ("4 GB", 4 * GiB),
        ("16KB", 16 * 1024),
        ("1024", 1024),
        ("1024B", 1024),
        ("2TB", 2 << 40),
        ("1.5GiB", 3 * GiB // 2),
        ("1.5GB", 1536 * MiB),
        ("0.5M", MiB // 2),
        ("1gigabyte", GiB),
        (" 10 megabytes ", 10 * MiB),
        (4096, 4096),
    ],
)
def test_parse(text: str | int, nbytes: int) -> None:
    assert Size.parse(text).bytes == nbytes


@pytest.mark.parametrize(
    ("nbytes", "serialized", "human"),
    [
        (512 * MiB, "512MB", "512.0 MB"),
        (4 * GiB, "4GB", "4.0 GB"),
        (3 * GiB, "3GB", "3.0 GB"),
        (1536 * MiB, "1536MB", "1.5 GB"),
        (GiB, "1GB", "1024.0 MB"),  # datasize's HR() uses a unit only above it
        (1024, "1KB", "1024 B"),
        (1000, "1000B", "1000 B"),
        (1025, "1025B", "1.0 KB"),
        (0, "0B", "0 B"),
    ],
)
def test_print(nbytes: int, serialized: str, human: str) -> None:
    size = Size(nbytes)
    assert str(size) == serialized
    assert size.human() == human
    assert Size.parse(serialized, allow_zero=True) == size  # round trip


@pytest.mark.parametrize(
    "text", ["", "abc", "12XB", "MB", "-1GB", "1.2.3GB", "100Mb", "5Gb", "0", "0GB", "1e3"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Size.parse(text)
    assert repr(text) in str(exc.value)
    assert exc.value.hint


def test_bits_are_explained() -> None:
    with pytest.raises(ValidationError, match="means bits"):
        Size.parse("512Mb")


def test_zero_and_negative() -> None:
    assert Size.parse("0B", allow_zero=True).bytes == 0
    with pytest.raises(ValidationError, match="more than zero"):
        Size.parse(0)
    with pytest.raises(ValidationError, match="negative"):
        Size.parse(-5)
    with pytest.raises(ValidationError):
        Size.parse(True)


def test_value_semantics() -> None:
    a, b = Size.parse("1GB"), Size.parse("1024MB")
    assert a == b and hash(a) == hash(b)
    assert Size.parse("512MB") < a
    assert sorted([a, Size(1)]) == [Size(1), a]
    assert a.mib() == 1024 and Size.from_mib(256).bytes == 256 * MiB
    assert Size.parse("1.5MiB").mib() == 1
    assert pickle.loads(pickle.dumps(a)) == a
    assert repr(a) == "Size(1GB)"
    with pytest.raises(AttributeError):
        a.bytes = 5
