"""The coordinator <-> worker wire protocol: typed message kinds, one version number, bounded decoding.

Every ZeroMQ message is ONE frame holding a msgpack array `[version, kind, body]` (ROUTER identity
frames are ZeroMQ's business, not ours). `version` is always the first element in every version of
this protocol, so a peer speaking another version is recognised and refused with a message naming
both versions instead of being misparsed. `kind` is a `MsgKind` (an IntEnum, never a string); `body`
is a map whose shape is checked per kind before anyone acts on it.

Decoding is bounded: the frame size is checked first, msgpack's Unpacker limits cap every string,
binary, array and map length, ext types (including msgpack's Timestamp) are refused outright, and
the result is walked against the schema with a depth limit. Nothing but None/bool/int/float/str/
bytes/list/dict can come out, so a hostile peer cannot make us build arbitrary objects. Any failure is
a `ProtocolError` (status.py), one line, exit code 3.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

import msgpack

from barfast.status import ProtocolError

# Bump on any incompatible change to the envelope or to a body's required fields.
# 2: snapshot histograms are binary V2 histoblobs with stored zlib blocks (histoblob.py), which a
#    version-1 coordinator (hdrh decode of base64) cannot read.
# 3: snapshots carry per-endpoint interval histograms and counts (`endpoint_interval`, snapshot.py);
#    a version-2 worker sends none, which would leave a merged per-endpoint result short of its
#    samples while the totals have them.
PROTOCOL_VERSION = 3

# A snapshot carries five encoded HdrHistograms (a few KiB each) and some counters, and in a mix up
# to three per endpoint (aggregate.ENDPOINT_HISTS_MAX of them: ~128 x 3 x 6 KiB busy); a
# plan carries the request bytes, which include a --body-file body. 16 MiB bounds both generously
# while keeping a hostile or broken peer from making us allocate without limit.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_BIN_LEN = MAX_MESSAGE_BYTES
MAX_STR_LEN = 1024 * 1024
MAX_ARRAY_LEN = 100_000
MAX_MAP_LEN = 100_000
MAX_DEPTH = 8  # deepest legitimate structure: envelope > body > plan > stages > stage


class MsgKind(IntEnum):
    """Message kinds. W->C: HELLO, ACK, SNAPSHOT, FINAL, ERROR, BYE; C->W: PLAN, START, STOP;
    both ways: HEARTBEAT, ERROR."""

    HELLO = 1  # worker introduces itself: pid, host, cpus (sent until a PLAN arrives)
    PLAN = 2  # coordinator assigns the worker its share (WorkerPlan.to_dict())
    ACK = 3  # worker accepted the plan and is ready to start
    START = 4  # begin in start_in_ns from receipt (monotonic clocks differ across hosts)
    SNAPSHOT = 5  # about once a second: cumulative counters + interval histograms
    FINAL = 6  # the last snapshot; the worker's load has stopped
    HEARTBEAT = 7  # liveness, both ways, about every HEARTBEAT_INTERVAL_S
    ERROR = 8  # something failed; `reason` says what
    STOP = 9  # coordinator: stop the load now and send FINAL
    BYE = 10  # worker is leaving (after FINAL, or when it gives up)


class Message(NamedTuple):
    kind: MsgKind
    body: dict[str, Any]


# --- schemas ---------------------------------------------------------------------------------------
# A schema maps a field to (type spec, required). Type specs: a Python type or tuple of types; the
# strings "map[str,int]" etc. for homogeneous maps; "data" for any plain data (bounded walk).
_INT = int
_NUM = (int, float)
_Spec = Any

_SCHEMAS: dict[MsgKind, dict[str, tuple[_Spec, bool]]] = {
    MsgKind.HELLO: {
        "pid": (_INT, True),
        "host": (str, True),
        "cpus": (_INT, True),
        "name": (str, False),
        "pod": (str, False),  # Kubernetes: the pod's name (POD_NAME from the downward API)
    },
    MsgKind.PLAN: {
        "worker": (_INT, True),
        "run_id": (str, True),
        "plan": ("data_map", True),
        # the report's `config`, so that a worker's own result file can rebuild the report
        "report_config": ("data_map", False),
        "report_meta": ("data_map", False),  # and its `meta` (the coordinator's host, start)
    },
    MsgKind.ACK: {"worker": (_INT, True)},
    MsgKind.START: {"start_in_ns": (_INT, True)},
    MsgKind.SNAPSHOT: {},  # filled below (same as FINAL)
    MsgKind.FINAL: {},
    MsgKind.HEARTBEAT: {"state": (str, False)},
    MsgKind.ERROR: {"reason": (str, True), "code": (_INT, False), "worker": (_INT, False)},
    MsgKind.STOP: {"reason": (str, False)},
    MsgKind.BYE: {"reason": (str, False)},
}
_SNAPSHOT_SCHEMA: dict[str, tuple[_Spec, bool]] = {
    "worker": (_INT, True),
    "seq": (_INT, True),
    "final": (bool, True),
    "interval": (_INT, False),
    "elapsed_ns": (_INT, False),
    "counters": ("map[str,int]", True),
    "status": ("map[key,int]", False),
    "errors": ("map[str,int]", False),
    "hist": ("map[str,bytes]", True),
    "samples": (_INT, False),
    "cpu": ("map[str,num]", False),
}
_SCHEMAS[MsgKind.SNAPSHOT] = _SNAPSHOT_SCHEMA
_SCHEMAS[MsgKind.FINAL] = _SNAPSHOT_SCHEMA

_MAP_VALUE = {"int": int, "num": (int, float), "bytes": bytes}
_MAP_KEY = {"str": str, "key": (int, str)}


def _is(value: Any, typ: Any) -> bool:
    # bool is an int subclass in Python; an int field must not silently accept True/False.
    int_like = typ is int or (isinstance(typ, tuple) and int in typ and bool not in typ)
    if int_like and isinstance(value, bool):
        return False
    return isinstance(value, typ)


def _check_data(value: Any, depth: int, where: str) -> None:
    """Plain data only, bounded depth (msgpack without ext types can only produce these anyway)."""
    if depth > MAX_DEPTH:
        raise ProtocolError(f"malformed message: {where} nests deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return
    if isinstance(value, list):
        for v in value:
            _check_data(v, depth + 1, where)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ProtocolError(f"malformed message: {where} has a {type(k).__name__} key")
            _check_data(v, depth + 1, where)
        return
    raise ProtocolError(f"malformed message: {where} holds a {type(value).__name__}")


def _check_field(kind: MsgKind, name: str, value: Any, spec: _Spec) -> None:
    where = f"{kind.name}.{name}"
    if spec == "data_map":
        if not isinstance(value, dict):
            raise ProtocolError(f"malformed message: {where} must be a map")
        _check_data(value, 2, where)
        return
    if isinstance(spec, str) and spec.startswith("map["):
        key_name, val_name = spec[4:-1].split(",")
        kt, vt = _MAP_KEY[key_name], _MAP_VALUE[val_name]
        if not isinstance(value, dict):
            raise ProtocolError(f"malformed message: {where} must be a map")
        for k, v in value.items():
            if not _is(k, kt) or not _is(v, vt):
                raise ProtocolError(
                    f"malformed message: {where} entry {k!r}: {type(v).__name__} is not {val_name}"
                )
        return
    if not _is(value, spec):
        raise ProtocolError(
            f"malformed message: {where} is a {type(value).__name__}, expected {_spec_name(spec)}"
        )


def _spec_name(spec: _Spec) -> str:
    if isinstance(spec, tuple):
        return " or ".join(t.__name__ for t in spec)
    return str(getattr(spec, "__name__", spec))


def validate(kind: MsgKind, body: Any) -> dict[str, Any]:
    """Check `body` against the schema of `kind`; unknown fields must still be plain data."""
    if not isinstance(body, dict):
        raise ProtocolError(
            f"malformed message: {kind.name} body is a {type(body).__name__}, not a map"
        )
    schema = _SCHEMAS[kind]
    for name, (spec, required) in schema.items():
        if name not in body:
            if required:
                raise ProtocolError(f"malformed message: {kind.name} lacks {name!r}")
            continue
        _check_field(kind, name, body[name], spec)
    for name, value in body.items():
        if not isinstance(name, str):
            raise ProtocolError(f"malformed message: {kind.name} has a non-string field name")
        if name not in schema:
            _check_data(value, 2, f"{kind.name}.{name}")
    return body


class ProtocolVersionError(ProtocolError):
    """The peer speaks another protocol version: nothing else it says can be trusted."""


def version_mismatch(theirs: object) -> ProtocolVersionError:
    return ProtocolVersionError(
        f"protocol version mismatch: the peer speaks barfast protocol {theirs!r}, "
        f"this barfast speaks protocol {PROTOCOL_VERSION} (run the same barfast version on every host)"
    )


def encode(kind: MsgKind, body: dict[str, Any] | None = None) -> bytes:
    """One frame: msgpack [PROTOCOL_VERSION, kind, body]. The body is validated like a received one."""
    b = validate(MsgKind(kind), {} if body is None else body)
    try:
        data: bytes = msgpack.packb([PROTOCOL_VERSION, int(kind), b], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode {MsgKind(kind).name}: {exc}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            f"{MsgKind(kind).name} message is {len(data)} bytes, more than the {MAX_MESSAGE_BYTES} limit"
        )
    return data


def peek_version(frame: bytes) -> object:
    """The version element of a frame, or None when the frame is not even an envelope."""
    try:
        obj = _unpack(frame)
    except ProtocolError:
        return None
    if isinstance(obj, list) and obj:
        return obj[0]
    return None


def _unpack(frame: bytes) -> Any:
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(frame)} bytes exceeds the {MAX_MESSAGE_BYTES} limit")
    unpacker = msgpack.Unpacker(
        None,
        raw=False,
        use_list=True,
        strict_map_key=False,  # status maps have int keys; unhashable keys still fail
        max_buffer_size=MAX_MESSAGE_BYTES,
        max_bin_len=MAX_BIN_LEN,
        max_str_len=MAX_STR_LEN,
        max_array_len=MAX_ARRAY_LEN,
        max_map_len=MAX_MAP_LEN,
        max_ext_len=0,  # no ext types at all, not even msgpack's Timestamp
    )
    try:
        unpacker.feed(frame)
        obj = unpacker.unpack()
        if unpacker.tell() != len(frame):
            raise ValueError("trailing bytes after the message")
        return obj
    except (
        Exception
    ) as exc:  # msgpack raises ValueError, TypeError, ExtraData, FormatError, StackError
        detail = str(exc) or type(exc).__name__
        raise ProtocolError(f"malformed message: {detail}") from None


def decode(frame: bytes) -> Message:
    """Bytes -> Message, or ProtocolError (too big, not msgpack, wrong version, bad structure)."""
    obj = _unpack(frame)
    if not isinstance(obj, list) or len(obj) != 3:
        if isinstance(obj, list) and obj and _is(obj[0], int) and obj[0] != PROTOCOL_VERSION:
            raise version_mismatch(obj[0])
        raise ProtocolError("malformed message: expected an envelope [version, kind, body]")
    version, kind, body = obj
    if version != PROTOCOL_VERSION or not _is(version, int):
        raise version_mismatch(version)
    if not _is(kind, int):
        raise ProtocolError(f"malformed message: kind {kind!r} is not an integer")
    try:
        mk = MsgKind(kind)
    except ValueError:
        raise ProtocolError(f"malformed message: unknown message kind {kind}") from None
    return Message(mk, validate(mk, body))
