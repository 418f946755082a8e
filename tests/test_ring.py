"""The ring's single-process behaviour: layout, empty/full/wrap-around, drops, publish forms,
producer identity, lifetime with live views, and the cross-process basics (fork, dead producer)."""

from __future__ import annotations

import gc
import os
import re
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

from barfast.engine import _core
from barfast.ring import (
    HEADER_SIZE,
    MAGIC,
    RECORD_DTYPE,
    Ring,
    RingClosedError,
    RingCorruptError,
    check_synthetic,
    synthetic_records,
)

HEADER_H = (
    Path(__file__).resolve().parents[1] / "src" / "barfast" / "engine" / "include" / "barfast.h"
)


def seqs(ring: Ring, max_records: int | None = None) -> list[int]:
    a, b = ring.peek(max_records)
    return [int(x) for x in a["seq"]] + [int(x) for x in b["seq"]]


# ------------------------------------------------------------------------------ layout


def test_record_dtype_matches_the_c_struct_field_by_field():
    # Parse bf_sample_t from the header: "<type> <name>; /* <offset>: ..." for every field.
    text = HEADER_H.read_text()
    body = text[text.index("typedef struct bf_sample_s") : text.index("} bf_sample_t;")]
    fields = re.findall(r"u?int(\d+)_t\s+(\w+);\s*/\*\s*(\d+):", body)
    assert len(fields) == 14
    assert RECORD_DTYPE.itemsize == 64
    assert list(RECORD_DTYPE.names or ()) == [name for _, name, _ in fields]
    for bits, name, offset in fields:
        dt, off = RECORD_DTYPE.fields[name][:2]  # type: ignore[index]
        assert off == int(offset), name
        assert dt.itemsize * 8 == int(bits), name
        assert dt.kind == "u" and dt.byteorder in ("<", "|", "="), name


def test_numpy_formula_equals_native_formula():
    # The C fill writes through bf_sample_t; equality proves names/offsets/widths line up.
    a = np.empty(777, dtype=RECORD_DTYPE)
    _core._fill_records_from_seq(a.view(np.uint8), (1 << 33) - 300)
    b = synthetic_records((1 << 33) - 300, 777)
    assert a.tobytes() == b.tobytes()
    assert check_synthetic(a) == 0
    a["conn_id"][10] ^= 1
    a["connect_us"][20] ^= 1 << 31
    assert check_synthetic(a) == 2


def test_header_bytes_of_a_new_file_ring(tmp_path):
    path = tmp_path / "r"
    with Ring.create(1 << 5, path) as ring:
        assert ring.path == str(path)
        raw = path.read_bytes()
        assert len(raw) == HEADER_SIZE + 32 * 64
        magic, ver, rsize, cap, doff, pid, created, done = struct.unpack_from("<8sIIQQqQi", raw)
        assert (magic, ver, rsize, cap, doff, pid, done) == (MAGIC, 1, 64, 32, 4096, os.getpid(), 0)
        assert abs(created - __import__("time").time_ns()) < 60e9
        # positions/counter lines at 128/256/384, everything else zero
        assert struct.unpack_from("<Q", raw, 128)[0] == 0
        ring.publish(synthetic_records(0, 3))
        ring.consume(1)
        ring.publish(synthetic_records(3, 40))  # 30 fit (1 consumed), 10 dropped
        ring.mark_producer_done()
        raw = path.read_bytes()
        assert struct.unpack_from("<Q", raw, 128)[0] == 33  # prod_pos
        assert struct.unpack_from("<Q", raw, 256)[0] == 1  # cons_pos
        assert struct.unpack_from("<Q", raw, 384)[0] == 10  # dropped
        assert struct.unpack_from("<i", raw, 48)[0] == 1  # producer_done
        assert raw[56:128] == bytes(72) and raw[392:4096] == bytes(4096 - 392)
        rec1 = np.frombuffer(raw, RECORD_DTYPE, count=1, offset=4096 + 64)
        assert int(rec1["seq"][0]) == 1 and check_synthetic(rec1) == 0


# ------------------------------------------------------------------------------ states


def test_empty_ring():
    ring = Ring.create(8)
    a, b = ring.peek()
    assert a.shape == (0,) and b.shape == (0,) and a.dtype == RECORD_DTYPE
    assert ring.pending == 0 and ring.dropped == 0 and not ring.producer_done
    ring.consume(0)
    with pytest.raises(ValueError, match="cannot consume 1 records: 0 are pending"):
        ring.consume(1)
    with pytest.raises(ValueError):
        ring.consume(-1)
    assert ring.publish(np.empty(0, RECORD_DTYPE)) == 0


def test_full_ring_drops_and_counts():
    ring = Ring.create(16)
    assert ring.publish(synthetic_records(0, 16)) == 16
    assert ring.pending == 16 and ring.dropped == 0
    assert ring.publish(synthetic_records(16, 1)) == 0
    assert ring.publish(synthetic_records(17, 5)) == 0
    assert ring.dropped == 6 and ring.pending == 16
    ring.consume(3)
    assert ring.publish(synthetic_records(22, 10)) == 3  # partial: as many as fit
    assert ring.dropped == 13
    assert seqs(ring) == list(range(3, 16)) + [22, 23, 24]


def test_wrap_around_gives_two_views_into_the_ring():
    ring = Ring.create(8)
    ring.publish(synthetic_records(0, 5))
    ring.consume(5)
    assert ring.publish(synthetic_records(5, 6)) == 6  # slots 5,6,7 then 0,1,2
    a, b = ring.peek()
    assert [int(x) for x in a["seq"]] == [5, 6, 7]
    assert [int(x) for x in b["seq"]] == [8, 9, 10]
    assert np.shares_memory(a, ring._records) and np.shares_memory(b, ring._records)
    assert not a.flags.writeable and not b.flags.writeable
    assert check_synthetic(a) == 0 and check_synthetic(b) == 0
    a2, b2 = ring.peek(max_records=2)
    assert len(a2) == 2 and len(b2) == 0
    a2, b2 = ring.peek(max_records=4)
    assert len(a2) == 3 and len(b2) == 1
    ring.consume(4)
    assert seqs(ring) == [9, 10]
    # positions keep growing past the capacity many times over (never wrap)
    for lap in range(100):
        assert ring.publish(synthetic_records(11 + lap * 7, 7)) == 6
        ring.consume(6)
    assert ring.published == 11 + 600 and ring.consumed == 11 + 600 - 2


def test_single_record_forms():
    ring = Ring.create(8)
    rec = synthetic_records(7, 1)
    assert ring.publish(rec[0]) == 1  # np.void
    assert ring.publish(tuple(rec[0].tolist())) == 1  # tuple in field order
    assert ring.publish({"seq": 9, "status": 200, "done_ns": 5}) == 1  # dict, rest zero
    a, _ = ring.peek()
    assert a[0].tobytes() == rec.tobytes() and a[1].tobytes() == rec.tobytes()
    assert int(a[2]["seq"]) == 9 and int(a[2]["status"]) == 200 and int(a[2]["send_ns"]) == 0
    with pytest.raises(ValueError, match="unknown record field 'nope'"):
        ring.publish({"nope": 1})
    with pytest.raises(ValueError, match="14 fields, got 2"):
        ring.publish((1, 2))
    with pytest.raises(TypeError, match="RECORD_DTYPE"):
        ring.publish(np.zeros(3, dtype=np.uint64))
    with pytest.raises(TypeError, match="cannot publish a str"):
        ring.publish("x")
    # non-contiguous arrays are accepted (copied)
    assert ring.publish(synthetic_records(100, 10)[::2]) == 5
    assert seqs(ring)[3:] == [100, 102, 104, 106, 108]


def test_cannot_construct_directly_and_bad_capacity():
    with pytest.raises(TypeError, match="Ring.create"):
        Ring()
    for bad in (0, 3, 1000, -8, 1 << 41):
        with pytest.raises(ValueError, match="capacity"):
            Ring.create(bad)
    with pytest.raises(ValueError, match="capacity"):
        Ring.create(8.0)  # type: ignore[arg-type]
    assert Ring.create(1).capacity == 1


def test_capacity_one():
    ring = Ring.create(1)
    assert ring.publish(synthetic_records(0, 3)) == 1 and ring.dropped == 2
    assert seqs(ring) == [0]
    ring.consume(1)
    assert ring.publish(synthetic_records(3, 1)) == 1 and seqs(ring) == [3]


def test_native_publish_drops_when_full_and_counts():
    ring = Ring.create(16)
    published, dropped, *_ = _core._bench_produce(ring, 100, single=True, retry=False)
    assert (published, dropped, ring.dropped, ring.pending) == (16, 84, 84, 16)
    ring.consume(10)
    published, dropped, *_ = _core._bench_produce(ring, 25, batch=4, first_seq=100, retry=False)
    assert (published, dropped, ring.dropped) == (10, 15, 99)
    assert seqs(ring) == list(range(10, 16)) + list(range(100, 110))
    a, b = ring.peek()
    assert check_synthetic(a) == 0 and check_synthetic(b) == 0


def test_producer_done_and_pid():
    ring = Ring.create(8)
    assert ring.producer_pid == os.getpid() and not ring.producer_done
    ring.mark_producer_done()
    assert ring.producer_done


def test_corrupt_positions_raise_instead_of_reading_garbage(tmp_path):
    path = tmp_path / "r"
    ring = Ring.create(8, path)
    ring.publish(synthetic_records(0, 2))
    with open(path, "r+b") as f:  # a hostile writer moves the producer far ahead
        f.seek(128)
        f.write(struct.pack("<Q", 1 << 50))
    with pytest.raises(RingCorruptError, match="more than the capacity 8 apart"):
        ring.peek()
    with open(path, "r+b") as f:  # ... or the consumer ahead of the producer
        f.seek(128)
        f.write(struct.pack("<Q", 2))
        f.seek(256)
        f.write(struct.pack("<Q", 5))
    with pytest.raises(RingCorruptError):
        ring.peek()
    # a producer that (re)syncs treats a consumer position ahead of it as "full": no overrun
    published, dropped, *_ = _core._bench_produce(ring, 4, retry=False)
    assert (published, dropped) == (0, 4)


# ------------------------------------------------------------------------------ lifetime


def test_close_with_live_views_does_not_crash(tmp_path):
    for path in (None, tmp_path / "r"):
        ring = Ring.create(8, path)
        ring.publish(synthetic_records(0, 5))
        a, b = ring.peek()
        ring.close()
        ring.close()  # idempotent
        assert ring.closed and "closed" in repr(ring)
        assert [int(x) for x in a["seq"]] == [0, 1, 2, 3, 4]  # still mapped, kept by the view
        assert check_synthetic(a) == 0
        with pytest.raises(RingClosedError):
            ring.peek()
        with pytest.raises(RingClosedError):
            ring.consume(0)
        with pytest.raises(RingClosedError):
            ring.publish(a)
        with pytest.raises(RingClosedError):
            _ = ring.dropped
        with pytest.raises(RingClosedError):
            _ = ring.pending
        del a, b
        gc.collect()


def test_close_without_views_unmaps_and_context_manager():
    with Ring.create(8) as ring:
        ring.publish(synthetic_records(0, 1))
        a, _ = ring.peek()
        rec = a.copy()
        del a
    assert ring.closed and int(rec["seq"][0]) == 0


# ------------------------------------------------------------------------------ processes


def _wait_ok(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_anonymous_ring_is_shared_with_a_forked_child():
    ring = Ring.create(1 << 10)
    pid = os.fork()
    if pid == 0:  # child: Python vectorised publisher
        try:
            sent = 0
            while sent < 5000:
                batch = synthetic_records(sent, min(700, 5000 - sent))
                sent += ring.publish(batch, count_dropped=False)
            ring.mark_producer_done()
        finally:
            os._exit(0)
    got = []
    while True:
        done = ring.producer_done
        a, b = ring.peek()
        for v in (a, b):
            assert check_synthetic(v) == 0
            got.extend(int(x) for x in v["seq"])
        ring.consume(len(a) + len(b))
        if done and ring.pending == 0:
            break
    _wait_ok(pid)
    assert got == list(range(5000)) and ring.dropped == 0
    assert ring.producer_pid == pid  # the publishing child declared itself producer
    # the parent can take over producing after the child is gone
    assert ring.publish(synthetic_records(5000, 1)) == 1 and ring.producer_pid == os.getpid()
    assert seqs(ring) == [5000]


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_consumer_attaching_after_producer_died_reads_everything(tmp_path, how):
    path = tmp_path / "dead"
    Ring.create(1 << 12, path).close()
    pid = os.fork()
    if pid == 0:  # a producer that attaches, publishes and dies without closing
        try:
            ring = Ring.attach(path)
            ring.publish(synthetic_records(0, 3000))
            ring.publish(synthetic_records(3000, 2000))  # 1096 fit, 904 dropped
            if how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    ring = Ring.attach(path)
    assert ring.producer_pid == pid and not ring.producer_done
    assert ring.pending == 4096 and ring.dropped == 904
    a, b = ring.peek()
    assert len(b) == 0 and check_synthetic(a) == 0
    assert np.array_equal(a["seq"], np.arange(4096, dtype=np.uint64))
    ring.consume(4096)
    assert ring.pending == 0
    ring.close()
    os.unlink(path)


def test_native_producer_python_consumer_and_back(tmp_path):
    path = tmp_path / "x"
    ring = Ring.create(4096, path)
    pid = os.fork()
    if pid == 0:
        try:
            r = Ring.attach(path)
            res = _core._bench_produce(r, 200_000, batch=100, timeout_s=20)
            r.mark_producer_done()
            os._exit(0 if res[0] == 200_000 and not res[4] else 1)
        finally:
            os._exit(2)
    seen = 0
    while seen < 200_000:
        a, b = ring.peek()
        for v in (a, b):
            if len(v):
                assert int(v["seq"][0]) == seen and check_synthetic(v) == 0
                seen += len(v)
        ring.consume(len(a) + len(b))
    _wait_ok(pid)
    assert ring.dropped == 0
    # Python producer -> native consumer (C checks every byte)
    pid = os.fork()
    if pid == 0:
        try:
            r = Ring.attach(path)
            sent = 0
            while sent < 100_000:
                batch = synthetic_records(200_000 + sent, min(1000, 100_000 - sent))
                sent += r.publish(batch, count_dropped=False)
            os._exit(0)
        finally:
            os._exit(2)
    res = _core._bench_consume(ring, 100_000, first_seq=200_000, timeout_s=20)
    _wait_ok(pid)
    assert res["received"] == 100_000 and res["bad"] == 0 and not res["timed_out"]
    assert ring.dropped == 0
