"""HdrHistogram V2 histoblobs from the network -> sparse exact counts, bounded and checked.

The coordinator receives every worker's interval histograms as hdrh `encode()` output (base64 of an
8-byte header and a zlib stream holding a 40-byte payload header and ZigZag LEB128 counts;
HdrHistogram_c src/hdr_histogram_log.c). hdrh's own decode() allocates a full counts
array per histogram and the merge then adds all of it; here the counts are decoded (hist.pxi) into a
sparse (index, count) list that the Merger adds into its histograms in O(non-zero counts).

A blob is untrusted input. Before anything is allocated or added: its size is capped (MAX_BLOB_BYTES),
both cookies are checked, the outer length must match, decompression is bounded (a stream inflating
past what the largest legitimate payload can be — 40 + 9 * counts_len bytes — is refused: no zlib
bomb), the layout (lowest, highest, significant figures) must be barfast's, the payload length must
match, and every varint, index and sum is bounds-checked in hist.pxi. Any defect is a HistoblobError
(a ProtocolError: one line, never a crash).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram
from pyhdrh import encode as _pyhdrh_encode  # hdrh's own C varint encoder

from barfast.engine._core import hist_decode_varints  # type: ignore[attr-defined]
from barfast.status import ProtocolError

COMPRESSION_COOKIE_BASE = 0x1C849304  # outer header cookie, word-size nibble masked (0xF0)
ENCODING_COOKIE_BASE = 0x1C849303  # payload header cookie, same masking
_EXTERNAL = struct.Struct(">II")  # cookie, length of the zlib data
_PAYLOAD = struct.Struct(">IIIIQQd")  # cookie, payload_len, normalizing_index_offset,
#                                       significant_figures, lowest, highest, conversion ratio
MAX_VARINT_BYTES = 9
_BINARY_FIRST_BYTE = b"\x1c"  # first byte of the compression cookie (big-endian)


class HistoblobError(ProtocolError):
    """A histogram blob that is not a valid barfast-layout V2 histoblob."""


@dataclass(frozen=True, slots=True)
class SparseCounts:
    """The non-zero counts of one decoded histogram: counts[idx[k]] == val[k] (idx ascending)."""

    idx: np.ndarray  # int64
    val: np.ndarray  # uint64
    total: int
    min_index: int  # -1 when empty
    max_index: int  # -1 when empty
    min_value: int  # what hdrh's decode() sets: lowest value of min_index (0 when empty)
    max_value: int  # ... and highest equivalent value of max_index (0 when empty)

    @property
    def n(self) -> int:
        return len(self.idx)


def index_values(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """For every counts index of h's layout: hdrh's get_value_from_index(i) (the lowest value it
    holds) and get_highest_equivalent_value() of that, as uint64 arrays (HdrHistogram_c
    `hdr_value_at_index`; checked against hdrh index by index in test_histoblob.py)."""
    shcm, half, um = h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count, h.unit_magnitude
    i = np.arange(h.counts_len, dtype=np.int64)
    bucket = (i >> shcm) - 1
    sub = (i & (half - 1)) + half
    first = bucket < 0
    sub[first] -= half
    bucket[first] = 0
    low = (sub << (bucket + um)).astype(np.uint64)
    high = low + (np.ones_like(low) << (bucket + um).astype(np.uint64)) - np.uint64(1)
    return low, high


class HistoblobDecoder:
    """Decodes blobs of exactly one layout (that of `template`, an hdrh histogram with 64-bit counts).
    Holds scratch buffers: one thread at a time (the coordinator's loop)."""

    def __init__(self, template: HdrHistogram) -> None:
        self.lowest = int(template.lowest_trackable_value)
        self.highest = int(template.highest_trackable_value)
        self.significant_figures = int(template.significant_figures)
        self.counts_len = int(template.counts_len)
        # Each varint yields at least one index, so a legitimate payload never exceeds this.
        self.max_payload = _PAYLOAD.size + MAX_VARINT_BYTES * self.counts_len
        # zlib's worst case for incompressible data is ~0.03 % + a few bytes over the input; base64
        # adds a third. Anything longer cannot be a legitimate blob: refuse before decoding it.
        self.max_blob = (
            4 * (_EXTERNAL.size + self.max_payload + self.max_payload // 64 + 64) // 3 + 4
        )
        self._idx = np.empty(self.counts_len, dtype=np.int64)
        self._val = np.empty(self.counts_len, dtype=np.uint64)
        self.lowest_values, self.highest_values = index_values(template)

    def decode(self, blob: bytes | str) -> SparseCounts:
        """One histoblob, binary or base64 -> SparseCounts, or HistoblobError."""
        if len(blob) > self.max_blob:
            raise HistoblobError(
                f"histogram blob of {len(blob)} bytes exceeds the {self.max_blob}-byte limit"
            )
        if isinstance(blob, bytes) and blob[:1] == _BINARY_FIRST_BYTE:
            raw = blob  # binary form: base64 text never starts with byte 0x1c
        else:
            try:
                raw = binascii.a2b_base64(blob)
            except (binascii.Error, ValueError) as exc:
                raise HistoblobError(f"histogram blob is not base64: {exc}") from None
        if len(raw) < _EXTERNAL.size:
            raise HistoblobError("histogram blob is shorter than its header")
        cookie, length = _EXTERNAL.unpack_from(raw)
        if cookie & ~0xF0 != COMPRESSION_COOKIE_BASE:
            raise HistoblobError(f"histogram blob has a bad compression cookie {cookie:#x}")
        if length != len(raw) - _EXTERNAL.size:
            raise HistoblobError(
                f"histogram blob says {length} compressed bytes but holds {len(raw) - _EXTERNAL.size}"
            )
        data = self._inflate(memoryview(raw)[_EXTERNAL.size :])
        if len(data) < _PAYLOAD.size:
            raise HistoblobError("histogram payload is shorter than its header")
        cookie, payload_len, norm, sig, lowest, highest, _ratio = _PAYLOAD.unpack_from(data)
        if cookie & ~0xF0 != ENCODING_COOKIE_BASE:
            raise HistoblobError(f"histogram payload has a bad encoding cookie {cookie:#x}")
        if (lowest, highest, sig) != (self.lowest, self.highest, self.significant_figures):
            raise HistoblobError(
                f"histogram layout ({lowest}, {highest}, {sig} digits) is not barfast's "
                f"({self.lowest}, {self.highest}, {self.significant_figures} digits)"
            )
        if norm != 0:
            raise HistoblobError(f"histogram has normalizing index offset {norm} (unsupported)")
        if payload_len != len(data) - _PAYLOAD.size:
            raise HistoblobError(
                f"histogram payload says {payload_len} bytes of counts but holds "
                f"{len(data) - _PAYLOAD.size}"
            )
        try:
            n, total, lo, hi = hist_decode_varints(
                data, _PAYLOAD.size, self.counts_len, self._idx, self._val
            )
        except ValueError as exc:
            raise HistoblobError(f"histogram counts are malformed: {exc}") from None
        if not n:
            return SparseCounts(self._idx[:0].copy(), self._val[:0].copy(), 0, -1, -1, 0, 0)
        return SparseCounts(
            self._idx[:n].copy(),
            self._val[:n].copy(),
            int(total),
            lo,
            hi,
            int(self.lowest_values[lo]),
            int(self.highest_values[hi]),
        )

    def _inflate(self, compressed: memoryview) -> bytes:
        d = zlib.decompressobj()
        try:
            out = d.decompress(compressed, self.max_payload)
        except zlib.error as exc:
            raise HistoblobError(f"histogram blob does not decompress: {exc}") from None
        if d.unconsumed_tail:
            raise HistoblobError(
                f"histogram blob inflates past {self.max_payload} bytes (refused: the largest "
                "legitimate payload for this layout is that long)"
            )
        if not d.eof:
            raise HistoblobError("histogram blob's zlib stream is truncated")
        if d.unused_data:
            raise HistoblobError("histogram blob has bytes after its zlib stream")
        return out


class HistoblobEncoder:
    """Encodes hdrh histograms (64-bit counts) as V2 histoblobs whose zlib stream uses stored
    (uncompressed) blocks, in binary form: the 8-byte header and the zlib stream, no base64.

    Why: inflating a deflated one-second histogram costs the coordinator ~25 us, a stored one ~1 us,
    and base64 another ~5-10 us; 256 workers x 3 histograms a second made those the largest part of
    its cost. The price is ~2x the bytes of a deflated blob (~6 KB for a busy second's histogram).
    Any V2 decoder reads the result (HdrHistogram.decode(base64.b64encode(blob)) for hdrh), and the
    counts are exactly those of the histogram: only the compression level differs from hdrh's own
    encode(), whose output the coordinator decodes too."""

    def __init__(self, template: HdrHistogram) -> None:
        if template.get_word_size() != 8:
            raise ValueError("HistoblobEncoder needs 64-bit hdrh counts")
        self.counts_len = int(template.counts_len)
        cap = MAX_VARINT_BYTES * self.counts_len
        self._buf = (ctypes.c_byte * (_PAYLOAD.size + cap))()
        self._cap = cap

    def encode(self, h: HdrHistogram, *, level: int = 0, b64: bool = False) -> bytes:
        """The histoblob of h (hdrh's own bytes when level=6 and b64=True)."""
        if h.counts_len != self.counts_len or h.get_word_size() != 8:
            raise ValueError("histogram layout differs from the encoder's")
        # hdrh encodes counts up to the index of max_value (0 counts when empty).
        relevant = h.get_counts_array_index(h.max_value) + 1 if h.total_count else 0
        n = 0
        if relevant:
            n = _pyhdrh_encode(
                ctypes.addressof(h.counts),
                relevant,
                8,
                ctypes.addressof(self._buf) + _PAYLOAD.size,
                self._cap,
            )
        _PAYLOAD.pack_into(
            self._buf,
            0,
            ENCODING_COOKIE_BASE | 0x10,
            n,
            0,
            h.significant_figures,
            h.lowest_trackable_value,
            h.highest_trackable_value,
            1.0,  # hdrh's conversion ratio
        )
        comp = zlib.compress(memoryview(self._buf)[: _PAYLOAD.size + n].cast("B"), level)
        out = _EXTERNAL.pack(COMPRESSION_COOKIE_BASE | 0x10, len(comp)) + comp
        return base64.b64encode(out) if b64 else out


def to_hdrh(blob: bytes | str) -> HdrHistogram:
    """hdrh's decode of a histoblob in either form (tests, tools; hdrh is not exact for totals
    >= 2^31 or counts >= 2^62, see test_histoblob.py)."""
    if isinstance(blob, bytes) and blob[:1] == _BINARY_FIRST_BYTE:
        blob = base64.b64encode(blob)
    return HdrHistogram.decode(blob)
