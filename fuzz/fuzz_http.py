"""Fuzz target: the native HTTP/1.1 response parser (engine/fragments/http.pxi) on hostile bytes.

Each input is a few control bytes (flags, split points) and then the wire bytes. Beyond what AddressSanitizer
and the parser's own assertions catch, it checks the engine's contract on every input:
- the pieces a response arrives in do not change what is parsed (split = unsplit);
- the head memo does not change it either;
- capturing for response checks only adds the captured head and body, bounded by `keep`.
"""

from __future__ import annotations

import sys

import atheris

from barfast.engine._core import parse_responses

CAPTURE = ("head", "body", "body_truncated")


def one_input(data: bytes) -> None:
    # byte 0: bit 0 HEAD, bits 1-2 the number of cuts; byte 1: keep / 2; two bytes per cut; the wire
    if len(data) < 2:
        return
    head = bool(data[0] & 1)
    ncuts = (data[0] >> 1) & 3
    keep = data[1] * 2
    wire = data[2 + 2 * ncuts :]
    cuts = [int.from_bytes(data[2 + 2 * i : 4 + 2 * i], "little") for i in range(ncuts)]
    splits = [c % (len(wire) + 1) for c in cuts]
    whole = parse_responses(wire, head=head)
    if parse_responses(wire, splits, head=head) != whole:
        raise AssertionError(f"split {splits} changed the parse of {wire!r}")
    if parse_responses(wire, splits, head=head, memo=True) != whole:
        raise AssertionError(f"the memo changed the parse of {wire!r}")
    kept = parse_responses(wire, splits, head=head, keep=keep)
    if [{k: v for k, v in r.items() if k not in CAPTURE} for r in kept] != whole:
        raise AssertionError(f"capture (keep={keep}) changed the parse of {wire!r}")
    for r in kept:
        if "body" in r and len(r["body"]) > keep:
            raise AssertionError(f"captured {len(r['body'])} body bytes with keep={keep}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
