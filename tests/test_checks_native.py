"""The native response-check evaluators (include/bf_check.h) through their test hooks (check.pxi).

- Exact tables: header lookup, body substring, the JSON path walker (nested paths, arrays, escapes,
  whitespace, missing, invalid, truncated prefixes, depth) and JSON literal equality (numbers
  compared as exact decimals: 1 == 1.0 == 1e0).
- Properties against Python: json.dumps'd values with a path that exists or not must give what a
  walk of the json.loads'd value gives (found or missing, the same value, equality as decimals);
  a prefix of a body flagged truncated answers as the whole body does, or truncated; header lookup
  and substring search agree with plain Python.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barfast.engine._core import (
    CHECK_JSON_CODES,
    CHECK_JSON_MAX_DEPTH,
    CHECK_JSON_TYPES,
    check_body_contains,
    check_header,
    check_json_equals,
    check_json_get,
)

PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def get(body: bytes, path: bytes, truncated: bool = False) -> tuple[str, str, bytes | None]:
    code, vtype, raw = check_json_get(body, path, truncated)
    return CHECK_JSON_CODES[code], CHECK_JSON_TYPES[vtype], raw


def equals(body: bytes, path: bytes, expected: bytes) -> bool:
    code, eq = check_json_equals(body, path, expected)
    assert CHECK_JSON_CODES[code] == "found", (body, path)
    return eq


# ---- headers ----------------------------------------------------------------------------------

BLOCK = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"X-Trace:  \t abc def \t \r\n"
    b"Empty:\r\n"
    b"Dup: first\r\n"
    b"dup: second\r\n"
    b"Location: http://x/y:8080\r\n"
    b"Spaced : no\r\n"
    b"\r\n"
    b"After: body\r\n"
)

HEADER_CASES = [
    (BLOCK, b"content-type", b"application/json"),
    (BLOCK, b"CONTENT-TYPE", b"application/json"),
    (BLOCK, b"x-trace", b"abc def"),  # OWS (SP and HTAB) trimmed on both sides, not inside
    (BLOCK, b"empty", b""),
    (BLOCK, b"dup", b"first"),  # the first field of that name
    (BLOCK, b"location", b"http://x/y:8080"),  # only the first colon ends the name
    (BLOCK, b"spaced", None),  # whitespace before the colon: not that name
    (BLOCK, b"after", None),  # the blank line ends the block
    (BLOCK, b"content", None),  # a prefix of a name is not the name
    (BLOCK, b"content-type-x", None),
    (BLOCK, b"", None),
    (b"X-A: 1\r\nX-A: 2\r\n\r\n", b"x-a", b"2"),  # the first line is the status line
    (b"HTTP/1.1 200 OK\nA: lf\nB: ends\n\n", b"b", b"ends"),  # bare LF line ends
    (b"HTTP/1.1 200 OK\r\nA: unterminated", b"a", b"unterminated"),
    (b"HTTP/1.1 200 OK\r\nA: cr\r", b"a", b"cr"),
    (b"HTTP/1.1 200 OK\r\nnocolon\r\nA: 1\r\n\r\n", b"a", b"1"),
    (b"HTTP/1.1 200 OK\r\n\r\n", b"a", None),
    (b"", b"a", None),
    (b"\n", b"a", None),
]


@pytest.mark.parametrize(("block", "name", "value"), HEADER_CASES)
def test_header_find(block: bytes, name: bytes, value: bytes | None) -> None:
    assert check_header(block, name) == value


TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def header_reference(block: bytes, name: bytes) -> bytes | None:
    lines = block.split(b"\n")
    for line in lines[1:]:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return None
        field, colon, value = line.partition(b":")
        if colon and field.lower() == name.lower():
            return value.strip(b" \t")
    return None


@PROPS
@given(
    fields=st.lists(
        st.tuples(
            st.text(TCHAR, min_size=1, max_size=6).map(str.encode),
            st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
            st.sampled_from([b"\r\n", b"\n"]),
        ),
        max_size=6,
    ),
    pick=st.integers(min_value=-1, max_value=5),
    swap=st.booleans(),
)
def test_header_find_matches_reference(fields: list, pick: int, swap: bool) -> None:
    block = b"HTTP/1.1 200 OK\r\n" + b"".join(n + b":" + v + le for n, v, le in fields) + b"\r\n"
    name = fields[pick % len(fields)][0] if fields and pick >= 0 else b"X-Absent"
    if swap:
        name = name.swapcase()
    assert check_header(block, name) == header_reference(block, name)


# ---- body -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle", "found"),
    [
        (b"", b"", True),
        (b"abc", b"", True),
        (b"", b"a", False),
        (b"abc", b"abc", True),
        (b"abc", b"abcd", False),
        (b"xxabc", b"abc", True),
        (b"abcxx", b"abc", True),
        (b"aaab", b"aab", True),  # a false start overlapping the match
        (b"abab", b"bab", True),
        (b"ab", b"b", True),
        (b"abcab", b"abd", False),
        (b'{"ok":true}', b'"ok":true', True),
        (b"a\x00b", b"\x00b", True),  # no NUL terminator relied on
    ],
)
def test_body_contains(body: bytes, needle: bytes, found: bool) -> None:
    assert check_body_contains(body, needle) is found


@PROPS
@given(body=st.binary(max_size=40), needle=st.binary(max_size=4), take=st.booleans())
def test_body_contains_matches_python(body: bytes, needle: bytes, take: bool) -> None:
    body = bytes(b % 3 for b in body)  # a small alphabet makes near misses common
    needle = (
        body[len(body) // 3 : len(body) // 3 + len(needle)]
        if take
        else bytes(b % 3 for b in needle)
    )
    assert check_body_contains(body, needle) is (needle in body)


# ---- JSON: get ----------------------------------------------------------------------------------

DOC = b'{"data": {"items": [{"id": 7, "name": "a"}, {"id": 8.50, "tags": []}], "n": null}, "ok": true}'

GET_CASES: list[tuple[bytes, bytes, bool, str, str, bytes | None]] = [
    # nested paths, arrays
    (DOC, b"data.items.0.id", False, "found", "number", b"7"),
    (DOC, b"data.items.1.id", False, "found", "number", b"8.50"),
    (DOC, b"data.items.0.name", False, "found", "string", b'"a"'),
    (DOC, b"data.items.1.tags", False, "found", "array", b"[]"),
    (DOC, b"data.n", False, "found", "null", b"null"),
    (DOC, b"ok", False, "found", "true", b"true"),
    (DOC, b"data.items.0", False, "found", "object", b'{"id": 7, "name": "a"}'),
    (DOC, b"", False, "found", "object", DOC),
    (b"[false]", b"0", False, "found", "false", b"false"),
    (b" \t\r\n 42 \n", b"", False, "found", "number", b"42"),
    # missing
    (DOC, b"data.items.2", False, "missing", "none", None),
    (DOC, b"data.items.0.id.x", False, "missing", "none", None),  # a segment on a number
    (DOC, b"data.items.0.name.x", False, "missing", "none", None),  # on a string
    (DOC, b"data.items.x", False, "missing", "none", None),  # not an index
    (DOC, b"data.items.01", False, "missing", "none", None),  # RFC 6901: no leading zeros
    (DOC, b"data.items.-1", False, "missing", "none", None),
    (DOC, b"data.items.1.tags.0", False, "missing", "none", None),
    (DOC, b"data.absent", False, "missing", "none", None),
    (DOC, b"Data", False, "missing", "none", None),  # keys are case-sensitive
    (DOC, b"data.item", False, "missing", "none", None),  # a prefix of a key
    (b"{}", b"a", False, "missing", "none", None),
    (b"[]", b"0", False, "missing", "none", None),
    (b"[1]", b"99999999999999999999999", False, "missing", "none", None),
    # whitespace everywhere
    (b' \n{ "a" :\t[ 1 ,\r\n 2 ] } ', b"a.1", False, "found", "number", b"2"),
    (b'{"a" : { "b" : "c" } }', b"a", False, "found", "object", b'{ "b" : "c" }'),
    # keys are compared decoded: escapes, \uXXXX, surrogate pairs, raw UTF-8
    (b'{"a\\"b": 1}', b'a"b', False, "found", "number", b"1"),
    (b'{"a\\\\b": 1}', b"a\\b", False, "found", "number", b"1"),
    (b'{"a\\/b": 1}', b"a/b", False, "found", "number", b"1"),
    (b'{"\\u0041\\u0062": 1}', b"Ab", False, "found", "number", b"1"),
    (b'{"\\u00E9": 1}', "é".encode(), False, "found", "number", b"1"),
    (b'{"\xc3\xa9": 1}', "é".encode(), False, "found", "number", b"1"),
    (b'{"\\ud83d\\ude00": 1}', "😀".encode(), False, "found", "number", b"1"),
    (b'{"\\t\\n": 1}', b"\t\n", False, "found", "number", b"1"),
    (b'{"x": "\\"}\\"", "a": 2}', b"a", False, "found", "number", b"2"),  # skipping: escapes
    (b'{"x": {"a": [1, {"a": 3}]}, "a": 2}', b"a", False, "found", "number", b"2"),  # nesting
    (b'{"a": 1, "a": 2}', b"a", False, "found", "number", b"1"),  # the first member wins
    (b'{"": {"": 5}}', b".", False, "found", "number", b"5"),  # empty segments name ""
    (b'{"a": {"": 5}}', b"a.", False, "found", "number", b"5"),
    (b'{"a.b": 1}', b"a.b", False, "missing", "none", None),  # '.' always splits
    (b'{"a": "\\u00e9\\n"}', b"a", False, "found", "string", b'"\\u00e9\\n"'),  # raw span
    (b'\xef\xbb\xbf{"a": 1}', b"a", False, "found", "number", b"1"),  # BOM skipped
    (b'{"a": 1} trailing', b"a", False, "found", "number", b"1"),  # after the value: not read
    (b'{"a": 1, "b": nope}', b"a", False, "found", "number", b"1"),
    # invalid (where it looked)
    (b"", b"", False, "invalid", "none", None),
    (b"   ", b"", False, "invalid", "none", None),
    (b"{'a': 1}", b"a", False, "invalid", "none", None),
    (b'{"a": 1,}', b"b", False, "invalid", "none", None),
    (b"[1,]", b"1", False, "invalid", "none", None),
    (b"[1 2]", b"1", False, "invalid", "none", None),
    (b'{"a" 1}', b"a", False, "invalid", "none", None),
    (b'{"a": 1 "b": 2}', b"b", False, "invalid", "none", None),
    (b'{"a": 01}', b"a", False, "invalid", "none", None),
    (b'{"a": 1.}', b"a", False, "invalid", "none", None),
    (b'{"a": .5}', b"a", False, "invalid", "none", None),
    (b'{"a": 1e}', b"a", False, "invalid", "none", None),
    (b'{"a": +1}', b"a", False, "invalid", "none", None),
    (b'{"a": tru}', b"a", False, "invalid", "none", None),
    (b'{"a": truex}', b"a", False, "invalid", "none", None),
    (b'{"a": "x\ny"}', b"a", False, "invalid", "none", None),  # raw control character
    (b'{"a": "\\x"}', b"a", False, "invalid", "none", None),
    (b'{"a": "\\u12G4"}', b"a", False, "invalid", "none", None),
    (b'{"x": [1, }], "a": 1}', b"a", False, "invalid", "none", None),  # a skipped value
    (b'{"x": [1}, "a": 1}', b"a", False, "invalid", "none", None),  # mismatched bracket
    (b'{"x": {"k" 1}, "a": 1}', b"a", False, "invalid", "none", None),
    (b'{"a": 1', b"b", False, "invalid", "none", None),  # the end without the truncated flag
    (b'"abc', b"", False, "invalid", "none", None),
    (b'{"a": 1.5x}', b"a.b", False, "invalid", "none", None),  # a scalar under a path: validated
    # the end of a complete body delimits a number
    (b'{"a": 12', b"a", False, "found", "number", b"12"),
    # truncated prefixes
    (b'{"a": 1, "b": {"c": "xy', b"a", True, "found", "number", b"1"),
    (b'{"a": [1, 2', b"a.1", True, "truncated", "none", None),  # 2 may go on: 23
    (b'{"a": [1, 2', b"a.5", True, "truncated", "none", None),
    (b'{"a": [1, 2', b"a.5", False, "invalid", "none", None),
    (b'{"a": tr', b"a", True, "truncated", "none", None),
    (b'{"a": "x', b"a", True, "truncated", "none", None),
    (b'{"a": "\\u00', b"a", True, "truncated", "none", None),
    (b'{"a": "\\', b"a", True, "truncated", "none", None),
    (b'{"a": -', b"a", True, "truncated", "none", None),
    (b'{"a": 1.', b"a", True, "truncated", "none", None),
    (b'{"a": 1e+', b"a", True, "truncated", "none", None),
    (b'{"a', b"a", True, "truncated", "none", None),
    (b'{"a"', b"a", True, "truncated", "none", None),
    (b'{"x": [[{"y": "', b"a", True, "truncated", "none", None),
    (b"", b"a", True, "truncated", "none", None),
    (b"\xef\xbb", b"", True, "truncated", "none", None),
    (b'{"a": [1, 2]}', b"a.5", True, "missing", "none", None),  # the end was seen: not truncated
    (b'{"x": "abc" ,', b"a", True, "truncated", "none", None),
    (b'{"a": true', b"a", True, "truncated", "none", None),  # may go on: truex
    (b"false", b"a", True, "truncated", "none", None),
    (b"null", b"", True, "truncated", "none", None),
    (b'{"a": true ', b"a", True, "found", "true", b"true"),
    (b'{"x": "abc" x', b"a", True, "invalid", "none", None),  # invalid before the end
]


@pytest.mark.parametrize(("body", "path", "truncated", "code", "vtype", "raw"), GET_CASES)
def test_json_get(
    body: bytes, path: bytes, truncated: bool, code: str, vtype: str, raw: bytes | None
) -> None:
    assert get(body, path, truncated) == (code, vtype, raw)


def test_json_depth_limit() -> None:
    n = CHECK_JSON_MAX_DEPTH
    assert n == 64
    at_limit = b"[" * n + b"]" * n
    assert get(at_limit, b"") == ("found", "array", at_limit)
    assert get(b"[" * (n + 1) + b"]" * (n + 1), b"")[0] == "too_deep"
    # along the path
    nested = b'{"a":' * n + b"1" + b"}" * n
    assert get(nested, b".".join([b"a"] * n)) == ("found", "number", b"1")
    deeper = b'{"a":' * (n + 1) + b"1" + b"}" * (n + 1)
    assert get(deeper, b".".join([b"a"] * (n + 1)))[0] == "too_deep"
    # inside a value skipped on the way, and in the path's containers plus the skipped one
    assert get(b'{"x": ' + b"[" * n + b"]" * n + b', "a": 1}', b"a")[0] == "too_deep"
    assert get(b'{"x": ' + b"[" * (n - 1) + b"]" * (n - 1) + b', "a": 1}', b"a")[0] == "found"
    # a truncated body that is too deep before its end says too deep
    assert get(b"[" * (n + 1), b"", truncated=True)[0] == "too_deep"


# ---- JSON: equals -------------------------------------------------------------------------------

EQUALS_CASES: list[tuple[bytes, bytes, bool]] = [
    # numbers: exact decimal values
    (b"1", b"1", True),
    (b"1", b"1.0", True),
    (b"1", b"1e0", True),
    (b"1", b"1E+0", True),
    (b"1", b"10e-1", True),
    (b"1", b"0.1e1", True),
    (b"1", b"0.001e3", True),
    (b"100", b"1e2", True),
    (b"12", b"1.2e1", True),
    (b"1.5", b"15e-1", True),
    (b"1.50", b"1.5", True),
    (b"0", b"-0", True),
    (b"0.0", b"-0e5", True),
    (b"0", b"0e-00000000000000000000000000", True),
    (b"1", b"2", False),
    (b"1", b"-1", False),
    (b"1", b"10", False),
    (b"1", b"0.1", False),
    (b"0", b"1e-300", False),
    (b"9007199254740993", b"9007199254740992", False),  # beyond 2^53: still exact
    (b"123456789012345678901234567890", b"123456789012345678901234567890", True),
    (b"123456789012345678901234567890", b"123456789012345678901234567891", False),
    (b"0.1", b"0.10000000000000001", False),  # the same double, not the same number
    (b"1e1000000000000000000", b"1e1000000000000000000", True),  # huge exponent: the text
    (b"1e1000000000000000000", b"10e999999999999999999", False),
    (b"1e5", b"1e00000000000000000000005", True),  # leading zeros of an exponent do not count
    # strings: decoded on both sides
    (b'"abc"', b'"abc"', True),
    (b'"\\u0061bc"', b'"abc"', True),
    (b'"abc"', b'"\\u0061\\u0062\\u0063"', True),
    (b'"\xc3\xa9"', b'"\\u00e9"', True),
    (b'"\\u00e9"', b'"\\u00E9"', True),
    (b'"\xf0\x9f\x98\x80"', b'"\\ud83d\\ude00"', True),
    (b'"a\\/b"', b'"a/b"', True),
    (b'"\\n\\t\\"\\\\"', b'"\\u000a\\u0009\\u0022\\u005c"', True),
    (b'""', b'""', True),
    (b'"abc"', b'"abd"', False),
    (b'"ab"', b'"abc"', False),
    (b'"abc"', b'"ab"', False),
    (b'"\\ud83d"', b'"\\ud83d"', True),  # a lone surrogate equals itself
    (b'"\\ud83d\\ude00"', b'"\\ud83d"', False),
    # literals by type
    (b"true", b"true", True),
    (b"false", b"false", True),
    (b"null", b"null", True),
    (b"true", b"false", False),
    (b"true", b"1", False),
    (b"1", b"true", False),
    (b"false", b'"false"', False),
    (b"1", b'"1"', False),
    (b"null", b"0", False),
    # expected must be one valid JSON value; JSON whitespace around it is fine
    (b"1", b"  1 \n", True),
    (b'"abc"', b'"abc', False),
    (b'"abc"', b'"abc"x', False),
    (b"1", b"1 2", False),
    (b"1", b"01", False),
    (b"1", b"1.", False),
    (b"1", b"+1", False),
    (b"true", b"tru", False),
    (b"true", b"truex", False),
    (b"1", b"", False),
    (b"1", b"   ", False),
    (b'"a"', b'"\\x"', False),
    # objects and arrays: raw bytes
    (b"[1,2]", b"[1,2]", True),
    (b"[1, 2]", b"[1,2]", False),
    (b'{"a":1}', b' {"a":1} ', True),
    (b'{"a":1}', b'{"a":2}', False),
    (b"[]", b"{}", False),
]


@pytest.mark.parametrize(("value", "expected", "equal"), EQUALS_CASES)
def test_json_equals(value: bytes, expected: bytes, equal: bool) -> None:
    body = b'{"v": ' + value + b"}"
    assert equals(body, b"v", expected) is equal


def test_json_equals_not_found() -> None:
    assert check_json_equals(b'{"a": 1}', b"b", b"1") == (CHECK_JSON_CODES.index("missing"), False)
    assert check_json_equals(b'{"a": 1', b"b", b"1", truncated=True) == (
        CHECK_JSON_CODES.index("truncated"),
        False,
    )


# ---- JSON: properties against Python's json module ----------------------------------------------

KEY = st.text(st.characters(exclude_characters=".", exclude_categories=("Cs",)), max_size=4)
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=4),
    max_leaves=16,
)
INDEX = re.compile(r"0|[1-9][0-9]*")
MISSING = object()


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def walk(v: Any, segments: list[str]) -> Any:
    for seg in segments:
        if isinstance(v, dict):
            if seg not in v:
                return MISSING
            v = v[seg]
        elif isinstance(v, list):
            if not INDEX.fullmatch(seg) or int(seg) >= len(v):
                return MISSING
            v = v[int(seg)]
        else:
            return MISSING
    return v


def json_equal(a: Any, b: Any) -> bool:
    """Equality as bf_json_equals defines it for scalars: same JSON type; numbers as decimals."""
    if json_type(a) != json_type(b):
        return False
    if json_type(a) == "number":
        return Decimal(json.dumps(a)) == Decimal(json.dumps(b))
    return bool(a == b)


@st.composite
def doc_and_path(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """A value and a path into it: mostly along members and elements that exist, sometimes off."""
    doc = draw(VALUE)
    v, segments = doc, []
    while draw(st.integers(0, 4)) != 0:
        if isinstance(v, dict) and v and draw(st.booleans()):
            seg = draw(st.sampled_from(sorted(v)))
        elif isinstance(v, list) and v and draw(st.booleans()):
            seg = str(draw(st.integers(0, len(v) - 1)))
        else:
            seg = draw(KEY | st.integers(0, 5).map(str))
        segments.append(seg)
        v = walk(doc, segments)
        if v is MISSING:
            break
    return doc, segments


def dump(doc: Any, ascii_only: bool, indent: int | None) -> bytes:
    return json.dumps(doc, ensure_ascii=ascii_only, indent=indent).encode()


@PROPS
@given(
    dp=doc_and_path(),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
    other=SCALAR,
    cut=st.integers(min_value=0),
)
def test_json_get_matches_python(
    dp: tuple[Any, list[str]], ascii_only: bool, indent: int | None, other: Any, cut: int
) -> None:
    doc, segments = dp
    body = dump(doc, ascii_only, indent)
    path = ".".join(segments).encode()
    want = walk(doc, segments if path else [])  # [""] and [] are both written b""
    full = get(body, path)
    if want is MISSING:
        assert full == ("missing", "none", None)
    else:
        code, vtype, raw = full
        assert (code, vtype) == ("found", json_type(want))
        assert raw is not None
        assert json.loads(raw) == want
        if indent is None or not isinstance(want, dict | list):
            # the same serializer writes a nested value as it wrote it inside the document
            assert equals(body, path, dump(want, ascii_only, indent))
        if not isinstance(want, dict | list):
            assert equals(body, path, dump(other, True, None)) is json_equal(want, other)
    # a kept prefix of the body answers as the whole body, or says it was cut
    prefix = get(body[: cut % (len(body) + 1)], path, truncated=True)
    assert prefix == full or prefix[0] == "truncated"


@PROPS
@given(
    a=st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    b=st.integers() | st.floats(allow_nan=False, allow_infinity=False),
)
def test_json_number_equality_is_decimal(a: int | float, b: int | float) -> None:
    body = b'{"v": ' + json.dumps(a).encode() + b"}"
    assert equals(body, b"v", json.dumps(a).encode())
    assert equals(body, b"v", json.dumps(b).encode()) is (
        Decimal(json.dumps(a)) == Decimal(json.dumps(b))
    )
    # other spellings of the same decimal: integer digits with an exponent, more zeros
    sign, digits, exp = Decimal(json.dumps(a)).as_tuple()
    mantissa = ("-" if sign else "") + "".join(map(str, digits))
    assert isinstance(exp, int)
    assert equals(body, b"v", f"{mantissa}e{exp}".encode())
    if digits != (0,):  # "0000" is not a JSON number
        assert equals(body, b"v", f"{mantissa}000E{exp - 3:+d}".encode())
