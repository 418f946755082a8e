"""The native pieces of flows (engine/include/bf_flow.h) through their test hooks: captures,
the cookie jar, and how a variable is escaped where it is placed (the same as a feeder value)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from barfast.engine._core import flow_capture, flow_cookie_update, flow_escape
from barfast.scenario.template import escape_value

HEAD = (
    b"HTTP/1.1 200 OK\r\nLocation: /next?id=7\r\nX-Empty:\r\nSet-Cookie: sid=abc; Path=/\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_header_captures_take_the_first_field_trimmed() -> None:
    assert flow_capture("header", HEAD, b"", b"location") == ("ok", b"/next?id=7")
    assert flow_capture("header", HEAD, b"", b"X-Empty") == ("ok", b"")
    assert flow_capture("header", HEAD, b"", b"X-Missing") == ("missing", None)


def test_json_captures_decode_strings_and_keep_other_values_as_text() -> None:
    body = json.dumps({"d": {"t": 'a"b\\c\u00e9', "n": 12.5, "o": {"k": [1]}, "nl": "x\ny"}})
    assert flow_capture("json", b"", body.encode(), b"d.t") == ("ok", 'a"b\\c\u00e9'.encode())
    assert flow_capture("json", b"", body.encode(), b"d.n") == ("ok", b"12.5")
    assert flow_capture("json", b"", body.encode(), b"d.o") == ("ok", b'{"k": [1]}')
    assert flow_capture("json", b"", body.encode(), b"d.x") == ("missing", None)
    # a value that could not go in a header line is refused, not sent broken
    assert flow_capture("json", b"", body.encode(), b"d.nl") == ("bad_bytes", None)
    cut = body.encode()[:12]
    assert flow_capture("json", b"", cut, b"d.t", truncated=True) == ("truncated", None)


def test_between_captures_and_the_length_bound() -> None:
    body = b'<a id="x7">..<a id="y8">'
    assert flow_capture("between", b"", body, b'id="', b'"') == ("ok", b"x7")
    assert flow_capture("between", b"", body, b"id=<", b'"') == ("missing", None)
    assert flow_capture("between", b"", body, b'id="', b"!") == ("missing", None)
    assert flow_capture("between", b"", body, b'id="', b"!", truncated=True) == ("truncated", None)
    assert flow_capture("between", b"", b"[" + b"v" * 10 + b"]", b"[", b"]", cap=9) == (
        "too_long",
        None,
    )


def cookies(*fields: str) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\n" + "".join(f"Set-Cookie: {f}\r\n" for f in fields) + "\r\n"
    ).encode()


def test_the_jar_replaces_by_name_deletes_and_ignores_attributes() -> None:
    jar, dropped = flow_cookie_update(b"", cookies("a=1; Path=/; HttpOnly", "b=2", "a=3"))
    assert (jar, dropped) == (b"b=2; a=3", 0)
    jar, _ = flow_cookie_update(jar, cookies("b=; Path=/"))  # an empty value deletes
    assert jar == b"a=3"
    jar, _ = flow_cookie_update(b"a=3; c=4", cookies("a=x; Max-Age=0", "c=5; max-age=60"))
    assert jar == b"c=5"
    jar, _ = flow_cookie_update(b"c=5", cookies("noequals", "=v", "d = 6 "))  # RFC 6265 §5.2
    assert jar == b"c=5; d=6"


def test_a_full_jar_drops_and_counts_what_does_not_fit() -> None:
    jar, dropped = flow_cookie_update(b"", cookies("a=" + "x" * 20, "b=" + "y" * 20), cap=30)
    assert (jar, dropped) == (b"a=" + b"x" * 20, 1)


@given(st.text(max_size=40))
def test_a_variable_is_escaped_as_a_feeder_value_is(v: str) -> None:
    raw = v.encode("utf-8")
    assert flow_escape(raw, 1) == escape_value(v, "target", "t")
    assert flow_escape(raw, 2) == escape_value(v, "json", "t")
    assert flow_escape(raw, 0) == raw


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.text("xyz0", max_size=3)), max_size=12))
def test_the_jar_keeps_one_pair_per_name_the_newest(pairs: list[tuple[str, str]]) -> None:
    jar = b""
    want: dict[str, str] = {}
    for name, value in pairs:
        jar, dropped = flow_cookie_update(jar, cookies(f"{name}={value}"))
        assert dropped == 0
        want.pop(name, None)
        if value:
            want[name] = value
    assert jar == "; ".join(f"{k}={v}" for k, v in want.items()).encode()
