"""Fuzz target: what a flow takes from hostile responses (engine/include/bf_flow.h): captures and
the cookie jar, fed arbitrary header blocks, bodies and markers. Beyond AddressSanitizer, each call
checks what is true of every input: a captured value fits its bound and holds no CR, LF or NUL; a
header or between value is a slice of the bytes given; the jar stays "n=v; n=v" within its bound,
one pair per name; a variable escaped for a request target or a JSON string is what the scenario
compiler would have made of the same bytes.
"""

from __future__ import annotations

import sys

import atheris

from barfast.engine._core import flow_capture, flow_cookie_update, flow_escape
from barfast.scenario.template import escape_value

KINDS = ("header", "json", "between")


def one_input(data: bytes) -> None:
    # byte 0: kind; bytes 1-2: marker lengths; byte 3: the capture bound; byte 4: where the head
    # ends; then the two markers and the response bytes
    if len(data) < 5:
        return
    kind = KINDS[data[0] % 3]
    n1, n2, cap = data[1] % 33, data[2] % 33, data[3] % 64 + 1
    a = data[5 : 5 + n1]
    b = data[5 + n1 : 5 + n1 + n2]
    rest = data[5 + n1 + n2 :]
    cut = data[4] % (len(rest) + 1)
    head, body = rest[:cut], rest[cut:]
    code, value = flow_capture(kind, head, body, a, b, truncated=bool(data[0] & 8), cap=cap)
    if (code == "ok") != (value is not None):
        raise AssertionError(f"{code} with value {value!r}")
    if value is not None:
        if len(value) > cap or any(c in value for c in b"\r\n\0"):
            raise AssertionError(f"captured {value!r} breaks the bound or holds CR/LF/NUL")
        if kind == "header" and value not in head:
            raise AssertionError(f"header value {value!r} is not in the head")
        if kind == "between" and value not in body:
            raise AssertionError(f"between value {value!r} is not in the body")
        text = value.decode("utf-8", "surrogateescape")
        utf8 = value.decode("utf-8", "ignore") == text
        if utf8 and flow_escape(value, 1) != escape_value(text, "target", "fuzz"):
            raise AssertionError(f"target escape of {value!r}")
    jar, _ = flow_cookie_update(a + (b"; " + b if a and b else b""), head, cap + 16)
    if len(jar) > max(cap + 16, len(a) + len(b) + 2):
        raise AssertionError(f"jar {jar!r} past its bound")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
