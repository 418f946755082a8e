"""barfast.ring — the embeddable lock-free single-producer/single-consumer sample ring.

A ring is a 4096-byte header followed by `capacity` fixed 64-byte records (RECORD_DTYPE, the C
struct bf_sample_t of engine/include/barfast.h), in memory shared by MAP_SHARED: anonymous memory that a
fork()ed child inherits, or a file (e.g. under /dev/shm) that any process can attach by path. The
byte layout and the ordering rules are a written contract: docs/ring-format.md.

    ring = Ring.create(1 << 16)                 # or Ring.create(1 << 16, "/dev/shm/my-ring")
    ring.publish(records)                       # producer: as many as fit; the rest are dropped
    first, second = ring.peek()                 # consumer: zero-copy read-only views
    ...                                         # use them (or copy) ...
    ring.consume(len(first) + len(second))      # ... then give the slots back

A producer never blocks: a full ring drops the record and counts it in `dropped`. Views returned by
peek() are borrowed: once consume() gives their slots back the producer may overwrite them.

Why one module of ~500 lines: it is the whole public surface of one object and its contract (create,
attach by path with every header field checked, publish, peek/consume, stats); a user reads it top to
bottom beside docs/ring-format.md.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import struct
import time
from types import TracebackType
from typing import Any

import numpy as np

from barfast.engine import _core
from barfast.status import BarfastError

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MAX_CAPACITY",
    "RECORD_DTYPE",
    "RECORD_SIZE",
    "VERSION",
    "BadCapacityError",
    "BadDataOffsetError",
    "BadMagicError",
    "BadRecordSizeError",
    "BadVersionError",
    "Ring",
    "RingClosedError",
    "RingCorruptError",
    "RingError",
    "RingFormatError",
    "RingNotFoundError",
    "TruncatedRingError",
    "check_synthetic",
    "synthetic_records",
]

MAGIC = b"BARFRING"
VERSION = 1
HEADER_SIZE = 4096
RECORD_SIZE = 64
MAX_CAPACITY = 1 << 40  # records; the native side refuses more (64 TiB of records)

# bf_sample_t, field for field (engine/include/barfast.h); little-endian, explicit offsets, no padding.
RECORD_DTYPE = np.dtype(
    {
        "names": [
            "intended_ns",
            "send_ns",
            "first_byte_ns",
            "done_ns",
            "seq",
            "bytes_rx",
            "bytes_tx",
            "conn_id",
            "endpoint",
            "status",
            "error",
            "flags",
            "sys_errno",
            "connect_us",
        ],
        "formats": [
            "<u8",
            "<u8",
            "<u8",
            "<u8",
            "<u8",
            "<u4",
            "<u4",
            "<u4",
            "<u2",
            "<u2",
            "u1",
            "u1",
            "<u2",
            "<u4",
        ],
        "offsets": [0, 8, 16, 24, 32, 40, 44, 48, 52, 54, 56, 57, 58, 60],
        "itemsize": RECORD_SIZE,
    }
)
assert RECORD_DTYPE.itemsize == RECORD_SIZE == 64

# Header line 0: magic(8s) version(u32) record_size(u32) capacity(u64) data_offset(u64)
# producer_pid(i64) created_ns(u64) producer_done(i32) -- docs/ring-format.md, "Header".
_HEAD = struct.Struct("<8sIIQQqQi")


class RingError(BarfastError):
    """Base of every ring failure."""


class RingClosedError(RingError, ValueError):
    """The ring was closed in this process."""


class RingNotFoundError(RingError, FileNotFoundError):
    """Ring.attach() was given a path where no file exists."""


class RingCorruptError(RingError):
    """The shared positions are inconsistent (a writer broke the protocol)."""


class RingFormatError(RingError, ValueError):
    """The file is not a ring this version can use. `field`, `expected` and `found` say why."""

    def __init__(
        self, path: str | None, field: str, expected: object, found: object, why: str = ""
    ):
        self.path = path
        self.field = field
        self.expected = expected
        self.found = found
        where = f"ring file {path}" if path is not None else "ring"
        msg = f"{where}: bad {field}: expected {expected}, found {found}"
        super().__init__(msg + (f" ({why})" if why else ""))


class BadMagicError(RingFormatError):
    """The first 8 bytes are not b"BARFRING": not a barfast ring (or a big-endian writer)."""


class BadVersionError(RingFormatError):
    """A layout version this code does not speak."""


class BadRecordSizeError(RingFormatError):
    """Records of another size than RECORD_SIZE."""


class BadCapacityError(RingFormatError):
    """Capacity is zero, not a power of two, or larger than MAX_CAPACITY."""


class BadDataOffsetError(RingFormatError):
    """Records do not start where this layout version puts them."""


class TruncatedRingError(RingFormatError):
    """The file is empty or shorter than its header says the ring is."""


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_capacity(capacity: object, path: str | None) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
        raise BadCapacityError(path, "capacity", "an int", type(capacity).__name__)
    cap = int(capacity)
    if not _is_pow2(cap) or cap > MAX_CAPACITY:
        raise BadCapacityError(path, "capacity", "a power of two in [1, 2**40] records", cap)
    return cap


class Ring(_core.Ring):
    """One SPSC ring mapping. Make one with Ring.create() or Ring.attach(); the engine takes it as
    is (it publishes through the native handle `ring.c`)."""

    _path: str | None
    _records: np.ndarray[Any, np.dtype[np.void]] | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Ring.create(capacity, path=None) or Ring.attach(path)")

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(cls, capacity: int, path: str | os.PathLike[str] | None = None) -> Ring:
        """A new empty ring of `capacity` records (a power of two).

        path None: anonymous MAP_SHARED memory, shared with processes fork()ed afterwards.
        path given: the file is created or truncated (mode 0600) and mapped MAP_SHARED; other
        processes attach it by path. The file stays after close(); unlink it when done.
        The creating process is recorded as the producer (a process that publishes takes over)."""
        spath = os.fspath(path) if path is not None else None
        cap = _check_capacity(capacity, spath)
        size = HEADER_SIZE + cap * RECORD_SIZE
        if spath is None:
            mm = mmap.mmap(-1, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        else:
            fd = os.open(spath, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, size)  # zero-filled: positions and counters start at 0
                mm = mmap.mmap(
                    fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
                )
            finally:
                os.close(fd)
        pid = os.getpid()
        # Everything but the magic first; the magic last, so a reader that sees it sees the rest.
        _HEAD.pack_into(
            mm, 0, b"\0" * 8, VERSION, RECORD_SIZE, cap, HEADER_SIZE, pid, time.time_ns(), 0
        )
        mm[0:8] = MAGIC
        return cls._from_mapping(mm, spath)

    @classmethod
    def attach(cls, path: str | os.PathLike[str]) -> Ring:
        """Map an existing ring file read-write (as its consumer, or as a producer taking over).

        Raises RingNotFoundError for a missing file and a RingFormatError subclass naming the field
        for an empty or truncated file, wrong magic, version, record size, data offset or a
        capacity that is not a power of two. Positions are checked by peek()/consume()."""
        spath = os.fspath(path)
        try:
            fd = os.open(spath, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RingNotFoundError(errno.ENOENT, "no ring file", spath) from None
        except IsADirectoryError:
            raise RingFormatError(spath, "file type", "a regular file", "a directory") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RingFormatError(spath, "file type", "a regular file", _file_kind(st.st_mode))
            size = st.st_size
            if size == 0:
                raise TruncatedRingError(
                    spath, "file size", f">= {HEADER_SIZE} bytes", "0 (empty file)"
                )
            if size < HEADER_SIZE:
                raise TruncatedRingError(
                    spath, "file size", f">= {HEADER_SIZE} bytes (the header)", f"{size} bytes"
                )
            head = os.pread(fd, _HEAD.size, 0)
            if len(head) < _HEAD.size:  # shrunk under us
                raise TruncatedRingError(spath, "file size", f">= {HEADER_SIZE} bytes", len(head))
            magic, version, rsize, cap, doff, _pid, _created, _done = _HEAD.unpack(head)
            if magic != MAGIC:
                raise BadMagicError(spath, "magic", MAGIC, magic, "not a barfast ring")
            if version != VERSION:
                raise BadVersionError(spath, "version", VERSION, version, "unsupported layout")
            if rsize != RECORD_SIZE:
                raise BadRecordSizeError(spath, "record_size", RECORD_SIZE, rsize)
            if not _is_pow2(cap) or cap > MAX_CAPACITY:
                raise BadCapacityError(spath, "capacity", "a power of two in [1, 2**40]", cap)
            if doff != HEADER_SIZE:
                raise BadDataOffsetError(spath, "data_offset", HEADER_SIZE, doff)
            need = HEADER_SIZE + cap * RECORD_SIZE
            if size < need:
                raise TruncatedRingError(
                    spath,
                    "file size",
                    f">= {need} bytes (header + {cap} records of {RECORD_SIZE})",
                    f"{size} bytes",
                    "truncated",
                )
            mm = mmap.mmap(fd, need, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        try:
            return cls._from_mapping(mm, spath)
        except ValueError:  # the file changed between our checks and the mapping
            mm.close()
            raise RingFormatError(
                spath, "header", "a stable ring header", "a header that changed"
            ) from None

    @classmethod
    def _from_mapping(cls, mm: mmap.mmap, path: str | None) -> Ring:
        self = cls.__new__(cls)
        self._bind(mm)
        self._path = path
        cap = self._header_info()["capacity"]
        recs = np.frombuffer(mm, dtype=RECORD_DTYPE, count=cap, offset=HEADER_SIZE)
        recs.flags.writeable = False  # consumers read; producers go through publish()
        self._records = recs
        return self

    # ------------------------------------------------------------------ properties

    @property
    def capacity(self) -> int:
        """Number of record slots (a power of two)."""
        self._check_open()
        return int(self._header_info()["capacity"])

    @property
    def record_size(self) -> int:
        """Bytes per record (64; RECORD_DTYPE.itemsize)."""
        return RECORD_SIZE

    @property
    def path(self) -> str | None:
        """The backing file, or None for an anonymous ring."""
        return self._path

    @property
    def dropped(self) -> int:
        """Records the producer dropped because the ring was full (cumulative)."""
        return int(self._dropped())

    @property
    def producer_pid(self) -> int:
        """pid of the process that last declared itself producer (creator, or first publisher)."""
        return int(self._producer_pid())

    @property
    def producer_done(self) -> bool:
        """True once the producer called mark_producer_done()."""
        return bool(self._producer_done())

    @property
    def pending(self) -> int:
        """Records published and not yet consumed."""
        cons = self._cons_pos()
        return int(self._prod_pos()) - int(cons)

    @property
    def published(self) -> int:
        """Records published since creation (the producer position)."""
        return int(self._prod_pos())

    @property
    def consumed(self) -> int:
        """Records consumed since creation (the consumer position)."""
        return int(self._cons_pos())

    # ------------------------------------------------------------------ producer

    def publish(self, records: Any, *, count_dropped: bool = True) -> int:
        """Publish one record (tuple in field order, dict of fields, np.void) or a numpy array of
        RECORD_DTYPE records. Copies as many as fit in at most two slices, publishes them with one
        store-release, counts the rest as dropped; returns the number accepted. Never blocks.
        count_dropped=False: the caller will retry the rest itself, so they are not counted."""
        if isinstance(records, np.ndarray):
            if records.dtype != RECORD_DTYPE:
                raise TypeError(
                    f"expected an array of RECORD_DTYPE records, got dtype {records.dtype}"
                )
            arr = np.ascontiguousarray(records).reshape(-1)
        elif isinstance(records, np.void):
            if records.dtype != RECORD_DTYPE:
                raise TypeError(f"expected a RECORD_DTYPE record, got dtype {records.dtype}")
            arr = np.array(records, dtype=RECORD_DTYPE).reshape(1)
        elif isinstance(records, dict):
            arr = np.zeros(1, dtype=RECORD_DTYPE)
            for name, value in records.items():
                if name not in RECORD_DTYPE.fields:  # type: ignore[operator]
                    raise ValueError(f"unknown record field {name!r}")
                arr[name] = value
        elif isinstance(records, tuple):
            if len(records) != len(RECORD_DTYPE.names or ()):
                raise ValueError(
                    f"a record tuple has {len(RECORD_DTYPE.names or ())} fields, got {len(records)}"
                )
            arr = np.array([records], dtype=RECORD_DTYPE)
        else:
            raise TypeError(f"cannot publish a {type(records).__name__}")
        pid = os.getpid()
        if self._producer_pid() != pid:  # another process produced last (attach, fork, hand-over)
            self._claim_producer(pid)
        if arr.shape[0] == 0:
            self._check_open()
            return 0
        return int(self._publish_bytes(arr.view(np.uint8), count_dropped))

    def claim_producer(self) -> None:
        """Make this process the producer: record its pid in the header and reload the producer
        position from it. publish() does this by itself when the pid differs; native producers
        using `ring.c` in a process other than the last producer call it before producing."""
        self._claim_producer(os.getpid())

    def mark_producer_done(self) -> None:
        """Tell consumers no more records will come (store-release; the last counts are final)."""
        self._mark_producer_done()

    # ------------------------------------------------------------------ consumer

    def peek(
        self, max_records: int | None = None
    ) -> tuple[np.ndarray[Any, np.dtype[np.void]], np.ndarray[Any, np.dtype[np.void]]]:
        """Zero-copy read-only views of the unconsumed records, oldest first: (first, second);
        second is empty unless the range wraps past the end of the ring. At most max_records.
        The views stay valid until consume() releases their slots (then the producer may reuse
        them): copy what you keep."""
        recs = self._check_open()
        cons = int(self._cons_pos())
        prod = int(self._prod_pos())  # acquire: records before prod are complete
        cap = recs.shape[0]
        n = prod - cons
        if n < 0 or n > cap:
            raise RingCorruptError(
                f"ring {self._path or '(anonymous)'}: producer position {prod} and consumer "
                f"position {cons} are more than the capacity {cap} apart"
            )
        if max_records is not None:
            if max_records < 0:
                raise ValueError(f"max_records must be >= 0, got {max_records}")
            n = min(n, max_records)
        start = cons & (cap - 1)
        first = min(n, cap - start)
        return recs[start : start + first], recs[0 : n - first]

    def consume(self, n: int) -> None:
        """Give back the n oldest unconsumed records (store-release of the consumer position)."""
        self._check_open()
        cons = int(self._cons_pos())
        pending = int(self._prod_pos()) - cons
        if n < 0 or n > pending:
            raise ValueError(f"cannot consume {n} records: {pending} are pending")
        if n:
            self._set_cons_pos(cons + n)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Unmap in this process. Views from peek() stay readable: the mapping is released when
        the last of them goes away (numpy holds a buffer export, so nothing dangles). Idempotent.
        Never close a ring while a native producer (an Engine's run()) is publishing into it."""
        if self.closed:
            return
        self._records = None
        mm = self._unbind()
        # live views: BufferError, and the mmap is unmapped when the last view is collected
        with contextlib.suppress(BufferError):
            mm.close()

    def _check_open(self) -> np.ndarray[Any, np.dtype[np.void]]:
        recs = self._records
        if recs is None or self.closed:
            raise RingClosedError("ring is closed")
        return recs

    def __enter__(self) -> Ring:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<barfast.ring.Ring closed path={self._path!r}>"
        return (
            f"<barfast.ring.Ring path={self._path!r} capacity={self.capacity} "
            f"pending={self.pending} dropped={self.dropped}>"
        )


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


# ---------------------------------------------------------------------- synthetic records

_MASK32 = np.uint64(0xFFFFFFFF)


def synthetic_records(first_seq: int, n: int) -> np.ndarray[Any, np.dtype[np.void]]:
    """n records with seq = first_seq.. and every other field derived from seq (vectorised), the
    same formula as the native bench producer: a torn or stale record fails check_synthetic().
    For tests, benchmarks and examples; the engine fills real samples."""
    return _synthetic(np.arange(first_seq, first_seq + n, dtype=np.uint64))


def check_synthetic(records: np.ndarray[Any, np.dtype[np.void]]) -> int:
    """How many of `records` differ in any byte from the synthetic record of their own seq."""
    n = records.shape[0]
    if n == 0:
        return 0
    expected = _synthetic(records["seq"].astype(np.uint64))
    a = np.ascontiguousarray(records).view(np.uint64).reshape(n, 8)
    b = expected.view(np.uint64).reshape(n, 8)
    return int(np.count_nonzero(np.any(a != b, axis=1)))


def _synthetic(seq: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.void]]:
    out = np.empty(seq.shape[0], dtype=RECORD_DTYPE)
    u = np.uint64
    with np.errstate(over="ignore"):
        out["intended_ns"] = seq
        out["send_ns"] = seq * u(3) + u(1)
        out["first_byte_ns"] = ~seq
        out["done_ns"] = seq ^ u(0x5A5A5A5A5A5A5A5A)
        out["seq"] = seq
        out["bytes_rx"] = seq & _MASK32
        out["bytes_tx"] = (seq >> u(32)) & _MASK32
        out["conn_id"] = (seq * u(7)) & _MASK32
        out["endpoint"] = (seq >> u(3)) & u(0xFFFF)
        out["status"] = u(100) + seq % u(500)
        out["error"] = seq % u(8)
        out["flags"] = (seq >> u(8)) & u(0xFF)
        out["sys_errno"] = (seq >> u(16)) & u(0xFFFF)
        out["connect_us"] = (seq ^ (seq >> u(32))) & _MASK32
    return out
