"""The coordinator's histoblob decoder and sparse merge: exact against hdrh, refusing hostile input.

hdrh (HdrHistogram.decode + add) is the reference for every well-formed blob it decodes correctly.
Two hdrh defects are pinned too: pyhdrh's decode reports the total through a C `int` (wrong from
2^31 samples on) and masks the 9th varint byte to 7 bits (wrong counts from 2^62 on); there the
reference is the source histogram itself.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import subprocess
import time
import zlib

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barfast.engine._core import hist_add_sparse, hist_decode_varints, hist_sparse_fits
from barfast.engine.aggregate import HIST_HIGHEST_NS, encode_histogram, new_histogram
from barfast.engine.histoblob import (
    HistoblobDecoder,
    HistoblobEncoder,
    HistoblobError,
    index_values,
    to_hdrh,
)
from barfast.result import Merger
from barfast.result.hist import add_hist, add_sparse, percentiles
from barfast.status import ProtocolError
from conftest import barfast_cmd, free_port

DEC = HistoblobDecoder(new_histogram())
INT64_MAX = 2**63 - 1


def hist_of(entries: list[tuple[int, int]]) -> HdrHistogram:
    h = new_histogram()
    for v, c in entries:
        h.record_value(v, c)
    return h


def counts_of(h: HdrHistogram) -> np.ndarray:
    return np.frombuffer(h.counts, dtype=np.uint64)


def sparse_equals_counts(sc, counts: np.ndarray) -> None:
    nz = np.flatnonzero(counts)
    assert sc.idx.tolist() == nz.tolist()
    assert sc.val.tolist() == counts[nz].tolist()
    assert sc.total == int(counts.astype(object).sum())
    assert (sc.min_index, sc.max_index) == ((int(nz[0]), int(nz[-1])) if len(nz) else (-1, -1))


values = st.integers(0, HIST_HIGHEST_NS)
small_counts = st.integers(1, 1000)
entries_st = st.lists(st.tuples(values, small_counts), max_size=60)
# Huge counts; a bucket's sum stays <= INT64_MAX (pyhdrh's encode() aborts the process above it).
huge_entries_st = st.lists(st.tuples(values, st.integers(1, INT64_MAX // 4)), max_size=4)


def blob_of(h: HdrHistogram) -> bytes:
    return bytes(h.encode())


# --- exactness against hdrh ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(entries_st)
def test_decode_equals_hdrh(entries: list[tuple[int, int]]) -> None:
    h = hist_of(entries)
    blob = blob_of(h)
    sc = DEC.decode(blob)
    ref = HdrHistogram.decode(blob)
    sparse_equals_counts(sc, counts_of(ref))
    sparse_equals_counts(sc, counts_of(h))
    assert sc.total == ref.get_total_count() == h.get_total_count()
    assert DEC.decode(blob.decode("ascii")).total == sc.total  # str blobs too


@settings(max_examples=30, deadline=None)
@given(huge_entries_st)
def test_decode_huge_counts(entries: list[tuple[int, int]]) -> None:
    h = hist_of(entries)
    sc = DEC.decode(blob_of(h))
    sparse_equals_counts(sc, counts_of(h))  # exact, also where the total passes 2^31 and 2^64 fits
    ref = HdrHistogram.decode(blob_of(h))
    if int(counts_of(h).max()) < 2**62:  # hdrh agrees on counts below 2^62 (values share buckets)
        assert np.array_equal(counts_of(ref), counts_of(h))
    if h.get_total_count() < 2**31:
        assert ref.get_total_count() == sc.total


def test_decode_beyond_hdrh_bugs() -> None:
    """Counts >= 2^62 (9-byte varints with the top bit set) and totals >= 2^31: exact here."""
    h = hist_of([(1000, 2**32 + 5), (5000, INT64_MAX), (1, 1)])
    sc = DEC.decode(blob_of(h))
    sparse_equals_counts(sc, counts_of(h))
    assert sc.total == 2**32 + 5 + INT64_MAX + 1
    ref = HdrHistogram.decode(blob_of(h))
    assert ref.get_total_count() != sc.total  # pyhdrh's C int total: why hdrh is not the reference


def test_decode_empty_histogram() -> None:
    sc = DEC.decode(blob_of(new_histogram()))
    assert (sc.n, sc.total, sc.min_index, sc.max_index) == (0, 0, -1, -1)
    m = Merger()
    m.add(
        {
            "worker": 0,
            "seq": 0,
            "final": True,
            "counters": {},
            "hist": {"latency": blob_of(new_histogram())},
        }
    )
    assert m.hists["latency"].get_total_count() == 0
    assert m.hists["latency"].encode() == new_histogram().encode()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(values, small_counts), max_size=30), min_size=1, max_size=6))
def test_sparse_merge_equals_hdrh_add(parts: list[list[tuple[int, int]]]) -> None:
    """Merging blobs sparsely gives hdrh's decode+add result: counts, total, min, max, encoding."""
    ours, ref = new_histogram(), new_histogram()
    cnt = counts_of(ours)
    for entries in parts:
        blob = blob_of(hist_of(entries))
        add_sparse(ours, cnt, DEC.decode(blob))
        add_hist(ref, HdrHistogram.decode(blob))
        assert ours.get_total_count() == ref.get_total_count()
        assert ours.get_min_value() == ref.get_min_value()
        assert ours.get_max_value() == ref.get_max_value()
        assert (ours.min_value, ours.max_value) == (ref.min_value, ref.max_value)
    assert bytes(memoryview(ours.counts)) == bytes(memoryview(ref.counts))
    assert ours.encode() == ref.encode()


@settings(max_examples=40, deadline=None)
@given(
    entries_st,
    st.lists(st.floats(0.0, 100.0, allow_nan=False) | st.sampled_from([0.0, 50.0, 99.9, 100.0])),
)
def test_percentiles_equal_hdrh(entries: list[tuple[int, int]], pcts: list[float]) -> None:
    h = hist_of(entries)
    pcts = pcts or [50.0, 90.0, 99.0]
    got = percentiles(h, counts_of(h), h.get_total_count(), pcts)
    assert got == h.get_percentile_to_value_dict(pcts)


def test_merger_series_percentiles_match_a_per_second_hdrh_histogram() -> None:
    rnd = random.Random(7)
    m = Merger()
    per_second = [new_histogram() for _ in range(8)]
    seq = dict.fromkeys(range(3), 0)
    for sec in range(8):
        for w in range(3):
            h = hist_of([(int(rnd.lognormvariate(12, 1)), rnd.randint(1, 50)) for _ in range(200)])
            add_hist(per_second[sec], h)
            m.add({"worker": w, "seq": seq[w], "final": False, "interval": sec, "counters": {},
                   "hist": {"latency": blob_of(h)}})  # fmt: skip
            seq[w] += 1
    for sec in range(8):  # closed ones (0, 1) and open ones alike
        v = per_second[sec].get_percentile_to_value_dict([50.0, 90.0, 99.0])
        pt = m.series_point(sec)
        assert pt is not None
        assert (pt["p50_ms"], pt["p90_ms"], pt["p99_ms"]) == tuple(
            round(v[p] / 1e6, 6) for p in (50.0, 90.0, 99.0)
        )


# --- hostile blobs ---------------------------------------------------------------------------------


def make_blob(
    varints: bytes,
    *,
    cookie: int = 0x1C849313,
    payload_len: int | None = None,
    norm: int = 0,
    sig: int = 3,
    lowest: int = 1,
    highest: int = HIST_HIGHEST_NS,
    ocookie: int = 0x1C849314,
    olen_delta: int = 0,
    level: int = 6,
    trailer: bytes = b"",
) -> bytes:
    plen = len(varints) if payload_len is None else payload_len
    payload = struct.pack(">IIIIQQd", cookie, plen, norm, sig, lowest, highest, 1.0) + varints
    comp = zlib.compress(payload, level) + trailer
    return base64.b64encode(struct.pack(">II", ocookie, len(comp) + olen_delta) + comp)


def zz(v: int) -> bytes:
    """ZigZag LEB128 of a signed value (HdrHistogram V2; 9th byte carries 8 bits)."""
    u = ((v << 1) ^ (v >> 63)) & (2**64 - 1)
    out = bytearray()
    for i in range(9):
        if i == 8:
            out.append(u & 0xFF)
            break
        if u >> 7 == 0:
            out.append(u)
            break
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    return bytes(out)


def test_handmade_blob_decodes() -> None:
    sc = DEC.decode(make_blob(zz(-5) + zz(3) + zz(0) + zz(-2) + zz(7)))
    assert sc.idx.tolist() == [5, 9] and sc.val.tolist() == [3, 7]
    assert (
        HdrHistogram.decode(make_blob(zz(-5) + zz(3) + zz(0) + zz(-2) + zz(7))).get_total_count()
        == 10
    )


COUNTS_LEN = DEC.counts_len


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "shorter than its header"),
        (b"HISTFAAA", "shorter than its header"),
        (b"!!!!", "shorter than its header"),  # non-alphabet characters are skipped, as by hdrh
        (b"HISTFAAAAAB", "not base64"),
        (make_blob(zz(1), ocookie=0x12345678), "compression cookie"),
        (make_blob(zz(1), olen_delta=1), "compressed bytes but holds"),
        (base64.b64encode(struct.pack(">II", 0x1C849314, 5) + b"abcde"), "does not decompress"),
        (make_blob(zz(1), trailer=b"xyz"), "after its zlib stream"),
        (make_blob(zz(1), cookie=0x1C849999), "encoding cookie"),
        (make_blob(zz(1), sig=2), "layout"),
        (make_blob(zz(1), lowest=1000), "layout"),
        (make_blob(zz(1), highest=10**9), "layout"),
        (make_blob(zz(1), norm=3), "normalizing index offset"),
        (make_blob(zz(1), payload_len=7), "payload says"),
        (make_blob(b"\x81\x80"), "truncated varint"),
        (make_blob(zz(-COUNTS_LEN - 1)), "past the end"),
        (make_blob(zz(-COUNTS_LEN) + zz(1)), "past the end"),
        (make_blob(zz(-(2**62))), "past the end"),
        (make_blob(zz(-(2**63))), "past the end"),
        (make_blob(zz(INT64_MAX) * 3), "overflows 64 bits"),
    ],
)
def test_hostile_blob_refused(blob: bytes, match: str) -> None:
    with pytest.raises(HistoblobError, match=match):
        DEC.decode(blob)


def test_truncated_zlib_refused() -> None:
    raw = base64.b64decode(make_blob(zz(1) * 100))
    comp = raw[8:-6]
    with pytest.raises(HistoblobError, match="truncated|decompress"):
        DEC.decode(base64.b64encode(struct.pack(">II", 0x1C849314, len(comp)) + comp))


def test_zlib_bomb_refused_quickly() -> None:
    """50 MB of zeros in a ~50 KB blob: refused after inflating at most the layout's bound."""
    bomb = make_blob(b"\x00" * (50 * 1024 * 1024), level=9)
    assert len(bomb) < 100_000
    t = time.monotonic()
    with pytest.raises(HistoblobError, match="inflates past"):
        DEC.decode(bomb)
    assert time.monotonic() - t < 5.0  # a hang guard: the bound below is what is checked
    assert DEC.max_payload == 40 + 9 * COUNTS_LEN


def test_oversized_blob_refused_before_decoding() -> None:
    with pytest.raises(HistoblobError, match="exceeds"):
        DEC.decode(b"A" * (DEC.max_blob + 1))


def test_max_size_legitimate_blob_accepted() -> None:
    """The largest legitimate payload (every count a 9-byte varint) still decodes."""
    blob = make_blob(zz(2**62) * COUNTS_LEN, level=0)
    assert len(blob) <= DEC.max_blob
    with pytest.raises(HistoblobError, match="overflows 64 bits"):
        DEC.decode(blob)  # 33,792 x 2^62 overflows the total: refused, but by the count check
    sc = DEC.decode(make_blob(zz(2**40) * COUNTS_LEN, level=0))
    assert sc.n == COUNTS_LEN and sc.total == COUNTS_LEN * 2**40


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_blobs_never_crash(data: st.DataObject) -> None:
    """Random corruption of a valid blob (before or after compression): HistoblobError or a
    decode that hdrh agrees with — never another exception."""
    h = hist_of(data.draw(entries_st))
    raw = bytearray(base64.b64decode(blob_of(h)))
    if data.draw(st.booleans()):
        payload = bytearray(zlib.decompress(bytes(raw[8:])))
        for _ in range(data.draw(st.integers(1, 4))):
            payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
        comp = zlib.compress(bytes(payload))
        raw = bytearray(struct.pack(">II", 0x1C849314, len(comp)) + comp)
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    blob = base64.b64encode(bytes(raw))
    try:
        sc = DEC.decode(blob)
    except HistoblobError:
        return
    ref = HdrHistogram.decode(blob)
    c = counts_of(ref)
    if sc.max_index < 0 or int(sc.val.max()) < 2**62:
        sparse_equals_counts(sc, c)


def test_sparse_primitives_bounds() -> None:
    dst = np.zeros(10, dtype=np.uint64)
    idx = np.array([1, 9], dtype=np.int64)
    val = np.array([5, INT64_MAX], dtype=np.uint64)
    assert hist_sparse_fits(dst, idx, val, 2)
    hist_add_sparse(dst, idx, val, 2)
    assert not hist_sparse_fits(dst, idx, val, 2)
    with pytest.raises(OverflowError):
        hist_add_sparse(dst, idx, val, 2)
    assert dst.tolist() == [0, 5] + [0] * 7 + [INT64_MAX]  # untouched by the refused add
    assert not hist_sparse_fits(dst, np.array([10], dtype=np.int64), val, 1)
    assert not hist_sparse_fits(dst, np.array([-1], dtype=np.int64), val, 1)
    with pytest.raises(ValueError):
        hist_add_sparse(dst, idx, val, 3)
    sidx = np.empty(4, dtype=np.int64)
    with pytest.raises(ValueError, match="scratch"):
        hist_decode_varints(b"\x02", 0, 10, sidx, np.empty(4, dtype=np.uint64))


# --- hostile snapshots: refused whole, counted, nothing merged -------------------------------------


def good_snap(wid: int = 0, seq: int = 0) -> dict:
    h = hist_of([(1_000_000, 3), (2_000_000, 1)])
    return {
        "worker": wid, "seq": seq, "final": False, "interval": seq, "elapsed_ns": 10**9,
        "counters": {"completed": 4, "errors": 0}, "status": {200: 4}, "errors": {},
        "hist": {"latency": blob_of(h), "uncorrected": blob_of(h), "send_lag": blob_of(new_histogram())},
        "samples": 4, "interval_completed": 4, "interval_errors": 0,
        "cpu": {"user_s": 0.1, "sys_s": 0.0},
    }  # fmt: skip


def bomb_blob() -> bytes:
    return make_blob(b"\x00" * (8 * 1024 * 1024), level=9)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s["hist"].__setitem__("send_lag", bomb_blob()),  # the last view is bad
        lambda s: s["hist"].__setitem__("uncorrected", b"garbage!"),
        lambda s: s["hist"].__setitem__("latency", 12),
        lambda s: s.__setitem__("hist", [1, 2]),
        lambda s: s.__setitem__("interval", -1),
        lambda s: s.__setitem__("interval", "3"),
        lambda s: s.__setitem__("counters", {"completed": "many"}),
        lambda s: s.__setitem__("status", {"abc": 1}),
        lambda s: s.__setitem__("cpu", {"user_s": "x"}),
        lambda s: s.__setitem__("clamped", [1]),
        lambda s: s.__setitem__("ring", {"dropped": None}),
        lambda s: s.__setitem__("sys_errno", {"connect": 5}),
        lambda s: s.__setitem__("samples", 1.5),
        lambda s: s.__setitem__("worker", None),
        lambda s: s["hist"].__setitem__(
            "latency", blob_of(hist_of([(1_000_000, INT64_MAX)]))
        ),  # overflows the merged counts (the good snapshot already put 3 there)
    ],
)
def test_hostile_snapshot_refused_whole(mutate) -> None:
    m = Merger()
    m.add(good_snap(0, 0))
    before = json.dumps(m.report({"open_loop": True}), sort_keys=True)
    bad = good_snap(0, 1)
    mutate(bad)
    with pytest.raises(ProtocolError, match="snapshot refused"):
        m.add(bad)
    assert m.rejected == 1
    rep = m.report({"open_loop": True})
    assert rep["samples"]["snapshots_rejected"] == 1
    assert any("malformed snapshot" in w for w in rep["generator"]["warnings"])
    # Nothing of the refused snapshot was merged.
    for k in ("samples", "generator", "workers"):
        rep.pop(k)
    b = json.loads(before)
    for k in ("samples", "generator", "workers"):
        b.pop(k)
    assert json.dumps(rep, sort_keys=True) == json.dumps(b, sort_keys=True)
    m.add(good_snap(0, 1))  # and the merger goes on
    assert m.hists["latency"].get_total_count() == 8


@pytest.mark.slow
def test_coordinator_survives_a_zlib_bomb_snapshot() -> None:
    """A real coordinator (`barfast run --bind --expect-workers 1`) fed by a hand-driven worker
    socket: a snapshot carrying a zlib bomb is refused and reported; the run ends normally."""
    zmq = pytest.importorskip("zmq")
    from barfast.fanout import protocol
    from barfast.fanout.protocol import MsgKind

    ep = f"tcp://127.0.0.1:{free_port()}"
    coord = subprocess.Popen(
        barfast_cmd("run", "--bind", ep, "--expect-workers", "1", "--wait-timeout", "20s",
                    "-c", "1", "-d", "3s", "-q", "--json", f"http://127.0.0.1:{free_port()}/"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 1000
    try:
        s.connect(ep)
        deadline = time.monotonic() + 20
        wid = None
        started = False
        while not started and time.monotonic() < deadline:
            s.send(protocol.encode(MsgKind.HELLO, {"pid": 424242, "host": "t", "cpus": 1}))
            if s.poll(300):
                msg = protocol.decode(s.recv())
                if msg.kind == MsgKind.PLAN:
                    wid = msg.body["worker"]
                    s.send(protocol.encode(MsgKind.ACK, {"worker": wid}))
                elif msg.kind == MsgKind.START:
                    started = True
        assert started and wid is not None
        bad = good_snap(wid, 0)
        bad["hist"]["latency"] = bomb_blob()
        s.send(protocol.encode(MsgKind.SNAPSHOT, bad))
        fin = good_snap(wid, 1)
        fin["final"] = True
        s.send(protocol.encode(MsgKind.FINAL, fin))
        s.send(protocol.encode(MsgKind.BYE, {"reason": "done"}))
        out, err = coord.communicate(timeout=30)
    finally:
        s.close()
        ctx.term()
        if coord.poll() is None:
            coord.kill()
            coord.wait()
    assert coord.returncode == 0, err
    assert "ignored a snapshot" in err and "inflates past" in err
    rep = json.loads(out)
    assert rep["samples"]["snapshots_rejected"] == 1
    assert rep["requests"]["completed"] == 4
    assert rep["latency_ms"]["count"] == 4


# --- the worker's wire encoding ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(entries_st | huge_entries_st)
def test_wire_encoding_roundtrip(entries: list[tuple[int, int]]) -> None:
    """encode_histogram (binary, stored zlib) decodes to exactly the source counts, here and in hdrh
    (base64-wrapped); at level 6 + base64 the encoder is byte-identical to hdrh's encode()."""
    h = hist_of(entries)
    blob = encode_histogram(h)
    assert blob[:4] == b"\x1c\x84\x93\x14"
    sparse_equals_counts(DEC.decode(blob), counts_of(h))
    # hdrh's own decoder does not round-trip a bucket count of 2^62 or more (see
    # test_decode_huge_counts; hypothesis found [(0, 2), (0, 2^61 - 1) x 2] = 2^62),
    # so the comparison through hdrh holds below that; our decoder is exact above it too.
    if int(counts_of(h).max(initial=0)) < 2**62:
        assert to_hdrh(blob).encode() == h.encode()
    assert HistoblobEncoder(h).encode(h, level=6, b64=True) == h.encode()
    assert len(blob) <= DEC.max_blob


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(0, 5 * 10**9), min_size=0, max_size=300), st.integers(1, 4))
def test_worker_snapshots_merge_exactly(lat: list[int], nworkers: int) -> None:
    """Aggregator.take_interval(wire=True) (what runner.py sends) merged by Merger == the histogram
    of all samples (hdrh's encoding of one Aggregator fed everything)."""
    from barfast.engine.aggregate import RECORD_DTYPE, Aggregator

    rec = np.zeros(len(lat), dtype=RECORD_DTYPE)
    rec["intended_ns"] = 10**12
    rec["send_ns"] = 10**12 + np.asarray([v // 3 for v in lat], dtype=np.uint64)
    rec["done_ns"] = 10**12 + np.asarray(lat, dtype=np.uint64)
    rec["status"] = 200
    ref = Aggregator()
    ref.add(rec)
    expect = ref.take_interval()["hist"]
    m = Merger()
    for w in range(nworkers):
        agg = Aggregator()
        part = rec[w::nworkers].copy()
        part["seq"] = np.arange(len(part))
        agg.add(part)
        out = agg.take_interval(wire=True)
        m.add({"worker": w, "seq": 0, "final": True, "counters": {}, "hist": out["hist"]})
    for view in ("latency", "uncorrected", "send_lag"):
        assert m.hists[view].encode() == expect[view]
        assert m.hists[view].get_total_count() == len(lat)


def test_index_value_tables_equal_hdrh() -> None:
    h = new_histogram()
    low, high = index_values(h)
    for i in range(h.counts_len):
        v = h.get_value_from_index(i)
        assert int(low[i]) == v
        assert int(high[i]) == h.get_highest_equivalent_value(v)


def test_late_seconds_do_not_keep_counts_arrays() -> None:
    """A snapshot for a second already past the open window is reduced to its blob and percentiles
    at once (its counts still reach the merged histogram): old seconds cannot pile up counts."""
    h = hist_of([(1_000_000, 2), (3_000_000, 1)])
    m = Merger()
    m.add({"worker": 0, "seq": 0, "final": False, "interval": 100, "counters": {},
           "hist": {"latency": blob_of(h)}})  # fmt: skip
    for sec in range(50):
        m.add({"worker": 1, "seq": sec, "final": False, "interval": sec, "counters": {},
               "interval_completed": 3, "hist": {"latency": blob_of(h)}})  # fmt: skip
    open_parts = [s for s, p in m.seconds.items() if any(v.idx for v in p.views.values())]
    assert open_parts == [100]
    assert m.hists["latency"].get_total_count() == 51 * 3
    pt = m.series_point(7)
    assert pt is not None and pt["requests"] == 3
    v = h.get_percentile_to_value_dict([50.0, 99.0])
    assert (pt["p50_ms"], pt["p99_ms"]) == (round(v[50.0] / 1e6, 6), round(v[99.0] / 1e6, 6))


def test_a_late_snapshot_for_a_closed_second_reaches_its_blob_and_figures() -> None:
    """Second 0 closes when second 10 arrives; a worker's snapshot for second 0 that comes after
    that is added to the second's interval histogram and its figures are reduced again."""
    early = hist_of([(1_000_000, 5)])
    late = hist_of([(9_000_000, 5)])
    m = Merger()
    m.add({"worker": 0, "seq": 0, "final": False, "interval": 0, "counters": {},
           "interval_completed": 5, "hist": {"latency": blob_of(early)}})  # fmt: skip
    m.add({"worker": 0, "seq": 1, "final": False, "interval": 10, "counters": {},
           "hist": {"latency": blob_of(early)}})  # fmt: skip
    assert m.seconds[0].pcts is not None  # closed
    before = m.series_point(0)
    m.add({"worker": 1, "seq": 0, "final": False, "interval": 0, "counters": {},
           "interval_completed": 5, "hist": {"latency": blob_of(late)}})  # fmt: skip
    both = new_histogram()
    add_hist(both, early)
    add_hist(both, late)
    blob = m.interval_blobs()[0]["latency"]
    assert HdrHistogram.decode(blob).encode() == both.encode()
    pt = m.series_point(0)
    assert before is not None and pt is not None
    assert before["p99_ms"] == round(early.get_value_at_percentile(99) / 1e6, 6)
    assert pt["p99_ms"] == round(both.get_value_at_percentile(99) / 1e6, 6)
    assert pt["max_ms"] == round(both.get_max_value() / 1e6, 6)
    assert pt["requests"] == 10
