"""protocol.py: round trips, bounded decoding, version mismatch, garbage never escapes as anything
but ProtocolError."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from barfast.fanout import protocol
from barfast.fanout.protocol import PROTOCOL_VERSION, MsgKind, ProtocolVersionError, decode, encode
from barfast.status import ExitCode, ProtocolError


def _hist(values: list[int]) -> bytes:
    h = HdrHistogram(1, 3600 * 10**9, 3)
    for v in values:
        h.record_value(v)
    return h.encode()


def snapshot(worker: int = 0, final: bool = False) -> dict:
    return {
        "worker": worker,
        "seq": 3,
        "final": final,
        "interval": 3,
        "elapsed_ns": 4_000_000_000,
        "counters": {"started": 10, "completed": 9, "errors": 1, "in_flight": 0},
        "status": {200: 8, 503: 1},
        "errors": {"timeout": 1},
        "hist": {
            "latency": _hist([1000, 2000, 3_000_000]),
            "uncorrected": _hist([1000]),
            "send_lag": _hist([]),
        },
        "samples": 3,
        "cpu": {"user_s": 0.25, "sys_s": 0.5},
        "sys_errno": {"connect": {111: 2}},  # extra fields: plain data is allowed
    }


BODIES = {
    MsgKind.HELLO: {"pid": 123, "host": "h1", "cpus": 4, "name": "h1:123"},
    MsgKind.PLAN: {
        "worker": 1,
        "run_id": "abc",
        "plan": {"request": b"GET / HTTP/1.1\r\n\r\n", "stages": [[1, 2.0]], "rate": 0.5},
    },
    MsgKind.ACK: {"worker": 1},
    MsgKind.START: {"start_in_ns": 200_000_000},
    MsgKind.SNAPSHOT: snapshot(),
    MsgKind.FINAL: snapshot(final=True),
    MsgKind.HEARTBEAT: {"state": "running"},
    MsgKind.ERROR: {"reason": "engine failed", "code": 3, "worker": 0},
    MsgKind.STOP: {"reason": "done"},
    MsgKind.BYE: {},
}


@pytest.mark.parametrize("kind", list(MsgKind))
def test_round_trip_every_kind(kind: MsgKind) -> None:
    frame = encode(kind, BODIES[kind])
    msg = decode(frame)
    assert msg.kind is kind
    assert msg.body == BODIES[kind]


def test_histograms_survive_exactly() -> None:
    msg = decode(encode(MsgKind.SNAPSHOT, snapshot()))
    h = HdrHistogram.decode(msg.body["hist"]["latency"])
    assert h.get_total_count() == 3
    assert h.get_max_value() == HdrHistogram.decode(_hist([3_000_000])).get_max_value()


def test_version_mismatch_names_both_versions() -> None:
    frame = msgpack.packb([PROTOCOL_VERSION + 41, int(MsgKind.HELLO), BODIES[MsgKind.HELLO]])
    with pytest.raises(ProtocolVersionError) as ei:
        decode(frame)
    text = str(ei.value)
    assert f"protocol {PROTOCOL_VERSION + 41}" in text
    assert f"protocol {PROTOCOL_VERSION}" in text
    assert ei.value.exit_code == ExitCode.NO_LOAD
    # A future version with another envelope shape is still recognised by its first element.
    with pytest.raises(ProtocolVersionError):
        decode(msgpack.packb([PROTOCOL_VERSION + 1, 1, {}, "extra"]))


@pytest.mark.parametrize(
    "frame, fragment",
    [
        (b"", "malformed"),
        (b"\xc1", "malformed"),  # never-used msgpack byte
        (msgpack.packb([PROTOCOL_VERSION, 1]), "envelope"),
        (msgpack.packb({"v": 1}), "envelope"),
        (msgpack.packb([PROTOCOL_VERSION, 99, {}]), "unknown message kind 99"),
        (msgpack.packb([PROTOCOL_VERSION, "HELLO", {}]), "not an integer"),
        (msgpack.packb([PROTOCOL_VERSION, 1, []]), "not a map"),
        (msgpack.packb([PROTOCOL_VERSION, 1, {"pid": 1, "host": "h"}]), "lacks 'cpus'"),
        (
            msgpack.packb([PROTOCOL_VERSION, 1, {"pid": True, "host": "h", "cpus": 1}]),
            "HELLO.pid is a bool",
        ),
        (
            msgpack.packb([PROTOCOL_VERSION, 1, {"pid": 1.5, "host": "h", "cpus": 1}]),
            "HELLO.pid is a float",
        ),
        (msgpack.packb([PROTOCOL_VERSION, 4, {"start_in_ns": "soon"}]), "START.start_in_ns"),
        (msgpack.packb([PROTOCOL_VERSION, 3, {"worker": 1}]) + b"\x00", "trailing"),
        (msgpack.packb([PROTOCOL_VERSION, 3, {"worker": 1}])[:-1], "malformed"),
        (msgpack.packb([PROTOCOL_VERSION, 7, {1: 2}]), "non-string field name"),
    ],
)
def test_malformed_frames_are_refused(frame: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as ei:
        decode(frame)
    assert fragment in str(ei.value)


def test_snapshot_structure_is_checked() -> None:
    bad = snapshot()
    bad["counters"] = {"completed": "9"}
    with pytest.raises(ProtocolError, match="SNAPSHOT.counters"):
        decode(msgpack.packb([PROTOCOL_VERSION, int(MsgKind.SNAPSHOT), bad], use_bin_type=True))
    bad = snapshot()
    bad["hist"] = {"latency": "not bytes"}
    with pytest.raises(ProtocolError, match="SNAPSHOT.hist"):
        decode(msgpack.packb([PROTOCOL_VERSION, int(MsgKind.SNAPSHOT), bad], use_bin_type=True))
    bad = snapshot()
    del bad["final"]
    with pytest.raises(ProtocolError, match="lacks 'final'"):
        decode(msgpack.packb([PROTOCOL_VERSION, int(MsgKind.SNAPSHOT), bad], use_bin_type=True))


def test_no_ext_types_not_even_timestamps() -> None:
    for value in (msgpack.ExtType(5, b"xy"), msgpack.Timestamp(1, 2)):
        frame = msgpack.packb([PROTOCOL_VERSION, int(MsgKind.BYE), {"reason": value}])
        with pytest.raises(ProtocolError, match="max_ext_len"):
            decode(frame)


def test_size_limits() -> None:
    big = b"x" * (protocol.MAX_MESSAGE_BYTES + 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(big)
    long_str = msgpack.packb(
        [PROTOCOL_VERSION, int(MsgKind.BYE), {"reason": "y" * (protocol.MAX_STR_LEN + 1)}]
    )
    with pytest.raises(ProtocolError, match="max_str_len"):
        decode(long_str)
    long_arr = msgpack.packb(
        [PROTOCOL_VERSION, int(MsgKind.BYE), {"x": [0] * (protocol.MAX_ARRAY_LEN + 1)}]
    )
    with pytest.raises(ProtocolError, match="max_array_len"):
        decode(long_arr)
    wide_map = msgpack.packb(
        [1, int(MsgKind.BYE), {"x": {str(i): 0 for i in range(protocol.MAX_MAP_LEN + 1)}}]
    )
    with pytest.raises(ProtocolError, match="max_map_len"):
        decode(wide_map)
    deep: object = 1
    for _ in range(protocol.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ProtocolError, match="nests deeper"):
        decode(msgpack.packb([PROTOCOL_VERSION, int(MsgKind.BYE), {"x": deep}]))
    # A header claiming a huge binary is refused before anything is allocated for it.
    claim = b"\x93\x01\x0a\x81\xa1x\xc6" + (protocol.MAX_BIN_LEN + 1).to_bytes(4, "big")
    with pytest.raises(ProtocolError):
        decode(claim)


def test_encode_refuses_what_decode_would() -> None:
    with pytest.raises(ProtocolError, match="lacks"):
        encode(MsgKind.HELLO, {"pid": 1})
    with pytest.raises(ProtocolError):
        encode(MsgKind.BYE, {"x": object()})
    with pytest.raises(ProtocolError, match="limit"):
        encode(MsgKind.BYE, {"x": b"z" * protocol.MAX_MESSAGE_BYTES})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_only_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20), _plain)
def test_arbitrary_well_formed_envelopes_decode_or_refuse(kind: int, body: object) -> None:
    frame = msgpack.packb([PROTOCOL_VERSION, kind, body], use_bin_type=True)
    try:
        msg = decode(frame)
    except ProtocolError:
        return
    assert isinstance(msg.body, dict)
    assert msg.kind == kind
