"""Request data: `{{ ... }}` placeholders and feeders, compiled into the engine's template ops.

A placeholder is one of
    {{ NAME.COLUMN }}   a value of feeder NAME (a CSV file's column by its header row)
    {{ seq }}           the request's sequence number (unique across workers)
    {{ rand LO HI }}    a uniform integer in [LO, HI], 0 <= LO <= HI < 2^32
    {{ hex N }}         N random lowercase hex digits (N <= 4096)
    {{ alnum N }}       N random characters of [0-9A-Za-z]
    {{ uuid }}          a random UUID (version 4)
    {{ time }}          the Unix time in seconds ({{ time_ms }}: milliseconds)
    {{ NAME }}          in a flow: the user's variable NAME, captured by an earlier step
Each request takes one row of every feeder it names (all its slots of one feeder show that row); in
a flow, a feeder bound to the flow gives one row per iteration instead.

A feeder value is escaped for where it lands, once, when the rows are loaded: percent-encoded in the
request target (only the bytes a target cannot carry: controls, space, non-ASCII and "<>\\^`{|}#"),
JSON-string-escaped inside a `json:` body, refused in a header when it holds CR, LF or NUL, and
inserted as it is in a raw `body:`. Inside a `json:` body a string that is exactly one numeric
generator (seq, rand, time, time_ms) becomes a JSON number.

The request is serialised by config.serialize_request() with a marker in place of every slot, then
cut at the markers into static segments and slot ops (engine/fragments/template.pxi): the same
bytes as an untemplated request, slots aside.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barfast.scenario.model import ScenarioError

(
    OP_STATIC,
    OP_FEED,
    OP_SEQ,
    OP_RANDINT,
    OP_HEX,
    OP_ALNUM,
    OP_UUID,
    OP_TIME_S,
    OP_TIME_MS,
    OP_CLEN,
    OP_VAR,
    OP_COOKIE,
) = range(1, 13)
VAR_ESCAPES = {"header": 0, "raw": 0, "target": 1, "json": 2}  # template.pxi TPL_ESC_*
ORDERS = {"sequential": 0, "random": 1, "unique": 2}
MAX_FEEDERS = 64  # template.pxi TPL_MAX_FEEDS
MAX_RUN = 4096
ESCAPES = ("target", "header", "json", "raw")
_PH = re.compile(r"\{\{(.*?)\}\}", re.S)
_NUMERIC = ("seq", "rand", "time", "time_ms")
_MARK = re.compile(rb"\x00(c|k|[0-9]+)\x00")
GENERATORS = ("seq", "rand", "hex", "alnum", "uuid", "time", "time_ms")
_TARGET_OK = frozenset(
    b"!$%&'()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~"
)


@dataclass(frozen=True)
class Feeder:
    """Rows of named values a scenario's requests draw from: `order` sequential (wraps), random,
    or unique (each row once across all workers; the run stops when they run out)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    order: str = "sequential"
    source: str = "rows"  # the CSV file, for messages
    lines: tuple[int, ...] = ()  # each row's line in the source (CSV), for messages

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ScenarioError(f"order must be one of {', '.join(ORDERS)}, not {self.order!r}")
        if not self.columns:
            raise ScenarioError(f"{self.source}: no columns (the first row names them)")
        if not self.rows:
            raise ScenarioError(f"{self.source}: no rows below the header")
        if len(self.rows) >= 2**32:
            raise ScenarioError(f"{self.source}: more than 2^32 - 1 rows")

    def line(self, i: int) -> str:
        return f"{self.source}:{self.lines[i]}" if self.lines else f"{self.source} row {i + 1}"


def csv_feeder(path: str | Path, order: str = "sequential", shown: str | None = None) -> Feeder:
    """A CSV file (UTF-8; the header row names the columns) -> Feeder. `shown`: the name messages
    give the file (as the scenario wrote it)."""
    p = Path(path)
    name = shown or str(p)
    try:
        with open(p, encoding="utf-8-sig", newline="") as fh:  # newline="": quoted line breaks
            text = fh.read()
    except OSError as exc:
        raise ScenarioError(f"cannot read data file {name!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{name}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ScenarioError(f"{name}: empty (the first row names the columns)") from None
    except csv.Error as exc:
        raise ScenarioError(f"{name}:1: {exc}") from None
    columns = tuple(h.strip() for h in header)
    if any(not c for c in columns) or len(set(columns)) != len(columns):
        raise ScenarioError(f"{name}:1: column names must be non-empty and distinct")
    rows, lines = [], []
    try:
        start = reader.line_num + 1  # a quoted value may span lines: a row is where it starts
        for row in reader:
            if row:  # not a blank line
                if len(row) != len(columns):
                    raise ScenarioError(
                        f"{name}:{start}: {len(row)} fields, the header has {len(columns)}"
                    )
                rows.append(tuple(row))
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ScenarioError(f"{name}:{reader.line_num}: {exc}") from None
    return Feeder(columns, tuple(rows), order, name, tuple(lines))


def rows_feeder(rows: list[dict[str, Any]], order: str = "sequential") -> Feeder:
    """Rows computed in Python (dicts with the same keys) -> Feeder."""
    if not rows:
        raise ScenarioError("a feeder needs at least one row")
    columns = tuple(str(k) for k in rows[0])
    out = []
    for i, r in enumerate(rows):
        if tuple(str(k) for k in r) != columns:
            raise ScenarioError(f"row {i + 1}: keys {list(r)} differ from the first row's")
        out.append(tuple(str(v) for v in r.values()))
    return Feeder(columns, tuple(out), order)


@dataclass(frozen=True)
class Slot:
    """One placeholder: a generator (kind, a, b) or a feeder value (feeder, column)."""

    kind: int
    a: int = 0
    b: int = 0
    feeder: str = ""
    column: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind in (OP_SEQ, OP_RANDINT, OP_TIME_S, OP_TIME_MS)


def _int(word: str, what: str, lo: int, hi: int) -> int:
    if not word.isdigit() or not lo <= int(word) <= hi:
        raise ScenarioError(f"{what} must be an integer in {lo}..{hi}, not {word!r}")
    return int(word)


def parse_slot(expr: str, data: dict[str, Feeder], variables: dict[str, int] | None = None) -> Slot:
    """One placeholder's slot; `variables` (a flow step: the variables captured before it, by
    index) allows {{ NAME }}."""
    words = expr.split()
    if not words:
        raise ScenarioError("empty placeholder {{ }}")
    name, args = words[0], words[1:]
    if variables is not None and not args and name not in GENERATORS and "." not in name:
        if name in variables:
            return Slot(OP_VAR, variables[name], column=name)
        near = difflib.get_close_matches(name, list(variables), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ScenarioError(f"no step before this one captures {{{{ {name} }}}}{hint}")
    fixed = {"seq": OP_SEQ, "uuid": OP_UUID, "time": OP_TIME_S, "time_ms": OP_TIME_MS}
    if name in fixed:
        if args:
            raise ScenarioError(f"{{{{ {name} }}}} takes no arguments")
        return Slot(fixed[name])
    if name == "rand":
        if len(args) != 2:
            raise ScenarioError("{{ rand LO HI }} takes two integers")
        lo, hi = (_int(w, "rand's bounds", 0, 2**32 - 1) for w in args)
        if lo > hi:
            raise ScenarioError(f"{{{{ rand {lo} {hi} }}}}: {hi} is below {lo}")
        return Slot(OP_RANDINT, lo, hi)
    if name in ("hex", "alnum"):
        if len(args) != 1:
            raise ScenarioError(f"{{{{ {name} N }}}} takes one length")
        n = _int(args[0], f"{name}'s length", 1, MAX_RUN)
        return Slot(OP_HEX if name == "hex" else OP_ALNUM, n)
    if "." in name and not args:
        feeder, _, column = name.partition(".")
        if feeder not in data:
            near = difflib.get_close_matches(feeder, list(data), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            known = f"; data has: {', '.join(data)}" if data and not near else ""
            raise ScenarioError(f"no data named {feeder!r} in {{{{ {name} }}}}{hint}{known}")
        f = data[feeder]
        if column not in f.columns:
            near = difflib.get_close_matches(column, list(f.columns), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ScenarioError(
                f"no column {column!r} in {f.source} (columns: {', '.join(f.columns)}){hint}"
            )
        return Slot(OP_FEED, feeder=feeder, column=column)
    gens = "seq, rand LO HI, hex N, alnum N, uuid, time, time_ms or NAME.COLUMN"
    near = difflib.get_close_matches(name, ["seq", "rand", "hex", "alnum", "uuid", "time"], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise ScenarioError(f"bad placeholder {{{{ {expr.strip()} }}}}{hint}: expected {gens}")


def parse(
    text: str, data: dict[str, Feeder], variables: dict[str, int] | None = None
) -> list[str | Slot]:
    """A string with placeholders -> its literal parts and slots (ScenarioError on a bad one)."""
    out: list[str | Slot] = []
    pos = 0
    for m in _PH.finditer(text):
        if m.start() > pos:
            out.append(text[pos : m.start()])
        out.append(parse_slot(m.group(1), data, variables))
        pos = m.end()
    rest = text[pos:]
    if "{{" in rest or "}}" in rest:
        raise ScenarioError("unbalanced {{ }} in a template")
    if rest:
        out.append(rest)
    return out


def has_placeholder(text: str) -> bool:
    return "{{" in text or "}}" in text


def _strings(v: Any) -> Any:
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield str(k)
            yield from _strings(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _strings(x)


def variables_used(r: Any, headers: dict[str, str]) -> list[str]:
    """The {{ NAME }} variables a flow step's request reads (path, url, headers, body, json, and
    the scenario's default headers), in order of appearance."""
    texts = [r.path, r.url or "", *headers.values(), *r.headers.values()]
    if isinstance(r.body, str):
        texts.append(r.body)
    texts += list(_strings(r.json))
    out: list[str] = []
    for t in texts:
        for m in _PH.finditer(t):
            words = m.group(1).split()
            bare = len(words) == 1 and words[0] not in GENERATORS and "." not in words[0]
            if bare and words[0] not in out:
                out.append(words[0])
    return out


def escape_value(v: str, escape: str, where: str) -> bytes:
    """A feeder value as it is sent where its slot is."""
    raw = v.encode("utf-8")
    if escape == "target":
        return b"".join(bytes([c]) if c in _TARGET_OK else b"%%%02X" % c for c in raw)
    if escape == "header":
        if any(c in raw for c in b"\r\n\x00"):
            raise ScenarioError(f"{where}: a value with CR, LF or NUL cannot go in a header")
        return raw
    if escape == "json":
        return json.dumps(v, ensure_ascii=False)[1:-1].encode("utf-8")
    return raw


@dataclass
class Compiled:
    """Template ops of one request plus what the feeders must provide."""

    blob: bytes
    ops: bytes


@dataclass
class Builder:
    """Collects the slots of every request of a run and the feeder variants they need."""

    data: dict[str, Feeder]
    variants: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # feeders in engine order

    def feed_index(self, name: str) -> int:
        if name not in self.order:
            if len(self.order) == MAX_FEEDERS:
                raise ScenarioError(f"at most {MAX_FEEDERS} feeders in one run")
            self.order.append(name)
            self.variants[name] = {}
        return self.order.index(name)

    def variant(self, slot: Slot, escape: str) -> int:
        vs = self.variants[slot.feeder]
        return vs.setdefault((slot.column, escape), len(vs))

    def compile(self, raw: bytes, slots: list[tuple[Slot, str]], body_slots: bool) -> Compiled:
        """Cut a request serialised with markers (\\0k\\0: slot k, \\0c\\0: Content-Length) into
        static segments and ops; the body's ops start after the head's (TPL_CLEN points there)."""
        blob = bytearray()
        ops: list[tuple[int, int, int]] = []

        def cut(part: bytes) -> None:
            pos = 0
            for m in _MARK.finditer(part):
                if m.start() > pos:
                    ops.append((OP_STATIC, len(blob), m.start() - pos))
                    blob.extend(part[pos : m.start()])
                key = m.group(1)
                if key == b"c":
                    ops.append((OP_CLEN, 0, 0))
                elif key == b"k":
                    ops.append((OP_COOKIE, 0, 0))
                else:
                    s, escape = slots[int(key)]
                    if s.kind == OP_VAR:
                        ops.append((OP_VAR, s.a, VAR_ESCAPES[escape]))
                    elif s.kind == OP_FEED:
                        ops.append((OP_FEED, self.feed_index(s.feeder), self.variant(s, escape)))
                    else:
                        ops.append((s.kind, s.a, s.b))
                pos = m.end()
            if pos < len(part):
                ops.append((OP_STATIC, len(blob), len(part) - pos))
                blob.extend(part[pos:])

        k = raw.find(b"\r\n\x00k\x00\r\n")  # a flow step's Cookie line ends the head
        head_end = k + 7 if k >= 0 else raw.index(b"\r\n\r\n") + 4
        cut(raw[:head_end])
        body_op = len(ops)
        if body_slots:
            cut(raw[head_end:])
        elif head_end < len(raw):  # a static body is sent as it is, whatever bytes it holds
            ops.append((OP_STATIC, len(blob), len(raw) - head_end))
            blob.extend(raw[head_end:])
        packed = b"".join(
            struct.pack("=IIII", k, body_op if k == OP_CLEN else a, b, 0) for k, a, b in ops
        )
        return Compiled(bytes(blob), packed)

    def feeders(self) -> tuple[FeedData, ...]:
        out = []
        for name in self.order:
            f = self.data[name]
            vs = sorted(self.variants[name].items(), key=lambda kv: kv[1])
            cols = [(f.columns.index(col), esc) for (col, esc), _ in vs]
            rows = tuple(
                tuple(
                    escape_value(row[ci], esc, f"{f.line(i)}, column {f.columns[ci]!r}")
                    for ci, esc in cols
                )
                for i, row in enumerate(f.rows)
            )
            out.append(FeedData(name, ORDERS[f.order], len(cols), rows))
        return tuple(out)


@dataclass(frozen=True)
class FeedData:
    """A feeder as the engines get it: each row's values, one per (column, escape) used."""

    name: str
    order: int  # ORDERS value
    nvars: int
    rows: tuple[tuple[bytes, ...], ...]

    def pack(self, lo: int = 0, hi: int | None = None) -> tuple[bytes, bytes, int, int, int]:
        """Rows [lo, hi) as the Engine's feeder tuple (arena, offsets, nrows, nvars, order)."""
        rows = self.rows[lo:hi]
        arena = b"".join(v for r in rows for v in r)
        offs = [0]
        for r in rows:
            for v in r:
                offs.append(offs[-1] + len(v))
        if offs[-1] >= 2**32:
            raise ScenarioError(f"data {self.name!r}: more than 4 GiB of values")
        return (arena, struct.pack(f"={len(offs)}I", *offs), len(rows), self.nvars, self.order)
