"""Ring.attach(): every way a file can be wrong gives its own exception naming the field, and no
file, however hostile, crashes the process."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barfast.ring import (
    BadCapacityError,
    BadDataOffsetError,
    BadMagicError,
    BadRecordSizeError,
    BadVersionError,
    Ring,
    RingCorruptError,
    RingError,
    RingFormatError,
    RingNotFoundError,
    TruncatedRingError,
    check_synthetic,
    synthetic_records,
)
from barfast.status import BarfastError


@pytest.fixture
def ring_file(tmp_path):
    path = tmp_path / "ring"
    ring = Ring.create(1 << 6, path)
    ring.publish(synthetic_records(0, 10))
    ring.close()
    return path


def patch(path, offset, fmt, value):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def test_attach_reads_what_the_creator_published(ring_file):
    ring = Ring.attach(ring_file)
    assert ring.capacity == 64 and ring.pending == 10 and ring.path == str(ring_file)
    a, b = ring.peek()
    assert check_synthetic(a) == 0 and np.array_equal(a["seq"], np.arange(10, dtype=np.uint64))
    ring.consume(4)
    again = Ring.attach(ring_file)  # positions live in the file, not in the handle
    assert again.pending == 6 and again.consumed == 4


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "exc", "field", "found"),
    [
        (0, "<8s", b"BARFRINX", BadMagicError, "magic", "b'BARFRINX'"),
        (0, "<8s", b"GNIRFRAB", BadMagicError, "magic", "b'GNIRFRAB'"),  # byte-swapped writer
        (8, "<I", 2, BadVersionError, "version", "2"),
        (8, "<I", 0, BadVersionError, "version", "0"),
        (12, "<I", 32, BadRecordSizeError, "record_size", "32"),
        (16, "<Q", 1000, BadCapacityError, "capacity", "1000"),
        (16, "<Q", 0, BadCapacityError, "capacity", "0"),
        (16, "<Q", 1 << 50, BadCapacityError, "capacity", str(1 << 50)),
        (16, "<Q", 1 << 7, TruncatedRingError, "file size", "bytes"),  # says 128, file has 64
        (24, "<Q", 8192, BadDataOffsetError, "data_offset", "8192"),
    ],
)
def test_attach_rejects_each_bad_header_field(ring_file, offset, fmt, value, exc, field, found):
    patch(ring_file, offset, fmt, value)
    with pytest.raises(exc) as info:
        Ring.attach(ring_file)
    err = info.value
    assert isinstance(err, RingFormatError) and isinstance(err, ValueError)
    assert isinstance(err, BarfastError)  # the CLI prints it as one line
    assert err.field == field and err.path == str(ring_file)
    msg = str(err)
    assert msg.startswith(f"ring file {ring_file}: bad {field}: expected ") and found in msg


def test_attach_truncated_file(ring_file):
    os.truncate(ring_file, 4096 + 64 * 64 - 1)
    with pytest.raises(TruncatedRingError, match=r"expected >= 8192 bytes .* found 8191 bytes"):
        Ring.attach(ring_file)
    os.truncate(ring_file, 4096)  # header only
    with pytest.raises(TruncatedRingError, match="found 4096 bytes"):
        Ring.attach(ring_file)
    os.truncate(ring_file, 100)  # not even a header
    with pytest.raises(TruncatedRingError, match=r">= 4096 bytes \(the header\), found 100"):
        Ring.attach(ring_file)


def test_attach_empty_missing_and_not_a_file(tmp_path):
    empty = tmp_path / "empty"
    empty.touch()
    with pytest.raises(TruncatedRingError, match="empty file"):
        Ring.attach(empty)
    with pytest.raises(RingNotFoundError, match="no ring file") as info:
        Ring.attach(tmp_path / "missing")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, RingError)
    with pytest.raises(RingFormatError, match="a directory"):
        Ring.attach(tmp_path)
    with pytest.raises(RingFormatError, match="character device"):
        Ring.attach("/dev/zero")


def test_a_larger_file_than_needed_is_fine(ring_file):
    with open(ring_file, "ab") as f:
        f.write(b"\xff" * 100)
    assert Ring.attach(ring_file).pending == 10


def test_unknown_bytes_in_reserved_areas_are_ignored(ring_file):
    # forward compatibility inside one version: readers ignore reserved bytes
    patch(ring_file, 60, "<Q", 0xDEADBEEF)
    patch(ring_file, 1000, "<Q", 0xDEADBEEF)
    assert Ring.attach(ring_file).pending == 10


HEADER = struct.Struct("<8sIIQQqQi")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.binary(min_size=0, max_size=600),
    valid_prefix=st.booleans(),
    cap_log2=st.integers(0, 12),
    prod=st.integers(0, 2**64 - 1),
    cons=st.integers(0, 2**64 - 1),
    size_delta=st.integers(-5000, 5000),
)
def test_hostile_files_never_crash(tmp_path, data, valid_prefix, cap_log2, prod, cons, size_delta):
    """Random bytes, or a valid line 0 with random positions and a random size: attach either
    raises a RingError or gives a ring whose peek/consume/publish raise RingError or work."""
    path = tmp_path / "hostile"
    if valid_prefix:
        cap = 1 << cap_log2
        buf = bytearray(max(0, 4096 + cap * 64 + size_delta))
        head = HEADER.pack(b"BARFRING", 1, 64, cap, 4096, 1, 0, 0)
        buf[: len(head)] = head[: len(buf)]
        for off, v in ((128, prod), (256, cons)):
            if len(buf) >= off + 8:
                buf[off : off + 8] = struct.pack("<Q", v)
        buf[600 : 600 + len(data)] = data[: max(0, len(buf) - 600)]
    else:
        buf = bytearray(data)
    path.write_bytes(bytes(buf))
    try:
        ring = Ring.attach(path)
    except RingError:
        return
    try:
        a, b = ring.peek()
        assert len(a) + len(b) <= ring.capacity
        check_synthetic(a)
        check_synthetic(b)
        ring.consume(len(a) + len(b))
    except RingCorruptError:
        pass
    ring.publish(synthetic_records(0, 3))  # never writes outside the ring, never raises
    ring.close()
