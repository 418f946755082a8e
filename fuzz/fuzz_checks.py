"""Fuzz target: the native response-check evaluators (engine/include/bf_check.h) on hostile bytes.

Header lookup, body substring search and the JSON path walker with literal equality, fed arbitrary
header blocks, bodies, paths and expected values. Beyond AddressSanitizer, each call checks what is
true of every input: a value found is a slice of the bytes given; substring search agrees with
Python's; a prefix of a body, flagged truncated, answers as the whole body does or says truncated.
"""

from __future__ import annotations

import sys

import atheris

from barfast.engine._core import (
    CHECK_JSON_CODES,
    CHECK_JSON_TYPES,
    check_body_contains,
    check_header,
    check_json_equals,
    check_json_get,
)

TRUNCATED = CHECK_JSON_CODES.index("truncated")


def one_input(data: bytes) -> None:
    # byte 0: which evaluator; bytes 1-2: lengths of the name/needle/path and of the expected value;
    # bytes 3-4: where the truncated prefix ends; then those two strings and the block or body
    if len(data) < 5:
        return
    which = data[0] % 3
    n1, n2 = data[1] % 65, data[2] % 65
    cut = int.from_bytes(data[3:5], "little")
    small = data[5 : 5 + n1]
    extra = data[5 + n1 : 5 + n1 + n2]
    big = data[5 + n1 + n2 :]
    if which == 0:
        value = check_header(big, small)
        if value is not None and value not in big:
            raise AssertionError(f"header value {value!r} is not in the block")
    elif which == 1:
        if check_body_contains(big, small) != (small in big):
            raise AssertionError(f"substring search disagrees with Python on {small!r}")
    else:
        full = check_json_get(big, small)
        code, vtype, raw = full
        if not 0 <= code < len(CHECK_JSON_CODES) or not 0 <= vtype < len(CHECK_JSON_TYPES):
            raise AssertionError(f"code {code} / type {vtype} out of range")
        if code == TRUNCATED:
            raise AssertionError("a body not flagged truncated answered truncated")
        if raw is not None and raw not in big:
            raise AssertionError(f"json value {raw!r} is not in the body")
        prefix = check_json_get(big[: cut % (len(big) + 1)], small, True)
        if prefix != full and prefix[0] != TRUNCATED:
            raise AssertionError(f"prefix answered {prefix}, the whole body {full}")
        eq_code, equal = check_json_equals(big, small, extra)
        if eq_code != code or (equal and raw is None):
            raise AssertionError(f"equals answered {eq_code}/{equal} after get answered {full}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
