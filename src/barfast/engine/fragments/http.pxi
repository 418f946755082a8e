# http.pxi — incremental HTTP/1.1 response parser: framing of ONE response per init (RFC 9112).
# Never: allocates, touches Python objects (native path), reads past buf[len-1], keeps body bytes
#   beyond the capture the caller gave it (http_resp_capture: the final header block and a bounded
#   body prefix, de-chunked, for response checks).
# Invariants: 0 <= feed() <= len; DONE/ERROR sticky until init; header block <= MAX_HEADER_BYTES.
#
# Design (picohttpparser's model, our own code): the engine owns a fixed receive buffer and calls
# http_resp_feed() on the bytes it has not yet seen consumed. The header block is parsed line by
# line, each line only once it is complete (memchr for LF first, then one validating pass over the
# line); `scan` remembers the first unparsed line and `line_scan` how far memchr already looked, so
# a header block dripped one byte per read is never rescanned from its start (picohttpparser's
# `last_len` idea, taken further: completed lines are validated once and never revisited). Because
# every line is judged only when complete, the verdict (status, error code) does not depend on how
# the bytes were split. Body bytes (Content-Length, chunked data, close-delimited) are counted and
# consumed as they come.
#
# Decisions (each a place where RFC 9112 lets a recipient choose):
# - Bare LF is accepted as the line terminator of the status line, header and trailer field lines
#   (RFC 9112 §2.2 "MAY recognize a single LF"); a bare CR anywhere is an error (§2.2). Chunk
#   framing (the chunk-size line and the CRLF after chunk data) requires CRLF (§7.1), like h11 and
#   llhttp.
# - "HTTP/1.1 200" with no SP and no reason is accepted (servers MUST send the SP, §4; h11 and
#   picohttpparser accept it too). The status code must be 3 digits in 100..999 (§4, RFC 9110 §15).
# - obs-fold is rejected (HTTP_ERR_OBS_FOLD) although §5.2 lets a user agent unfold it: a load
#   target that folds header lines is broken and we want to say so. Whitespace between field name
#   and colon is an error (§5.1).
# - Content-Length: 1*DIGIT, at most 2^63-1; a list "5, 5" and repeated fields with the same value
#   are accepted (RFC 9110 §8.6 allows either accepting or rejecting), different values are an
#   error.
# - Both Transfer-Encoding and Content-Length -> error, for every status (RFC 9112 §6.2 "MUST NOT
#   send", §6.3 item 3 "ought to be handled as an error"); Transfer-Encoding in an HTTP/1.0
#   response -> error (§6.1 "treat the message as if the framing is faulty"); "chunked" twice ->
#   error (§6.1).
# - Transfer-Encoding whose final coding is not chunked -> body delimited by close (§6.3 item 4).
# - HTTP/1.0 responses keep the connection only with "Connection: keep-alive" (§9.3); "close"
#   always wins; a close-delimited body always ends the connection.
# - 1xx interim responses are parsed (headers validated), counted and skipped; 101 is an error
#   (HTTP_ERR_UPGRADE: the engine never asks to switch protocols). HEAD, 204 and 304 have no body
#   (§6.3 item 1); the parser is told about HEAD at init.
#
# Head memo (http_resp_feed_memo): a load test reads the same header block over and over (only a
# Date line changes, once a second). The engine keeps the last header block it parsed in full with
# its outcome; a new response whose first bytes equal that block byte for byte (memcmp) takes the
# outcome without parsing it again. That is exact: the parse of a header block is a function of its
# bytes and of head_request (both compared), and the block ends with its own blank line, so equal
# bytes end the block at the same place. Only error-free blocks parsed from their first byte in one
# call are memorised; anything else is parsed as before.

from libc.string cimport memchr, memcpy, memset, memcmp
from libc.stdlib cimport malloc, free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef extern from "<assert.h>" nogil:
    void http_assert "assert" (int)  # active only in the BARFAST_DEBUG=1 build (-UNDEBUG)

cdef enum:
    HTTP_MAX_HEADER_BYTES = 8192      # one header block: status line + fields + blank line
    HTTP_MAX_CHUNK_LINE_BYTES = 4096  # one chunk-size line incl. extensions and CRLF
    HTTP_MAX_TRAILER_BYTES = 8192     # the whole trailer section incl. the final blank line
    HTTP_MEMO_MAX = 1024              # longest header block the memo keeps

# Parser states (p.state). Zero-initialised memory is HTTP_HEAD with head_request = 0.
cdef enum:
    HTTP_HEAD = 0            # reading a header block (status line + fields)
    HTTP_BODY_LENGTH = 1     # Content-Length body: p.remaining bytes left
    HTTP_BODY_CLOSE = 2      # body delimited by connection close: until http_resp_eof()
    HTTP_CHUNK_SIZE = 3      # chunked: hex digits of the chunk size
    HTTP_CHUNK_SIZE_WS = 4   # chunked: BWS after the size, before ';' or CR
    HTTP_CHUNK_EXT = 5       # chunked: skipping chunk extensions up to CR
    HTTP_CHUNK_SIZE_LF = 6   # chunked: LF ending the size line
    HTTP_CHUNK_DATA = 7      # chunked: p.remaining data bytes left in this chunk
    HTTP_CHUNK_DATA_CR = 8   # chunked: CR after chunk data
    HTTP_CHUNK_DATA_LF = 9   # chunked: LF after chunk data
    HTTP_TRAILER_START = 10  # chunked: at the start of a trailer line (or the final blank line)
    HTTP_TRAILER_LINE = 11   # chunked: inside a trailer field line (skipped)
    HTTP_TRAILER_END_LF = 12  # chunked: LF of the final blank line
    HTTP_DONE = 13           # response complete: status, keep_alive, body_bytes are final
    HTTP_ERROR = 14          # malformed or cut short: p.error says why

# Error codes (p.error). All but HTTP_ERR_CLOSED mean a malformed response (BF_ERR_PARSE).
cdef enum:
    HTTP_ERR_NONE = 0
    HTTP_ERR_BAD_STATUS_LINE = 1     # not "HTTP/d.d SSS[ reason]", status < 100, CTL in reason
    HTTP_ERR_BAD_VERSION = 2         # major version other than 1
    HTTP_ERR_BAD_HEADER = 3          # bad name, whitespace before colon, no colon, CTL in value
    HTTP_ERR_OBS_FOLD = 4            # field line starting with SP/HTAB (§5.2)
    HTTP_ERR_TOO_LARGE = 5           # header block longer than HTTP_MAX_HEADER_BYTES
    HTTP_ERR_BAD_LENGTH = 6          # Content-Length not 1*DIGIT (or bad list)
    HTTP_ERR_LENGTH_OVERFLOW = 7     # Content-Length > 2^63-1
    HTTP_ERR_CONFLICTING_LENGTH = 8  # Content-Length values differ
    HTTP_ERR_TE_AND_LENGTH = 9       # both Transfer-Encoding and Content-Length
    HTTP_ERR_BAD_TE = 10             # empty TE, chunked twice, or TE in an HTTP/1.0 response
    HTTP_ERR_BAD_CHUNK_SIZE = 11     # no hex digit, bad char, or no CRLF after the size line
    HTTP_ERR_CHUNK_OVERFLOW = 12     # chunk size >= 2^64
    HTTP_ERR_BAD_CHUNK_EXT = 13      # CTL inside chunk extensions
    HTTP_ERR_CHUNK_LINE_TOO_LARGE = 14  # chunk-size line longer than HTTP_MAX_CHUNK_LINE_BYTES
    HTTP_ERR_BAD_CHUNK_END = 15      # chunk data not followed by CRLF
    HTTP_ERR_BAD_TRAILER = 16        # bare CR ending the trailer section
    HTTP_ERR_TRAILER_TOO_LARGE = 17  # trailer section longer than HTTP_MAX_TRAILER_BYTES
    HTTP_ERR_UPGRADE = 18            # 101 Switching Protocols (unsupported)
    HTTP_ERR_CLOSED = 19             # peer closed before the response was complete (BF_ERR_CLOSED)
    HTTP_ERR__COUNT = 20

# p.flags: what the current header block said about framing (reset for each block).
cdef enum:
    HTTP_F_STATUS = 0x01         # status line parsed
    HTTP_F_CL = 0x02             # Content-Length seen (p.content_length valid)
    HTTP_F_TE = 0x04             # Transfer-Encoding seen
    HTTP_F_TE_CHUNKED = 0x08     # "chunked" appeared among the codings
    HTTP_F_TE_LAST_CHUNKED = 0x10  # ... and is the final coding so far
    HTTP_F_CONN_CLOSE = 0x20     # Connection: close
    HTTP_F_CONN_KEEP_ALIVE = 0x40  # Connection: keep-alive

ctypedef struct http_resp_t:
    # public (read after feed returns)
    int state            # HTTP_* state above
    int error            # HTTP_ERR_* when state == HTTP_ERROR
    int status           # code of the last status line parsed (the final one once HTTP_DONE)
    int keep_alive       # 1: the connection may carry the next request after HTTP_DONE
    int minor_version    # the x of HTTP/1.x of the last status line
    int interim_count    # 1xx responses skipped before the final one
    int head_request     # set by http_resp_init: response to HEAD has no body
    uint32_t flags       # HTTP_F_* (private)
    uint64_t body_bytes  # payload bytes (chunk data only, not chunk framing or trailers)
    uint64_t header_bytes  # bytes of all header blocks (interim ones included)
    uint64_t wire_bytes  # every byte consumed for this response (= sum of feed() returns)
    # private
    uint64_t remaining       # Content-Length bytes left, or the chunk size being parsed / left
    uint64_t content_length  # value of Content-Length (valid with HTTP_F_CL)
    uint32_t scan        # header block: offset of the first unparsed line (from the block start)
    uint32_t line_scan   # header block: no LF in [scan, line_scan)
    uint32_t aux         # chunk-size line bytes, or trailer section bytes, so far
    # capture (kept across http_resp_init; cap NULL: none): the final response's header block at
    # cap[0:head_len] and the first cap_max body bytes (payload, de-chunked) at
    # cap[HTTP_MAX_HEADER_BYTES:][0:body_len]; body_trunc when the body had more
    char *cap
    uint32_t cap_max
    uint32_t head_len
    uint32_t body_len
    bint body_trunc


ctypedef struct http_memo_t:
    # The last header block parsed in full (see "Head memo" above); len 0: empty.
    uint32_t len
    int head_request
    int status
    int minor_version
    uint32_t flags
    uint64_t content_length
    uint64_t hits            # responses whose head came from the memo (stats)
    char block[HTTP_MEMO_MAX]


# Character classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar/obs-text) and hex values, filled
# once at import: one table lookup per byte instead of chains of comparisons.
cdef enum:
    HTTP_CT_TCHAR = 0x01   # token character
    HTTP_CT_VALUE = 0x02   # allowed in a field value / reason phrase: VCHAR, obs-text, SP, HTAB
    HTTP_CT_OWS = 0x04     # SP / HTAB

cdef uint8_t http_ctype[256]
cdef uint8_t http_hexval[256]   # 0..15, or 0xFF for a non-hex byte


cdef void http_init_tables() noexcept nogil:
    cdef int c
    cdef const char *tchar_punct = b"!#$%&'*+-.^_`|~"
    memset(http_ctype, 0, sizeof(http_ctype))
    memset(http_hexval, 0xFF, sizeof(http_hexval))
    for c in range(256):
        if (c >= 0x21 and c <= 0x7E) or c >= 0x80 or c == 0x20 or c == 0x09:
            http_ctype[c] |= HTTP_CT_VALUE
        if (c >= ord('0') and c <= ord('9')) or (c >= ord('a') and c <= ord('z')) or \
                (c >= ord('A') and c <= ord('Z')):
            http_ctype[c] |= HTTP_CT_TCHAR
        if c >= ord('0') and c <= ord('9'):
            http_hexval[c] = c - ord('0')
        elif c >= ord('a') and c <= ord('f'):
            http_hexval[c] = c - ord('a') + 10
        elif c >= ord('A') and c <= ord('F'):
            http_hexval[c] = c - ord('A') + 10
    while tchar_punct[0] != 0:
        http_ctype[<uint8_t>tchar_punct[0]] |= HTTP_CT_TCHAR
        tchar_punct += 1
    http_ctype[0x20] |= HTTP_CT_OWS
    http_ctype[0x09] |= HTTP_CT_OWS

http_init_tables()


cdef void http_resp_init(http_resp_t *p, bint head_request) noexcept nogil:
    """Reset for the next response on this connection (also after HTTP_DONE for a pipelined one).
    The capture (http_resp_capture) stays: a parser starts zeroed (calloc/memset) before its first
    init."""
    cdef char *cap = p.cap
    cdef uint32_t cap_max = p.cap_max
    memset(p, 0, sizeof(http_resp_t))
    p.head_request = head_request
    p.cap = cap
    p.cap_max = cap_max


cdef void http_resp_capture(http_resp_t *p, char *buf, uint32_t body_max) noexcept nogil:
    """Keep the final header block and up to body_max body bytes of each response in buf (at
    least HTTP_MAX_HEADER_BYTES + body_max bytes; NULL: keep nothing) from now on."""
    p.cap = buf
    p.cap_max = body_max


cdef inline void http_keep_body(http_resp_t *p, const char *s, size_t n) noexcept nogil:
    cdef size_t room
    if p.cap == NULL or n == 0:
        return
    room = p.cap_max - p.body_len
    if n > room:
        n = room
        p.body_trunc = 1
    memcpy(p.cap + HTTP_MAX_HEADER_BYTES + p.body_len, s, n)
    p.body_len += <uint32_t>n


cdef inline bint http_resp_started(const http_resp_t *p) noexcept nogil:
    """1 if any byte of this response has been seen (consumed, or scanned in an incomplete head)."""
    return p.wire_bytes != 0 or p.line_scan != 0


cdef const char *http_error_names[HTTP_ERR__COUNT]
http_error_names[HTTP_ERR_NONE] = b"none"
http_error_names[HTTP_ERR_BAD_STATUS_LINE] = b"bad_status_line"
http_error_names[HTTP_ERR_BAD_VERSION] = b"bad_version"
http_error_names[HTTP_ERR_BAD_HEADER] = b"bad_header"
http_error_names[HTTP_ERR_OBS_FOLD] = b"obs_fold"
http_error_names[HTTP_ERR_TOO_LARGE] = b"too_large"
http_error_names[HTTP_ERR_BAD_LENGTH] = b"bad_length"
http_error_names[HTTP_ERR_LENGTH_OVERFLOW] = b"length_overflow"
http_error_names[HTTP_ERR_CONFLICTING_LENGTH] = b"conflicting_length"
http_error_names[HTTP_ERR_TE_AND_LENGTH] = b"te_and_length"
http_error_names[HTTP_ERR_BAD_TE] = b"bad_te"
http_error_names[HTTP_ERR_BAD_CHUNK_SIZE] = b"bad_chunk_size"
http_error_names[HTTP_ERR_CHUNK_OVERFLOW] = b"chunk_overflow"
http_error_names[HTTP_ERR_BAD_CHUNK_EXT] = b"bad_chunk_ext"
http_error_names[HTTP_ERR_CHUNK_LINE_TOO_LARGE] = b"chunk_line_too_large"
http_error_names[HTTP_ERR_BAD_CHUNK_END] = b"bad_chunk_end"
http_error_names[HTTP_ERR_BAD_TRAILER] = b"bad_trailer"
http_error_names[HTTP_ERR_TRAILER_TOO_LARGE] = b"trailer_too_large"
http_error_names[HTTP_ERR_UPGRADE] = b"upgrade"
http_error_names[HTTP_ERR_CLOSED] = b"closed"


cdef const char *http_error_name(int code) noexcept nogil:
    """Short stable name of an HTTP_ERR_* code (used in reports and by the Python test hook)."""
    if code < 0 or code >= HTTP_ERR__COUNT:
        return "unknown"
    return http_error_names[code]


cdef inline int http_error_kind(int code) noexcept nogil:
    """Sample-record error kind of an HTTP_ERR_* code: cut short -> BF_ERR_CLOSED, else parse."""
    return BF_ERR_CLOSED if code == HTTP_ERR_CLOSED else BF_ERR_PARSE


cdef inline Py_ssize_t http_fail(http_resp_t *p, int code) noexcept nogil:
    p.state = HTTP_ERROR
    p.error = code
    return -1


cdef inline bint http_value_ok(const char *s, const char *e) noexcept nogil:
    """Every byte of [s, e) is VCHAR, obs-text, SP or HTAB (RFC 9110 §5.5): no CTL/DEL/CR/LF/NUL.

    Eight bytes per step (SWAR): a word with no byte < 0x20 and none == 0x7F is fine as a whole;
    only words holding such a byte (usually an HTAB) are looked at byte by byte.
    """
    cdef uint64_t w, x
    cdef int i
    while e - s >= 8:
        memcpy(&w, s, 8)
        x = w ^ 0x7F7F7F7F7F7F7F7FULL
        # "has a byte < n" for n = 0x20 on w and n = 1 on w ^ 0x7F.. (Bit Twiddling Hacks, hasless)
        if (((w - 0x2020202020202020ULL) & ~w) | ((x - 0x0101010101010101ULL) & ~x)) \
                & 0x8080808080808080ULL:
            for i in range(8):
                if not (http_ctype[<uint8_t>s[i]] & HTTP_CT_VALUE):
                    return 0
        s += 8
    while s < e:
        if not (http_ctype[<uint8_t>s[0]] & HTTP_CT_VALUE):
            return 0
        s += 1
    return 1


cdef inline bint http_lower_eq(const char *s, const char *lit, size_t n) noexcept nogil:
    """Case-insensitive compare of s[0:n] with the lowercase literal `lit` (letters and '-' only).

    `c | 0x20` maps exactly the two cases of a letter onto the lowercase one and leaves '-' alone;
    the only other byte that could map onto '-' is CR, which the caller has already rejected.
    """
    cdef size_t i
    for i in range(n):
        if (<uint8_t>s[i] | 0x20) != <uint8_t>lit[i]:
            return 0
    return 1


cdef inline const char *http_skip_ows(const char *s, const char *e) noexcept nogil:
    while s < e and (s[0] == c' ' or s[0] == c'\t'):
        s += 1
    return s


cdef inline const char *http_trim_ows(const char *s, const char *e) noexcept nogil:
    while e > s and ((e - 1)[0] == c' ' or (e - 1)[0] == c'\t'):
        e -= 1
    return e


cdef int http_on_content_length(http_resp_t *p, const char *s, const char *e) noexcept nogil:
    """Content-Length = 1*DIGIT (RFC 9110 §8.6); a list of equal values is accepted (§8.6 MAY)."""
    cdef uint64_t v
    cdef const char *elem_end
    cdef uint8_t d
    while True:
        s = http_skip_ows(s, e)
        if s == e or not (s[0] >= c'0' and s[0] <= c'9'):
            return HTTP_ERR_BAD_LENGTH
        v = 0
        while s < e and s[0] >= c'0' and s[0] <= c'9':
            d = <uint8_t>(s[0] - c'0')
            if v > (<uint64_t>0x7FFFFFFFFFFFFFFFULL - d) // 10:
                return HTTP_ERR_LENGTH_OVERFLOW
            v = v * 10 + d
            s += 1
        if (p.flags & HTTP_F_CL) and v != p.content_length:
            return HTTP_ERR_CONFLICTING_LENGTH
        p.flags |= HTTP_F_CL
        p.content_length = v
        s = http_skip_ows(s, e)
        if s == e:
            return 0
        if s[0] != c',':
            return HTTP_ERR_BAD_LENGTH
        s += 1


cdef int http_on_transfer_encoding(http_resp_t *p, const char *s, const char *e) noexcept nogil:
    """transfer-coding list (RFC 9112 §6.1); codings of repeated fields concatenate (RFC 9110 §5.3).

    Only whether the final coding is "chunked" matters (§6.3 item 4); "chunked" twice is an error.
    """
    cdef const char *c
    cdef const char *ee
    cdef bint any_coding = 0
    p.flags |= HTTP_F_TE
    while s < e:
        c = <const char *>memchr(s, c',', <size_t>(e - s))
        if c == NULL:
            c = e
        ee = http_trim_ows(s, c)
        s = http_skip_ows(s, ee)
        if s < ee:   # empty list elements are ignored (RFC 9110 §5.6.1)
            any_coding = 1
            if ee - s == 7 and http_lower_eq(s, b"chunked", 7):
                if p.flags & HTTP_F_TE_CHUNKED:
                    return HTTP_ERR_BAD_TE
                p.flags |= HTTP_F_TE_CHUNKED | HTTP_F_TE_LAST_CHUNKED
            else:
                p.flags &= ~(<uint32_t>HTTP_F_TE_LAST_CHUNKED)
        s = c + 1
    if not any_coding:
        return HTTP_ERR_BAD_TE
    return 0


cdef void http_on_connection(http_resp_t *p, const char *s, const char *e) noexcept nogil:
    """Connection = #connection-option, case-insensitive tokens (RFC 9110 §7.6.1)."""
    cdef const char *c
    cdef const char *ee
    while s < e:
        c = <const char *>memchr(s, c',', <size_t>(e - s))
        if c == NULL:
            c = e
        ee = http_trim_ows(s, c)
        s = http_skip_ows(s, ee)
        if ee - s == 5 and http_lower_eq(s, b"close", 5):
            p.flags |= HTTP_F_CONN_CLOSE
        elif ee - s == 10 and http_lower_eq(s, b"keep-alive", 10):
            p.flags |= HTTP_F_CONN_KEEP_ALIVE
        s = c + 1


cdef int http_parse_status_line(http_resp_t *p, const char *s, const char *e) noexcept nogil:
    """status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4).

    HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (§2.3); status-code = 3DIGIT, 100..999.
    """
    cdef int status
    if e - s < 12 or s[0] != c'H' or s[1] != c'T' or s[2] != c'T' or s[3] != c'P' or s[4] != c'/' \
            or not (s[5] >= c'0' and s[5] <= c'9') or s[6] != c'.' \
            or not (s[7] >= c'0' and s[7] <= c'9') or s[8] != c' ' \
            or not (s[9] >= c'1' and s[9] <= c'9') or not (s[10] >= c'0' and s[10] <= c'9') \
            or not (s[11] >= c'0' and s[11] <= c'9'):
        return HTTP_ERR_BAD_STATUS_LINE
    if s[5] != c'1':
        return HTTP_ERR_BAD_VERSION
    p.minor_version = s[7] - c'0'
    status = (s[9] - c'0') * 100 + (s[10] - c'0') * 10 + (s[11] - c'0')
    if e - s > 12:
        # reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); the client ignores its content (§4)
        if s[12] != c' ' or not http_value_ok(s + 13, e):
            return HTTP_ERR_BAD_STATUS_LINE
    p.status = status
    p.flags |= HTTP_F_STATUS
    return 0


cdef int http_parse_field_line(http_resp_t *p, const char *s, const char *e) noexcept nogil:
    """field-line = field-name ":" OWS field-value OWS (RFC 9112 §5); s < e, terminator excluded.

    Names are tokens; no whitespace before the colon (§5.1); a line starting with SP/HTAB is
    obs-fold (§5.2). Only Content-Length, Transfer-Encoding and Connection are interpreted (length
    checked first).
    """
    cdef const char *n = s
    cdef const char *v
    cdef const char *ve
    cdef size_t nlen
    if http_ctype[<uint8_t>s[0]] & HTTP_CT_OWS:
        return HTTP_ERR_OBS_FOLD
    while n < e and (http_ctype[<uint8_t>n[0]] & HTTP_CT_TCHAR):
        n += 1
    nlen = <size_t>(n - s)
    if n == e or n[0] != c':' or nlen == 0:
        return HTTP_ERR_BAD_HEADER
    v = http_skip_ows(n + 1, e)
    ve = http_trim_ows(v, e)
    if not http_value_ok(v, ve):
        return HTTP_ERR_BAD_HEADER
    if nlen == 14:
        if http_lower_eq(s, b"content-length", 14):
            return http_on_content_length(p, v, ve)
    elif nlen == 17:
        if http_lower_eq(s, b"transfer-encoding", 17):
            return http_on_transfer_encoding(p, v, ve)
    elif nlen == 10:
        if http_lower_eq(s, b"connection", 10):
            http_on_connection(p, v, ve)
    return 0


cdef Py_ssize_t http_head_done(http_resp_t *p, size_t block_len) noexcept nogil:
    """A complete header block: skip it if interim, else decide the body framing (RFC 9112 §6.3)."""
    cdef uint32_t f = p.flags
    cdef int status = p.status
    cdef int ka
    p.header_bytes += block_len
    if status < 200:
        if status == 101:
            return http_fail(p, HTTP_ERR_UPGRADE)
        # interim response (RFC 9110 §15.2): no body; the final response follows on the same bytes
        p.interim_count += 1
        p.flags = 0
        p.scan = 0
        p.line_scan = 0
        p.content_length = 0
        return <Py_ssize_t>block_len
    if (f & HTTP_F_TE) and (f & HTTP_F_CL):
        return http_fail(p, HTTP_ERR_TE_AND_LENGTH)       # §6.2 MUST NOT send, §6.3 item 3
    if (f & HTTP_F_TE) and p.minor_version == 0:
        return http_fail(p, HTTP_ERR_BAD_TE)              # §6.1: faulty framing in HTTP/1.0
    # keep-alive (§9.3): HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"
    ka = (f & HTTP_F_CONN_CLOSE) == 0 and \
        (p.minor_version >= 1 or (f & HTTP_F_CONN_KEEP_ALIVE) != 0)
    if p.head_request or status == 204 or status == 304:
        p.state = HTTP_DONE                                # §6.3 item 1
    elif f & HTTP_F_TE:
        if f & HTTP_F_TE_LAST_CHUNKED:
            p.state = HTTP_CHUNK_SIZE                      # §6.3 item 4, §7.1
            p.remaining = 0
            p.aux = 0
        else:
            p.state = HTTP_BODY_CLOSE                      # §6.3 item 4: read until close
            ka = 0
    elif f & HTTP_F_CL:
        p.remaining = p.content_length                     # §6.3 item 6
        p.state = HTTP_BODY_LENGTH if p.remaining != 0 else HTTP_DONE
    else:
        p.state = HTTP_BODY_CLOSE                          # §6.3 item 8
        ka = 0
    p.keep_alive = ka
    return <Py_ssize_t>block_len


cdef Py_ssize_t http_feed_head(http_resp_t *p, const char *buf, size_t len) noexcept nogil:
    """Parse the complete lines of a header block starting at buf[0].

    Returns the block length once its blank line is parsed (> 0), 0 if more bytes are needed, -1 on
    error. Lines before p.scan were parsed by an earlier call; memchr resumes at p.line_scan.
    """
    cdef size_t pos = p.scan
    cdef size_t lf
    cdef size_t end
    cdef const char *nl
    cdef int err
    http_assert(p.scan <= p.line_scan)   # the caller passes the bytes it kept, then new ones
    http_assert(p.line_scan <= len)
    while True:
        nl = <const char *>memchr(buf + p.line_scan, c'\n', len - p.line_scan)
        if nl == NULL:
            if len >= HTTP_MAX_HEADER_BYTES:
                # the block is at least len + 1 bytes long (its LF is still to come)
                return http_fail(p, HTTP_ERR_TOO_LARGE)
            p.scan = <uint32_t>pos
            p.line_scan = <uint32_t>len
            return 0
        lf = <size_t>(nl - buf)
        if lf + 1 > HTTP_MAX_HEADER_BYTES:
            return http_fail(p, HTTP_ERR_TOO_LARGE)
        end = lf
        if end > pos and buf[end - 1] == c'\r':
            end -= 1                                       # CRLF, or bare LF (§2.2)
        if not (p.flags & HTTP_F_STATUS):
            err = http_parse_status_line(p, buf + pos, buf + end)
        elif end == pos:
            return http_head_done(p, lf + 1)               # the empty line ending the block
        else:
            err = http_parse_field_line(p, buf + pos, buf + end)
        if err != 0:
            return http_fail(p, err)
        pos = lf + 1
        p.scan = <uint32_t>pos
        p.line_scan = <uint32_t>pos


cdef size_t http_feed_chunked(http_resp_t *p, const char *buf, size_t len) noexcept nogil:
    """chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 §7.1); returns bytes used.

    Sizes are hex with overflow checking (§7.1), extensions skipped with a bounded line (§7.1.1),
    trailer fields skipped with a bounded section (§7.1.2). Data is counted, never copied.
    """
    cdef size_t i = 0
    cdef size_t n
    cdef int st = p.state
    cdef uint8_t c
    cdef uint8_t h
    cdef const char *nl
    while i < len:
        if st == HTTP_CHUNK_DATA:
            n = len - i
            if n > p.remaining:
                n = <size_t>p.remaining
            http_keep_body(p, buf + i, n)
            i += n
            p.body_bytes += n
            p.remaining -= n
            if p.remaining == 0:
                st = HTTP_CHUNK_DATA_CR
            continue
        if st == HTTP_TRAILER_LINE:
            nl = <const char *>memchr(buf + i, c'\n', len - i)
            n = <size_t>(nl - (buf + i)) + 1 if nl != NULL else len - i
            if n > <size_t>(HTTP_MAX_TRAILER_BYTES - p.aux):
                http_fail(p, HTTP_ERR_TRAILER_TOO_LARGE)
                return i
            p.aux += <uint32_t>n
            i += n
            if nl != NULL:
                st = HTTP_TRAILER_START
            continue
        c = <uint8_t>buf[i]
        if st <= HTTP_CHUNK_SIZE_LF:
            p.aux += 1
            if p.aux > HTTP_MAX_CHUNK_LINE_BYTES:
                http_fail(p, HTTP_ERR_CHUNK_LINE_TOO_LARGE)
                return i
            if st == HTTP_CHUNK_SIZE:
                h = http_hexval[c]
                if h != 0xFF:
                    if p.remaining >> 60:
                        http_fail(p, HTTP_ERR_CHUNK_OVERFLOW)
                        return i
                    p.remaining = (p.remaining << 4) | h
                elif p.aux == 1:
                    http_fail(p, HTTP_ERR_BAD_CHUNK_SIZE)  # chunk-size = 1*HEXDIG
                    return i
                elif c == c'\r':
                    st = HTTP_CHUNK_SIZE_LF
                elif c == c';':
                    st = HTTP_CHUNK_EXT
                elif c == c' ' or c == c'\t':
                    st = HTTP_CHUNK_SIZE_WS                # BWS before ';' (§7.1.1)
                else:
                    http_fail(p, HTTP_ERR_BAD_CHUNK_SIZE)
                    return i
            elif st == HTTP_CHUNK_SIZE_WS:
                if c == c'\r':
                    st = HTTP_CHUNK_SIZE_LF
                elif c == c';':
                    st = HTTP_CHUNK_EXT
                elif c != c' ' and c != c'\t':
                    http_fail(p, HTTP_ERR_BAD_CHUNK_SIZE)
                    return i
            elif st == HTTP_CHUNK_EXT:
                if c == c'\r':
                    st = HTTP_CHUNK_SIZE_LF
                elif not (http_ctype[c] & HTTP_CT_VALUE):
                    http_fail(p, HTTP_ERR_BAD_CHUNK_EXT)
                    return i
            else:  # HTTP_CHUNK_SIZE_LF
                if c != c'\n':
                    http_fail(p, HTTP_ERR_BAD_CHUNK_SIZE)
                    return i
                p.aux = 0
                st = HTTP_CHUNK_DATA if p.remaining != 0 else HTTP_TRAILER_START
        elif st == HTTP_CHUNK_DATA_CR:
            if c != c'\r':
                http_fail(p, HTTP_ERR_BAD_CHUNK_END)
                return i
            st = HTTP_CHUNK_DATA_LF
        elif st == HTTP_CHUNK_DATA_LF:
            if c != c'\n':
                http_fail(p, HTTP_ERR_BAD_CHUNK_END)
                return i
            st = HTTP_CHUNK_SIZE
        elif st == HTTP_TRAILER_START:
            p.aux += 1
            if p.aux > HTTP_MAX_TRAILER_BYTES:
                http_fail(p, HTTP_ERR_TRAILER_TOO_LARGE)
                return i
            if c == c'\r':
                st = HTTP_TRAILER_END_LF
            elif c == c'\n':
                st = HTTP_DONE                             # bare LF blank line (§2.2)
                i += 1
                break
            else:
                st = HTTP_TRAILER_LINE
        else:  # HTTP_TRAILER_END_LF
            if c != c'\n':
                http_fail(p, HTTP_ERR_BAD_TRAILER)
                return i
            st = HTTP_DONE
            i += 1
            break
        i += 1
    p.state = st
    return i


cdef Py_ssize_t http_head_memo(http_resp_t *p, http_memo_t *m, const char *buf,
                               size_t len) noexcept nogil:
    """The header block at buf[0:len), from the memo if its bytes are the memorised block, else
    parsed (and memorised when it qualifies). Returns what http_feed_head returns."""
    cdef Py_ssize_t r
    cdef bint fresh = p.scan == 0 and p.flags == 0
    if (fresh and m.len != 0 and len >= m.len and m.head_request == p.head_request
            and memcmp(buf, m.block, m.len) == 0):
        p.status = m.status
        p.minor_version = m.minor_version
        p.flags = m.flags
        p.content_length = m.content_length
        m.hits += 1
        return http_head_done(p, m.len)
    r = http_feed_head(p, buf, len)
    if fresh and r > 0 and <size_t>r <= HTTP_MEMO_MAX:
        # A head parsed from its first byte. For a final response http_head_done changed none of
        # status, minor_version, flags or content_length; for a 1xx it reset flags and
        # content_length, which a hit's http_head_done resets again (the 1xx path reads neither).
        m.len = <uint32_t>r
        m.head_request = p.head_request
        m.status = p.status
        m.minor_version = p.minor_version
        m.flags = p.flags
        m.content_length = p.content_length
        memcpy(m.block, buf, <size_t>r)
    return r


cdef inline Py_ssize_t http_resp_feed(http_resp_t *p, const char *buf, size_t len) noexcept nogil:
    """Consume bytes of ONE response from buf[0:len); returns the count consumed (0..len).

    Then check p.state: HTTP_DONE (complete; unconsumed bytes start the next response), HTTP_ERROR
    (p.error), otherwise more bytes are needed: keep the unconsumed bytes (an incomplete header
    block, at most HTTP_MAX_HEADER_BYTES) first in the next call's buffer and append new reads.
    """
    return http_resp_feed_memo(p, NULL, buf, len)


cdef Py_ssize_t http_resp_feed_memo(http_resp_t *p, http_memo_t *memo, const char *buf,
                                    size_t len) noexcept nogil:
    """http_resp_feed with a head memo (NULL: none); the results are the same either way."""
    cdef size_t off = 0
    cdef size_t n
    cdef Py_ssize_t r
    cdef int st
    while off < len:
        st = p.state
        if st == HTTP_HEAD:
            if memo != NULL:
                r = http_head_memo(p, memo, buf + off, len - off)
            else:
                r = http_feed_head(p, buf + off, len - off)
            if r <= 0:
                break
            if p.cap != NULL and p.state != HTTP_HEAD and p.state != HTTP_ERROR:
                memcpy(p.cap, buf + off, <size_t>r)    # the final response's block (<= the max)
                p.head_len = <uint32_t>r
            off += <size_t>r
        elif st == HTTP_BODY_LENGTH:
            n = len - off
            if n > p.remaining:
                n = <size_t>p.remaining
            http_keep_body(p, buf + off, n)
            off += n
            p.body_bytes += n
            p.remaining -= n
            if p.remaining == 0:
                p.state = HTTP_DONE
        elif st == HTTP_BODY_CLOSE:
            http_keep_body(p, buf + off, len - off)
            p.body_bytes += len - off
            off = len
        elif st < HTTP_DONE:
            off += http_feed_chunked(p, buf + off, len - off)
        else:
            break                                          # HTTP_DONE / HTTP_ERROR are sticky
    http_assert(off <= len)
    p.wire_bytes += off
    return <Py_ssize_t>off


cdef int http_resp_eof(http_resp_t *p) noexcept nogil:
    """The peer closed the connection: 1 if that completes the response (a close-delimited body,
    §6.3 item 8, or it was already done), 0 if it was cut short (-> HTTP_ERROR, HTTP_ERR_CLOSED)."""
    if p.state == HTTP_BODY_CLOSE:
        p.state = HTTP_DONE                                # keep_alive is already 0
        return 1
    if p.state == HTTP_DONE:
        return 1
    if p.state != HTTP_ERROR:
        http_fail(p, HTTP_ERR_CLOSED)
    return 0


# ---- Python test hook (not used by the engine) ---------------------------------------------

HTTP_LIMITS = {
    "max_header_bytes": HTTP_MAX_HEADER_BYTES,
    "max_chunk_line_bytes": HTTP_MAX_CHUNK_LINE_BYTES,
    "max_trailer_bytes": HTTP_MAX_TRAILER_BYTES,
}

HTTP_ERRORS = tuple(http_error_name(i).decode() for i in range(HTTP_ERR__COUNT))


cdef dict _http_result(const http_resp_t *p, bint eof_complete):
    kept = {}
    if p.cap != NULL:
        kept = {
            "head": p.cap[:p.head_len],
            "body": p.cap[HTTP_MAX_HEADER_BYTES:HTTP_MAX_HEADER_BYTES + p.body_len],
            "body_truncated": bool(p.body_trunc),
        }
    return {
        **kept,
        "status": p.status,
        "keep_alive": bool(p.keep_alive),
        "body_bytes": p.body_bytes,
        "interim": p.interim_count,
        "header_bytes": p.header_bytes,
        "wire_bytes": p.wire_bytes,
        "eof_complete": bool(eof_complete),
    }


def parse_responses(data, splits=None, bint head=False, bint memo=False, keep=None):
    """Feed `data` in pieces cut at `splits` with the engine's buffer discipline; see _core.pyi."""
    cdef bytes d = bytes(data)
    cdef const char *src = d
    cdef Py_ssize_t total = len(d)
    cdef Py_ssize_t start = 0, end = 0, prev = 0, n, again, cut
    cdef http_resp_t p
    cdef http_memo_t m
    cdef http_memo_t *mp = &m if memo else NULL
    cdef char *buf
    cdef char *cap = NULL
    memset(&m, 0, sizeof(m))
    cuts = sorted({int(s) for s in (splits or ())})
    if cuts and (min(cuts) < 0 or max(cuts) > total):
        raise ValueError(f"split points must be within 0..{total}")
    cuts = [c for c in cuts if 0 < c < total] + [total]
    results = []
    # Capacity for all of `data`; the bytes not yet "received" are LFs, so a parser reading past
    # `len` would see line ends that are not there and disagree with the unsplit parse.
    buf = <char *>malloc(<size_t>total + 1)
    if buf == NULL:
        raise MemoryError()
    memset(buf, c'\n', <size_t>total + 1)
    memset(&p, 0, sizeof(p))
    if keep is not None:
        if not 0 <= keep <= 1 << 24:
            free(buf)
            raise ValueError("keep: 0 to 16 MiB of body")
        cap = <char *>malloc(HTTP_MAX_HEADER_BYTES + <size_t>keep)
        if cap == NULL:
            free(buf)
            raise MemoryError()
        http_resp_capture(&p, cap, <uint32_t>keep)
    http_resp_init(&p, head)
    try:
        for cut in cuts:
            memcpy(buf + end, src + prev, <size_t>(cut - prev))
            end += cut - prev
            prev = cut
            while start < end:
                n = http_resp_feed_memo(&p, mp, buf + start, <size_t>(end - start))
                if n < 0 or n > end - start:
                    raise AssertionError(f"feed consumed {n} of {end - start} bytes")
                start += n
                if p.state == HTTP_DONE:
                    results.append(_http_result(&p, False))
                    http_resp_init(&p, head)
                elif p.state == HTTP_ERROR:
                    results.append({"error": http_error_name(p.error).decode()})
                    return results
                else:
                    # need more: the same bytes again must not make progress (engine contract)
                    again = http_resp_feed_memo(&p, mp, buf + start, <size_t>(end - start))
                    if again != 0 or p.state == HTTP_DONE or p.state == HTTP_ERROR:
                        raise AssertionError("feed made progress on bytes it left unconsumed")
                    break
        if start < end or http_resp_started(&p):
            if http_resp_eof(&p):
                results.append(_http_result(&p, True))
            else:
                results.append({"error": http_error_name(p.error).decode()})
        return results
    finally:
        free(buf)
        free(cap)


def http_parse_bench(data, Py_ssize_t iterations, bint head=False, bint memo=False):
    """Parse `data` (complete responses, back to back) `iterations` times without the GIL.

    Returns (responses parsed per pass, mean ns per pass). Feeds the whole buffer at once, the
    engine's common case, to measure the parser alone.
    """
    cdef bytes d = bytes(data)
    cdef const char *src = d
    cdef size_t total = <size_t>len(d)
    cdef size_t off
    cdef Py_ssize_t i, n, count = 0
    cdef http_resp_t p
    cdef http_memo_t m
    cdef http_memo_t *mp = &m if memo else NULL
    cdef timespec t0, t1
    memset(&m, 0, sizeof(m))
    memset(&p, 0, sizeof(p))   # http_resp_init keeps the capture fields: start from none
    if iterations <= 0:
        raise ValueError("iterations must be positive")
    with nogil:
        clock_gettime(CLOCK_MONOTONIC, &t0)
        for i in range(iterations):
            off = 0
            count = 0
            while off < total:
                http_resp_init(&p, head)
                n = http_resp_feed_memo(&p, mp, src + off, total - off)
                if p.state != HTTP_DONE:
                    break
                off += <size_t>n
                count += 1
        clock_gettime(CLOCK_MONOTONIC, &t1)
    if off != total:
        raise ValueError("data must be complete, well-formed responses")
    return count, ((t1.tv_sec - t0.tv_sec) * 1_000_000_000 + (t1.tv_nsec - t0.tv_nsec)) / iterations
