"""The native HTTP/1.1 response parser (http.pxi) through its test hook barfast.engine._core.parse_responses.

Every canned response is also fed split at every byte boundary (and at a few 3-way splits): the engine
receives bytes in arbitrary pieces, so the verdict must never depend on where a read ended.
"""

from __future__ import annotations

import itertools

import pytest

from barfast.engine._core import HTTP_ERRORS, HTTP_LIMITS, parse_responses

MAX_HEADER = HTTP_LIMITS["max_header_bytes"]


def ok(status: int, body: int, *, ka: bool = True, interim: int = 0, eof: bool = False) -> dict:
    return {
        "status": status,
        "keep_alive": ka,
        "body_bytes": body,
        "interim": interim,
        "eof_complete": eof,
    }


def strip(results: list[dict]) -> list[dict]:
    """Drop the byte counts for comparison with ok(); they are checked separately."""
    return [
        {k: v for k, v in r.items() if k not in ("header_bytes", "wire_bytes")} for r in results
    ]


def every_split(data: bytes, head: bool = False) -> list[list[dict]]:
    """Results for: one piece, every 2-way split, a few 3-way splits, and one byte at a time."""
    n = len(data)
    out = [parse_responses(data, head=head)]
    out += [parse_responses(data, [i], head=head) for i in range(1, n)]
    thirds = sorted({1, n // 3, n // 2, 2 * n // 3, n - 1} - {0, n})
    out += [parse_responses(data, list(c), head=head) for c in itertools.combinations(thirds, 2)]
    out.append(parse_responses(data, list(range(1, n)), head=head))
    return out


def assert_split_invariant(data: bytes, head: bool = False) -> list[dict]:
    results = every_split(data, head)
    for i, r in enumerate(results[1:], 1):
        assert r == results[0], f"split variant {i} differs"
    return results[0]


CL = b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5;name=value;q="quoted; \\" str"\r\nhello\r\n'
    b"1A \t;x\r\n" + b"a" * 26 + b"\r\n"
    b"000\r\nX-Trailer: 1\r\nOther: two\r\n\r\n"
)
CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nServer: t\r\n\r\nbody until the end"
INTERIM = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
)

CANNED: list[tuple[str, bytes, bool, list[dict]]] = [
    ("content-length", CL, False, [ok(200, 5)]),
    ("chunked-ext-trailers", CHUNKED, False, [ok(200, 31)]),
    (
        "chunked-no-trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        False,
        [ok(200, 3)],
    ),
    (
        "pipelined",
        CL + CHUNKED + b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" + CL,
        False,
        [ok(200, 5), ok(200, 31), ok(404, 0), ok(200, 5)],
    ),
    ("close-delimited", CLOSE_DELIMITED, False, [ok(200, 18, ka=False, eof=True)]),
    ("close-delimited-empty", b"HTTP/1.1 200 OK\r\n\r\n", False, [ok(200, 0, ka=False, eof=True)]),
    (
        "te-not-chunked-is-close-delimited",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz",
        False,
        [ok(200, 3, ka=False, eof=True)],
    ),
    ("interim-100-103", INTERIM, False, [ok(200, 2, interim=2)]),
    ("interim-then-pipelined", INTERIM + CL, False, [ok(200, 2, interim=2), ok(200, 5)]),
    (
        "head-with-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n" + CL[:-5],
        True,
        [ok(200, 0), ok(200, 0)],
    ),
    (
        "head-without-length-is-not-close-delimited",
        b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n" + CL[:-5],
        True,
        [ok(200, 0), ok(200, 0)],
    ),
    (
        "interim-length-ignored",
        b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n" + CL,
        False,
        [ok(200, 5, interim=1)],
    ),
    (
        "gzip-then-chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: , chunked\r\n\r\n"
        b"2\r\nab\r\n0\r\n\r\n",
        False,
        [ok(200, 2)],
    ),
    (
        "head-with-chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        True,
        [ok(200, 0)],
    ),
    (
        "204-ignores-length",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n" + CL,
        False,
        [ok(204, 0), ok(200, 5)],
    ),
    (
        "304",
        b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n' + CL,
        False,
        [ok(304, 0), ok(200, 5)],
    ),
    (
        "http10-close",
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        False,
        [ok(200, 3, ka=False)],
    ),
    (
        "http10-keep-alive",
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\nabc",
        False,
        [ok(200, 3)],
    ),
    (
        "http10-close-delimited",
        b"HTTP/1.0 200 OK\r\n\r\nabc",
        False,
        [ok(200, 3, ka=False, eof=True)],
    ),
    (
        "connection-close",
        b"HTTP/1.1 200 OK\r\nConnection: upgrade, CLOSE\r\nContent-Length: 1\r\n\r\nx",
        False,
        [ok(200, 1, ka=False)],
    ),
    (
        "connection-close-second-field",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nconnection: close\r\nContent-Length: 0\r\n\r\n",
        False,
        [ok(200, 0, ka=False)],
    ),
    (
        "connection-close-not-substring",
        b"HTTP/1.1 200 OK\r\nConnection: closed, x-close\r\nContent-Length: 0\r\n\r\n",
        False,
        [ok(200, 0)],
    ),
    ("no-reason", b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", False, [ok(200, 0)]),
    ("no-reason-no-space", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", False, [ok(200, 0)]),
    (
        "reason-with-spaces-tabs-obs-text",
        b"HTTP/1.1 599  Odd\treason \xe9\r\nContent-Length: 0\r\n\r\n",
        False,
        [ok(599, 0)],
    ),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\nX: y\n\nhi", False, [ok(200, 2)]),
    (
        "bare-lf-trailers",
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\r\nhi\r\n0\r\nA: b\n\n",
        False,
        [ok(200, 2)],
    ),
    (
        "duplicate-identical-lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 003\r\nContent-Length: 3, 3\r\n\r\nabc",
        False,
        [ok(200, 3)],
    ),
    (
        "ows-around-values",
        b"HTTP/1.1 200 OK\r\nContent-Length: \t 4 \t\r\nX:\r\nY:  \r\n\r\nabcd",
        False,
        [ok(200, 4)],
    ),
    (
        "large-body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 100000,
        False,
        [ok(200, 100000)],
    ),
    (
        "header-block-at-limit",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEADER - 43) + b"\r\nContent-Length: 0\r\n\r\n",
        False,
        [ok(200, 0)],
    ),
]


@pytest.mark.parametrize(("name", "data", "head", "expected"), CANNED, ids=[c[0] for c in CANNED])
def test_canned_response_split_everywhere(name: str, data: bytes, head: bool, expected: list[dict]):
    if name == "large-body":  # every split of 100 kB is slow; a sample of cut points suffices
        results = [parse_responses(data, [i]) for i in (1, 17, 40, 41, 42, 43, 5000, len(data) - 1)]
        results.append(parse_responses(data, list(range(1, 200)) + [70000]))
        assert all(r == results[0] for r in results)
        result = results[0]
    else:
        result = assert_split_invariant(data, head)
    assert strip(result) == expected
    # responses tile the input exactly: every byte belongs to exactly one response
    assert sum(r["wire_bytes"] for r in result) == len(data)


def test_byte_counts():
    (r,) = parse_responses(CL)
    assert r["header_bytes"] == CL.index(b"\r\n\r\n") + 4
    assert r["wire_bytes"] == len(CL)
    (r,) = parse_responses(INTERIM)
    assert r["header_bytes"] == len(INTERIM) - 2
    (r,) = parse_responses(CHUNKED)
    assert r["header_bytes"] == CHUNKED.index(b"\r\n\r\n") + 4
    assert r["wire_bytes"] == len(CHUNKED)


def test_header_block_limit_is_exact():
    def block(total: int) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: "
        return head + b"a" * (total - len(head) - 4) + b"\r\n\r\n"

    assert len(block(MAX_HEADER)) == MAX_HEADER
    assert strip(parse_responses(block(MAX_HEADER))) == [ok(200, 0)]
    assert parse_responses(block(MAX_HEADER + 1)) == [{"error": "too_large"}]
    # the same verdict whatever the reads were
    assert parse_responses(block(MAX_HEADER + 1), [100, MAX_HEADER]) == [{"error": "too_large"}]
    assert parse_responses(block(MAX_HEADER + 1), [MAX_HEADER - 1]) == [{"error": "too_large"}]


def test_incomplete_head_is_not_rescanned_from_the_start():
    """Dripping one byte at a time works and the result equals the one-piece parse."""
    data = b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"v" * 4000 + b"\r\nContent-Length: 1\r\n\r\nz"
    assert parse_responses(data, list(range(1, len(data)))) == parse_responses(data)


def test_cut_short_is_closed():
    for data in (CL[:-1], CL[:10], CL[: CL.index(b"\r\n\r\n") + 2], CHUNKED[:-1], INTERIM[:30]):
        for cut in range(1, len(data)):
            assert parse_responses(data, [cut])[-1] == {"error": "closed"}
    assert parse_responses(b"") == []
    assert strip(parse_responses(CL + CL[:5])) == [ok(200, 5), {"error": "closed"}]


MALFORMED: list[tuple[str, bytes, str]] = [
    # status line (RFC 9112 §4, §2.3)
    ("empty-first-line", b"\r\nHTTP/1.1 200 OK\r\n\r\n", "bad_status_line"),
    ("lowercase-http", b"http/1.1 200 OK\r\n\r\n", "bad_status_line"),
    ("no-minor", b"HTTP/1 200 OK\r\n\r\n", "bad_status_line"),
    ("two-digit-minor", b"HTTP/1.10 200 OK\r\n\r\n", "bad_status_line"),
    ("two-spaces", b"HTTP/1.1  200 OK\r\n\r\n", "bad_status_line"),
    ("tab-separator", b"HTTP/1.1\t200 OK\r\n\r\n", "bad_status_line"),
    ("two-digit-status", b"HTTP/1.1 20 OK\r\n\r\n", "bad_status_line"),
    ("four-digit-status", b"HTTP/1.1 2000 OK\r\n\r\n", "bad_status_line"),
    ("status-below-100", b"HTTP/1.1 099 Low\r\n\r\n", "bad_status_line"),
    ("letter-status", b"HTTP/1.1 2x0 OK\r\n\r\n", "bad_status_line"),
    ("no-status", b"HTTP/1.1\r\n\r\n", "bad_status_line"),
    ("nul-in-reason", b"HTTP/1.1 200 O\x00K\r\n\r\n", "bad_status_line"),
    ("bare-cr-in-status", b"HTTP/1.1 200 OK\rX\r\n\r\n", "bad_status_line"),
    ("garbage", b"<html>not http</html>\r\n\r\n", "bad_status_line"),
    ("http2", b"HTTP/2.0 200 OK\r\n\r\n", "bad_version"),
    ("http09", b"HTTP/0.9 200 OK\r\n\r\n", "bad_version"),
    # field lines (RFC 9112 §5)
    ("space-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", "bad_header"),
    ("tab-before-colon", b"HTTP/1.1 200 OK\r\nX\t: y\r\n\r\n", "bad_header"),
    ("no-colon", b"HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n", "bad_header"),
    ("empty-name", b"HTTP/1.1 200 OK\r\n: x\r\n\r\n", "bad_header"),
    ("bad-name-char", b"HTTP/1.1 200 OK\r\nX(y): z\r\n\r\n", "bad_header"),
    ("nul-in-value", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", "bad_header"),
    ("nul-in-name", b"HTTP/1.1 200 OK\r\nX\x00: ab\r\n\r\n", "bad_header"),
    ("del-in-value", b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n", "bad_header"),
    (
        "ctl-in-long-value",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 13 + b"\x01" + b"b" * 20 + b"\r\n\r\n",
        "bad_header",
    ),
    ("bare-cr-in-value", b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bad_header"),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\nContent-Length: 0\r\n\r\n", "obs_fold"),
    ("obs-fold-tab", b"HTTP/1.1 200 OK\r\nX: a\r\n\tfolded\r\n\r\n", "obs_fold"),
    # lengths (RFC 9110 §8.6, RFC 9112 §6)
    ("length-letters", b"HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n", "bad_length"),
    ("length-negative", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad_length"),
    ("length-plus", b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", "bad_length"),
    ("length-empty", b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "bad_length"),
    ("length-hex", b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "bad_length"),
    ("length-trailing-comma", b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\nhello", "bad_length"),
    ("length-space-inside", b"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", "bad_length"),
    (
        "length-overflow",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
        "length_overflow",
    ),
    (
        "length-overflow-long",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n",
        "length_overflow",
    ),
    (
        "conflicting-lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "conflicting_length",
    ),
    (
        "conflicting-list",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        "conflicting_length",
    ),
    (
        "te-and-length",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "te_and_length",
    ),
    (
        "length-and-te",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n",
        "te_and_length",
    ),
    (
        "te-and-length-on-204",
        b"HTTP/1.1 204 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "te_and_length",
    ),
    ("chunked-twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "bad_te"),
    (
        "chunked-twice-fields",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "bad_te",
    ),
    ("te-empty", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n", "bad_te"),
    ("te-in-http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "bad_te"),
    # chunked framing (RFC 9112 §7.1)
    (
        "chunk-size-letters",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "bad_chunk_size",
    ),
    (
        "chunk-size-empty",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "bad_chunk_size",
    ),
    (
        "chunk-size-negative",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
        "bad_chunk_size",
    ),
    (
        "chunk-size-0x",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n",
        "bad_chunk_size",
    ),
    (
        "chunk-size-bare-lf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n",
        "bad_chunk_size",
    ),
    (
        "chunk-size-cr-no-lf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\rhello\r\n",
        "bad_chunk_size",
    ),
    (
        "chunk-size-junk-after-ws",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n",
        "bad_chunk_size",
    ),
    (
        "chunk-size-overflow",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        "chunk_overflow",
    ),
    (
        "chunk-ext-nul",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n",
        "bad_chunk_ext",
    ),
    (
        "chunk-ext-too-long",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;" + b"e" * 5000 + b"\r\nhello\r\n",
        "chunk_line_too_large",
    ),
    (
        "chunk-leading-zeros-too-long",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 5000 + b"5\r\nhello\r\n",
        "chunk_line_too_large",
    ),
    (
        "chunk-missing-crlf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
        "bad_chunk_end",
    ),
    (
        "chunk-missing-lf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r0\r\n\r\n",
        "bad_chunk_end",
    ),
    (
        "chunk-bare-lf-after-data",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        "bad_chunk_end",
    ),
    (
        "trailer-bare-cr-end",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX",
        "bad_trailer",
    ),
    (
        "trailer-too-large",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        + b"T: x\r\n" * 2000
        + b"\r\n",
        "trailer_too_large",
    ),
    # others
    ("101-upgrade", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "upgrade"),
    (
        "bad-header-in-interim",
        b"HTTP/1.1 103 Early\r\nX : y\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        "bad_header",
    ),
    ("pipelined-second-bad", CL + b"HTTP/1.1 2OO OK\r\n\r\n", "bad_status_line"),
]


@pytest.mark.parametrize(("name", "data", "error"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_classified_whatever_the_splits(name: str, data: bytes, error: str):
    assert error in HTTP_ERRORS
    if len(data) > 2000:
        results = [parse_responses(data, [i]) for i in range(1, len(data), 97)]
        results.append(parse_responses(data, list(range(1, len(data)))))
        results.append(parse_responses(data))
    else:
        results = every_split(data)
    for r in results:
        assert r[-1] == {"error": error}, r
        assert all("error" not in x for x in r[:-1])


def test_header_too_large_variants():
    # the 1 MB header: fails as soon as the limit is passed, in one piece or dripped in 4 KiB reads
    huge = b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * (1 << 20) + b"\r\n\r\n"
    assert parse_responses(huge) == [{"error": "too_large"}]
    assert parse_responses(huge, list(range(4096, len(huge), 4096))) == [{"error": "too_large"}]
    # many small fields add up
    many = b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 2000 + b"\r\n"
    assert parse_responses(many) == [{"error": "too_large"}]
    # a status line that never ends
    assert parse_responses(b"HTTP/1.1 200 " + b"O" * (MAX_HEADER + 10)) == [{"error": "too_large"}]
    # the limit is per header block: interim blocks each get their own
    near = b"X: " + b"a" * (MAX_HEADER - 100) + b"\r\n"
    data = (
        b"HTTP/1.1 103 E\r\n"
        + near
        + b"\r\nHTTP/1.1 200 OK\r\n"
        + near
        + b"Content-Length: 0\r\n\r\n"
    )
    assert strip(parse_responses(data)) == [ok(200, 0, interim=1)]


def test_split_argument_validation():
    with pytest.raises(ValueError):
        parse_responses(CL, [len(CL) + 1])
    with pytest.raises(ValueError):
        parse_responses(CL, [-1])
    # 0 and len(data) are harmless no-op cut points
    assert parse_responses(CL, [0, len(CL)]) == parse_responses(CL)


def test_native_bench_hook_parses_every_response():
    from barfast.engine._core import http_parse_bench

    count, ns = http_parse_bench(CL + CHUNKED + INTERIM, 10)
    assert count == 3 and ns > 0
    with pytest.raises(ValueError):
        http_parse_bench(CL[:-1], 1)
    with pytest.raises(ValueError):
        http_parse_bench(b"HTTP/1.1 2OO OK\r\n\r\n", 1)


@pytest.mark.parametrize("where", ["value", "reason"])
def test_every_ctl_rejected_at_every_position(where: str):
    """The 8-bytes-at-a-time value check must agree with the byte rule at every offset."""
    good_extra = [0x09, 0x20, 0x21, 0x7E, 0x80, 0xFF]
    bad = [b for b in range(0x20) if b not in (0x09, 0x0A)] + [0x7F]
    width = 21
    for pos in range(width):
        for byte in good_extra + bad:
            text = bytearray(b"v" * width)
            text[pos] = byte
            if where == "value":
                data = b"HTTP/1.1 200 OK\r\nX: " + bytes(text) + b"\r\nContent-Length: 0\r\n\r\n"
            else:
                data = b"HTTP/1.1 200 " + bytes(text) + b"\r\nContent-Length: 0\r\n\r\n"
            (r,) = parse_responses(data)
            if byte in bad:  # CTLs incl. a bare CR (also right before the CRLF), and DEL
                expected = "bad_header" if where == "value" else "bad_status_line"
                assert r == {"error": expected}, (pos, byte)
            else:
                assert r["status"] == 200, (pos, byte)


def test_head_memo_needs_the_whole_block_to_match():
    """The memo's block ends with its blank line: a head that extends the memorised one by a field
    line, or ends it differently, shares all but the memo's last bytes and must be parsed."""
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    longer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: 1\r\n\r\nhello"
    bare_lf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\nhello"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    for wire in (
        first + longer,
        first + bare_lf + first,
        interim + first + interim + first,
        first + first[:-1] + b"!" + first,
    ):
        assert parse_responses(wire, memo=True) == parse_responses(wire)
        assert parse_responses(wire, list(range(1, len(wire))), memo=True) == parse_responses(wire)
