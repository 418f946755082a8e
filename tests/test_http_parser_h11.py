"""Differential and fuzz tests of the native HTTP/1.1 response parser (http.pxi).

- Differential: hypothesis generates valid responses (statuses, interim 1xx, header sets, bodies,
  Content-Length / chunked / close-delimited framing, keep-alive or not, pipelined sequences, HEAD);
  barfast's parser and h11 must agree on status, interim count, body length and keep-alive.
- Fuzz: random and mutated bytes never crash the parser, it never consumes more than it was given
  (checked inside the hook), and its verdict is the same however the bytes were split into reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barfast.engine._core import HTTP_ERRORS, parse_responses

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# field-vchar = VCHAR / obs-text (RFC 9110 §5.5); h11 accepts the same set
VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
FRAMING_NAMES = {b"content-length", b"transfer-encoding", b"connection"}

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEEP = settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Resp:
    wire: bytes
    header_bytes: int
    status: int
    interim: int
    body_len: int
    close_delimited: bool
    version: bytes
    conn_tokens: list[bytes]


tokens = st.text(TCHAR, min_size=1, max_size=12).map(str.encode)
field_values = st.lists(
    st.binary(min_size=1, max_size=12).map(lambda b: bytes(VCHAR[x % len(VCHAR)] for x in b)),
    min_size=0,
    max_size=3,
).map(b" ".join)
ows = st.sampled_from([b"", b" ", b"\t", b"  "])
eol = st.sampled_from([b"\r\n"] * 6 + [b"\n"])  # bare LF is accepted in the header section (§2.2)


def case_mix(name: bytes, draw) -> bytes:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return bytes(
        c ^ 0x20 if f and chr(c).isalpha() else c for c, f in zip(name, flips, strict=True)
    )


@st.composite
def header_block(draw, status: int, version: bytes, extra: list[tuple[bytes, bytes]]) -> bytes:
    reason = draw(st.sampled_from([b"", b" ", b" OK", b" Some Reason", b" \t\xe9t\xe9 x"]))
    nl = draw(eol)
    lines = [b"HTTP/" + version + b" " + str(status).encode() + reason]
    fields = draw(st.lists(st.tuples(tokens, field_values), max_size=6))
    fields = [(n, v) for n, v in fields if n.lower() not in FRAMING_NAMES] + extra
    order = draw(st.permutations(range(len(fields)))) if fields else []
    for i in order:
        name, value = fields[i]
        lines.append(name + b":" + draw(ows) + value + draw(ows))
    return nl.join(lines) + nl + nl


@st.composite
def response(draw, head: bool, last: bool) -> Resp:
    # only the last response of a pipelined sequence may end the connection (h11 stops there)
    version = draw(st.sampled_from([b"1.1"] * 4 + [b"1.0"])) if last else b"1.1"
    status = draw(
        st.sampled_from([200, 201, 204, 206, 301, 304, 400, 404, 418, 500, 503, 599])
        | st.integers(200, 599)
    )
    wire = b""
    interim = 0
    if version == b"1.1":
        for code in draw(st.lists(st.sampled_from([100, 102, 103, 150, 199]), max_size=2)):
            wire += draw(header_block(code, version, []))
            interim += 1
    header_bytes = len(wire)
    no_body = head or status in (204, 304)
    modes = ["length"] + (["chunked"] if version == b"1.1" else []) + (["close"] if last else [])
    mode = draw(st.sampled_from(modes))
    body = b"" if no_body else draw(st.binary(max_size=300))
    extra: list[tuple[bytes, bytes]] = []
    conn_choices = [[], [b"keep-alive"], [b"Keep-Alive"], [b"foo"]]
    if last:
        conn_choices += [[b"close"], [b"Upgrade", b"close"], [b"CLOSE", b"keep-alive"]]
    conn_tokens = draw(st.sampled_from(conn_choices))
    if conn_tokens:
        extra.append((case_mix(b"Connection", draw), b", ".join(conn_tokens)))
    payload = body  # close-delimited: the body runs to the end
    if mode == "length":
        length = len(body) if not no_body else draw(st.integers(0, 10**6))
        extra.append((case_mix(b"Content-Length", draw), str(length).encode()))
        payload = body
    elif mode == "chunked":
        payload = b""
        extra.append((case_mix(b"Transfer-Encoding", draw), b"chunked"))
        if not no_body:
            cuts = sorted(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4)))
            pieces = [
                body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)], strict=True) if body[a:b]
            ]
            for piece in pieces:
                size = format(len(piece), draw(st.sampled_from(["x", "X", "04x"]))).encode()
                ext = draw(st.sampled_from([b"", b";a", b";a=b", b';n="v"']))  # h11 rejects BWS
                payload += size + ext + b"\r\n" + piece + b"\r\n"
            trailers = draw(st.lists(st.tuples(tokens, field_values), max_size=2))
            payload += b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"
    block = draw(header_block(status, version, extra))
    header_bytes += len(block)
    wire += block + payload
    close_delimited = mode == "close" and not no_body
    return Resp(
        wire,
        header_bytes,
        status,
        interim,
        len(body),
        close_delimited,
        version,
        [t.lower() for t in conn_tokens],
    )


@st.composite
def conversation(draw):
    head = draw(st.booleans())
    n = draw(st.integers(1, 3))
    resps = [draw(response(head, i == n - 1)) for i in range(n)]
    return head, resps


def h11_parse(wire: bytes, head: bool, count: int) -> list[dict]:
    """The reference: h11 as a client that sent `count` pipelined GET/HEAD requests."""
    conn = h11.Connection(h11.CLIENT)
    method = b"HEAD" if head else b"GET"
    out: list[dict] = []
    conn.receive_data(wire)
    eof_sent = False
    cur: dict = {"interim": 0, "body_bytes": 0}
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
    conn.send(h11.EndOfMessage())
    while len(out) < count:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            if eof_sent:
                break
            conn.receive_data(b"")
            eof_sent = True
        elif isinstance(ev, h11.InformationalResponse):
            cur["interim"] += 1
        elif isinstance(ev, h11.Response):
            cur["status"] = ev.status_code
        elif isinstance(ev, h11.Data):
            cur["body_bytes"] += len(ev.data)
            cur["body"] = cur.get("body", b"") + ev.data
        elif isinstance(ev, h11.EndOfMessage):
            # a body that needed the close to end cannot leave a reusable connection
            cur["keep_alive"] = conn.their_state is h11.DONE and not eof_sent
            out.append(cur)
            cur = {"interim": 0, "body_bytes": 0}
            if len(out) < count:
                conn.start_next_cycle()
                conn.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
                conn.send(h11.EndOfMessage())
        elif isinstance(ev, h11.ConnectionClosed):
            break
    return out


@FAST
@given(conversation(), st.data())
def test_agrees_with_h11(conv, data):
    head, resps = conv
    wire = b"".join(r.wire for r in resps)
    ours = parse_responses(wire, head=head)
    ref = h11_parse(wire, head, len(resps))
    assert len(ours) == len(resps) == len(ref), (ours, ref)
    for mine, theirs, r in zip(ours, ref, resps, strict=True):
        assert "error" not in mine
        assert mine["status"] == theirs["status"] == r.status
        assert mine["interim"] == theirs["interim"] == r.interim
        assert mine["body_bytes"] == theirs["body_bytes"] == r.body_len
        assert mine["header_bytes"] == r.header_bytes
        assert mine["wire_bytes"] == len(r.wire)
        assert mine["eof_complete"] == r.close_delimited
        expected_ka = theirs["keep_alive"]
        # h11 never keeps an HTTP/1.0 connection; we honour "Connection: keep-alive" (RFC 9112 §9.3)
        if (
            r.version == b"1.0"
            and b"keep-alive" in r.conn_tokens
            and b"close" not in r.conn_tokens
            and not r.close_delimited
        ):
            expected_ka = True
        assert mine["keep_alive"] == expected_ka
    # the same verdict whatever the reads were
    splits = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    assert parse_responses(wire, splits, head=head) == ours
    assert parse_responses(wire, splits, head=head, memo=True) == ours


@FAST
@given(conversation(), st.data())
def test_the_check_capture_is_h11s_body_prefix(conv, data):
    """What response checks read (keep=N): each final header block as sent and the first N bytes
    of the payload as h11 decodes it (de-chunked), truncation flagged, whatever the reads."""
    head, resps = conv
    wire = b"".join(r.wire for r in resps)
    keep = data.draw(st.integers(0, 300))
    splits = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    ours = parse_responses(wire, splits, head=head, memo=data.draw(st.booleans()), keep=keep)
    ref = h11_parse(wire, head, len(resps))
    assert len(ours) == len(ref)
    for mine, theirs, r in zip(ours, ref, resps, strict=True):
        body = theirs.get("body", b"")
        assert mine["body"] == body[:keep]
        assert mine["body_truncated"] == (len(body) > keep)
        # the final block is the last header_bytes-long stretch before the body: its status line
        assert mine["head"].startswith(b"HTTP/1.") and mine["head"].endswith(b"\n")
        assert mine["head"][9:12] == b"%d" % r.status
        assert len(mine["head"]) <= r.header_bytes
    # capture changes no verdict
    plain = parse_responses(wire, splits, head=head)
    assert [
        {k: v for k, v in m.items() if k not in ("head", "body", "body_truncated")} for m in ours
    ] == plain


@FAST
@given(conversation(), st.data())
def test_head_memo_changes_no_result(conv, data):
    """The engine's head memo (a block equal byte for byte to the last one parsed in full takes
    its outcome) gives what parsing gives: each response three times in a row, so the memo hits
    on the repeats, alternating between different heads, and split anywhere."""
    head, resps = conv
    wire = b"".join(r.wire * (1 if r.close_delimited else 3) for r in resps)
    plain = parse_responses(wire, head=head)
    assert parse_responses(wire, head=head, memo=True) == plain
    splits = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    assert parse_responses(wire, splits, head=head, memo=True) == plain


def mutate(draw, wire: bytes) -> bytes:
    b = bytearray(wire)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == "flip" and b:
            b[i] = draw(
                st.sampled_from([0, 9, 10, 13, 32, 44, 48, 58, 59, 70, 127, 255])
                | st.integers(0, 255)
            )
        elif op == "insert":
            b[i:i] = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b":", b"0", b"\x00", b"f"]))
        elif op == "delete" and b:
            del b[i]
        elif op == "dup":
            j = draw(st.integers(i, len(b)))
            b[i:i] = b[i:j]
    return bytes(b)


@st.composite
def hostile_bytes(draw):
    kind = draw(st.sampled_from(["mutated", "mutated", "random", "prefixed", "repeated"]))
    if kind == "random":
        return draw(st.binary(max_size=400)), draw(st.booleans())
    head, resps = draw(conversation())
    wire = b"".join(r.wire for r in resps)
    if kind == "prefixed":
        return b"HTTP/1.1 200 OK\r\n" + draw(st.binary(max_size=200)), head
    if kind == "repeated":
        # a good response twice, then a damaged copy of it: the head memo holds the good head
        # when the damaged one comes, and must not be taken for it
        return resps[0].wire * 2 + mutate(draw, resps[0].wire), head
    return mutate(draw, wire), head


def check_fuzz(wire: bytes, head: bool, splits: list[int]) -> None:
    whole = parse_responses(wire, head=head)  # raises AssertionError if feed over-consumes
    assert isinstance(whole, list)
    for i, r in enumerate(whole):
        if "error" in r:
            assert i == len(whole) - 1, "nothing is reported after an error"
            assert r["error"] in HTTP_ERRORS and r["error"] != "none"
        else:
            assert 100 <= r["status"] <= 999
            assert r["wire_bytes"] >= r["header_bytes"] + r["body_bytes"]
    done = [r for r in whole if "error" not in r]
    assert sum(r["wire_bytes"] for r in done) <= len(wire)
    if not whole or "error" not in whole[-1]:
        # everything was consumed and ended cleanly: responses tile the input
        assert sum(r["wire_bytes"] for r in done) == len(wire)
    assert parse_responses(wire, splits, head=head) == whole
    assert parse_responses(wire, list(range(1, len(wire))), head=head) == whole
    assert parse_responses(wire, head=head, memo=True) == whole
    assert parse_responses(wire, splits, head=head, memo=True) == whole


@FAST
@given(hostile_bytes(), st.data())
def test_fuzz_never_crashes_and_is_split_invariant(case, data):
    wire, head = case
    check_fuzz(wire, head, data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))


@pytest.mark.load
@DEEP
@given(hostile_bytes(), st.data())
def test_fuzz_deep(case, data):
    wire, head = case
    check_fuzz(wire, head, data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))


@pytest.mark.load
@DEEP
@given(conversation(), st.data())
def test_agrees_with_h11_deep(conv, data):
    test_agrees_with_h11.hypothesis.inner_test(conv, data)
