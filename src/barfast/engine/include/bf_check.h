/* bf_check.h — response checks evaluated in the native loop: a header lookup, a body substring, a
 * JSON path walker and JSON literal equality.
 * Owns: the meaning of a check on the bytes the parser captured (http_resp_capture: the final
 *   header block and a bounded body prefix, flagged when the body was longer).
 * Never: allocates, recurses, depends on Python.h, reads outside [p, p + len) of any argument or
 *   needs a NUL terminator; bad input (hostile servers, fuzzers) gets a result code, never UB.
 * Invariants: every function returns one of its documented codes for any bytes; every span it hands
 *   out lies inside the buffer it was given; work is linear in the input, except bf_body_contains
 *   (see there).
 *
 * bf_header_find(block, len, name, nlen, &val, &vlen) -> 1 found / 0 not
 *   The first field line of the header block whose name equals `name` (ASCII case-insensitive,
 *   RFC 9110 §5.1); *val, *vlen its value without surrounding OWS (SP/HTAB, RFC 9112 §5.1), else
 *   NULL/0. The first line (status line) is skipped; lines end at LF with an optional CR before it
 *   (RFC 9112 §2.2); the first empty line ends the block; a line without ':' is skipped, and a name
 *   with whitespace before the colon never matches. An empty `name` never matches.
 *
 * bf_body_contains(body, blen, needle, nlen) -> 1 / 0
 *   memmem semantics: 1 if needle occurs in body; an empty needle always occurs. Worst case
 *   O(blen * nlen) (memchr for the first byte, then memcmp): both are bounded, the body by the
 *   capture size, the needle by the scenario.
 *
 * bf_json_get(body, blen, path, plen, truncated, &out) -> BF_JSON_FOUND .. BF_JSON_TRUNCATED
 *   Walks the JSON text (RFC 8259) in body along `path`: segments split at '.', so keys holding a
 *   '.' cannot be named; plen 0 names the whole document. In an object a segment matches a key
 *   whose decoded bytes (escapes undone, \uXXXX and surrogate pairs to UTF-8) equal the segment;
 *   the first matching member wins (RFC 8259 §4 leaves duplicate names to the receiver). In an
 *   array a segment "0" or [1-9][0-9]* is an index (RFC 6901 §4's array-index); any other segment
 *   is MISSING there, as is any segment on a scalar.
 *   What is validated: everything the walker reads, i.e. the document up to the end of the value
 *   found (or of the container where the path ended) including every skipped value in full
 *   (strings with their escapes, numbers, literals, nested containers); bytes after that are not
 *   read, except the one byte after a number or literal, which must be a delimiter (WS , ] }).
 *   Bytes >= 0x80 inside strings are not checked for well-formed UTF-8. A UTF-8 BOM is skipped
 *   (RFC 8259 §8.1 MAY).
 *   FOUND: out->type is the value's BF_JSON_* type, [out->ptr, out->ptr + out->len) its raw text
 *   (a string with its quotes). MISSING: the path does not exist. INVALID: not JSON where it looked.
 *   TOO_DEEP: more than BF_JSON_MAX_DEPTH containers nested along what it read. TRUNCATED: the text
 *   ended before an answer and the caller said the body was cut (truncated != 0); the same end
 *   without the flag is INVALID. A number or literal that reaches the end of a truncated body is
 *   TRUNCATED (more digits may follow; the delimiter it needs is not seen). On anything but FOUND, out is {BF_JSON_NONE, NULL, 0}.
 *
 * bf_json_equals(&value, expected, elen) -> 1 equal / 0 not
 *   `value` from bf_json_get (FOUND); `expected` one JSON value as text, surrounding JSON whitespace
 *   allowed (the scenario compiler writes canonical JSON). Types must agree (true is not 1).
 *   Strings: equal after decoding escapes on both sides (bytewise on the decoded UTF-8). Numbers:
 *   exact decimal equality of the written values, so 1 == 1.0 == 1e0 == 10e-1, -0 == 0, integers of
 *   any size are exact; no rounding to binary floating point, so 0.1 != 0.10000000000000001 (both
 *   the same double); an exponent of more than 15 digits compares the two texts bytewise.
 *   true/false/null: by type. Objects and arrays: the raw spans byte for byte (formatting and member
 *   order count). An expected text that is not one valid JSON value of that type is never equal.
 */
#ifndef BF_CHECK_H
#define BF_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- headers ------------------------------------------------------------------------------ */

static inline unsigned char bf_check_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static inline int bf_header_find(const char *block, size_t len, const char *name, size_t nlen,
                                 const char **val, size_t *vlen) {
    const char *p, *end, *nl, *le, *next, *v;
    size_t i;
    int first = 1;
    *val = NULL;
    *vlen = 0;
    if (nlen == 0 || len == 0)
        return 0;
    p = block;
    end = block + len;
    while (p < end) {
        nl = (const char *)memchr(p, '\n', (size_t)(end - p));
        le = nl != NULL ? nl : end;
        next = nl != NULL ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (first) {
            first = 0;                                /* the status line */
        } else if (le == p) {
            return 0;                                 /* the blank line ending the block */
        } else if ((size_t)(le - p) > nlen && p[nlen] == ':') {
            for (i = 0; i < nlen; i++)
                if (bf_check_lower((unsigned char)p[i]) != bf_check_lower((unsigned char)name[i]))
                    break;
            if (i == nlen) {
                v = p + nlen + 1;
                while (v < le && (*v == ' ' || *v == '\t'))
                    v++;
                while (le > v && (le[-1] == ' ' || le[-1] == '\t'))
                    le--;
                *val = v;
                *vlen = (size_t)(le - v);
                return 1;
            }
        }
        p = next;
    }
    return 0;
}

/* ---- body ------------------------------------------------------------------------------------ */

static inline int bf_body_contains(const char *body, size_t blen, const char *needle, size_t nlen) {
    const char *p, *last, *hit;
    if (nlen == 0)
        return 1;
    if (nlen > blen)
        return 0;
    p = body;
    last = body + (blen - nlen);                      /* the last place a match can start */
    while (p <= last) {
        hit = (const char *)memchr(p, (unsigned char)needle[0], (size_t)(last - p) + 1);
        if (hit == NULL)
            return 0;
        if (memcmp(hit + 1, needle + 1, nlen - 1) == 0)
            return 1;
        p = hit + 1;
    }
    return 0;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

enum bf_json_code_e {
    BF_JSON_FOUND = 0,
    BF_JSON_MISSING = 1,
    BF_JSON_INVALID = 2,
    BF_JSON_TOO_DEEP = 3,
    BF_JSON_TRUNCATED = 4
};

enum bf_json_type_e {
    BF_JSON_NONE = 0,
    BF_JSON_STRING = 1,
    BF_JSON_NUMBER = 2,
    BF_JSON_TRUE = 3,
    BF_JSON_FALSE = 4,
    BF_JSON_NULL = 5,
    BF_JSON_OBJECT = 6,
    BF_JSON_ARRAY = 7
};

#define BF_JSON_MAX_DEPTH 64   /* containers open at once; the skip stack is one uint64_t */

typedef struct bf_json_value_s {
    int type;                  /* BF_JSON_* type, BF_JSON_NONE unless FOUND */
    const char *ptr;           /* raw text of the value inside the body */
    size_t len;
} bf_json_value_t;

static inline int bf_json_eof(int truncated) {
    return truncated ? BF_JSON_TRUNCATED : BF_JSON_INVALID;
}

static inline const char *bf_json_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static inline int bf_json_hexval(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c = bf_check_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte after a number or literal: the end of the text, whitespace, or what closes or separates
 * values; anything else ("truex", "01") is not JSON. */
static inline int bf_json_delim(const char *p, const char *e) {
    return p == e || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',' ||
           *p == ']' || *p == '}';
}

/* string = quotation-mark *char quotation-mark (RFC 8259 §7); *pp at the opening quote, after the
 * closing one on success. */
static inline int bf_json_string(const char **pp, const char *e, int truncated) {
    const char *p = *pp + 1;
    int k;
    while (p < e) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *pp = p + 1;
            return BF_JSON_FOUND;
        }
        if (c < 0x20)
            return BF_JSON_INVALID;                   /* control characters must be escaped */
        p++;
        if (c != '\\')
            continue;
        if (p == e)
            break;
        switch (*p++) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            break;
        case 'u':
            for (k = 0; k < 4; k++, p++) {
                if (p == e)
                    return bf_json_eof(truncated);
                if (bf_json_hexval((unsigned char)*p) < 0)
                    return BF_JSON_INVALID;
            }
            break;
        default:
            return BF_JSON_INVALID;
        }
    }
    return bf_json_eof(truncated);
}

static inline int bf_json_digit(const char *p, const char *e) {
    return p < e && *p >= '0' && *p <= '9';
}

/* number = [ minus ] int [ frac ] [ exp ] (RFC 8259 §6). */
static inline int bf_json_number(const char **pp, const char *e, int truncated) {
    const char *p = *pp;
    if (*p == '-' && ++p == e)
        return bf_json_eof(truncated);
    if (*p == '0') {
        p++;
    } else if (bf_json_digit(p, e)) {
        while (bf_json_digit(p, e))
            p++;
    } else {
        return BF_JSON_INVALID;
    }
    if (p < e && *p == '.') {
        if (++p == e)
            return bf_json_eof(truncated);
        if (!bf_json_digit(p, e))
            return BF_JSON_INVALID;
        while (bf_json_digit(p, e))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        if (++p == e)
            return bf_json_eof(truncated);
        if ((*p == '+' || *p == '-') && ++p == e)
            return bf_json_eof(truncated);
        if (!bf_json_digit(p, e))
            return BF_JSON_INVALID;
        while (bf_json_digit(p, e))
            p++;
    }
    if (p == e && truncated)
        return BF_JSON_TRUNCATED;
    if (!bf_json_delim(p, e))
        return BF_JSON_INVALID;
    *pp = p;
    return BF_JSON_FOUND;
}

static inline int bf_json_literal(const char **pp, const char *e, int truncated, const char *lit,
                                  size_t n) {
    size_t avail = (size_t)(e - *pp);
    if (memcmp(*pp, lit, avail < n ? avail : n) != 0)
        return BF_JSON_INVALID;
    if (avail < n)
        return bf_json_eof(truncated);
    if (avail == n && truncated)
        return BF_JSON_TRUNCATED; /* "true" may go on as "truex": its delimiter is not seen */
    if (!bf_json_delim(*pp + n, e))
        return BF_JSON_INVALID;
    *pp += n;
    return BF_JSON_FOUND;
}

/* A scalar at *pp (not a container); *type its BF_JSON_* type. */
static inline int bf_json_scalar(const char **pp, const char *e, int truncated, int *type) {
    switch (**pp) {
    case '"':
        *type = BF_JSON_STRING;
        return bf_json_string(pp, e, truncated);
    case 't':
        *type = BF_JSON_TRUE;
        return bf_json_literal(pp, e, truncated, "true", 4);
    case 'f':
        *type = BF_JSON_FALSE;
        return bf_json_literal(pp, e, truncated, "false", 5);
    case 'n':
        *type = BF_JSON_NULL;
        return bf_json_literal(pp, e, truncated, "null", 4);
    default:
        *type = BF_JSON_NUMBER;
        return bf_json_number(pp, e, truncated);
    }
}

/* member = string name-separator value (RFC 8259 §4): the name and the ':' of one member, *pp at
 * its first byte (whitespace skipped); on success *pp is after the ':' and the whitespace after it,
 * and [*ks, *ke) are the name's contents (between its quotes). */
static inline int bf_json_member_name(const char **pp, const char *e, int truncated,
                                      const char **ks, const char **ke) {
    int r;
    if (**pp != '"')
        return BF_JSON_INVALID;
    *ks = *pp + 1;
    r = bf_json_string(pp, e, truncated);
    if (r != BF_JSON_FOUND)
        return r;
    *ke = *pp - 1;
    *pp = bf_json_ws(*pp, e);
    if (*pp == e)
        return bf_json_eof(truncated);
    if (**pp != ':')
        return BF_JSON_INVALID;
    *pp = bf_json_ws(*pp + 1, e);
    return BF_JSON_FOUND;
}

/* Skip (and validate) one whole value at *pp, inside `depth` containers already open. Iterative:
 * bit k of `objs` says whether the k-th container opened here is an object (else an array). */
static inline int bf_json_skip(const char **pp, const char *e, int truncated, int depth,
                               int *type) {
    const char *p = *pp, *ks, *ke;
    uint64_t objs = 0;
    int d = 0;                                        /* containers opened here and still open */
    int r, t, top_type = BF_JSON_NONE;
    int want_value = 1;
    for (;;) {
        if (d == 0 && !want_value) {
            *pp = p;                                  /* the value ends here, before any WS */
            *type = top_type;
            return BF_JSON_FOUND;
        }
        p = bf_json_ws(p, e);
        if (p == e)
            return bf_json_eof(truncated);
        if (want_value) {
            if (*p == '{' || *p == '[') {
                int obj = *p == '{';
                if (depth + d >= BF_JSON_MAX_DEPTH)
                    return BF_JSON_TOO_DEEP;
                if (d == 0)
                    top_type = obj ? BF_JSON_OBJECT : BF_JSON_ARRAY;
                if (obj)
                    objs |= (uint64_t)1 << d;
                else
                    objs &= ~((uint64_t)1 << d);
                d++;
                p = bf_json_ws(p + 1, e);
                if (p == e)
                    return bf_json_eof(truncated);
                if (*p == (obj ? '}' : ']')) {
                    p++;
                    d--;
                    want_value = 0;
                } else if (obj) {
                    r = bf_json_member_name(&p, e, truncated, &ks, &ke);
                    if (r != BF_JSON_FOUND)
                        return r;
                }
                continue;
            }
            r = bf_json_scalar(&p, e, truncated, &t);
            if (r != BF_JSON_FOUND)
                return r;
            if (d == 0)
                top_type = t;
            want_value = 0;
            continue;
        }
        /* after a value inside a container: a ',' and the next element / member, or its end */
        if (*p == ',') {
            p = bf_json_ws(p + 1, e);
            if (p == e)
                return bf_json_eof(truncated);
            if (objs & ((uint64_t)1 << (d - 1))) {
                r = bf_json_member_name(&p, e, truncated, &ks, &ke);
                if (r != BF_JSON_FOUND)
                    return r;
            }
            want_value = 1;
        } else if (*p == ((objs & ((uint64_t)1 << (d - 1))) ? '}' : ']')) {
            p++;
            d--;
        } else {
            return BF_JSON_INVALID;
        }
    }
}

/* Decoded bytes of a JSON string's contents (between the quotes), one at a time: escapes undone,
 * \uXXXX to UTF-8, a surrogate pair to one 4-byte sequence, a lone surrogate to its 3-byte form
 * (so two texts with the same code units decode the same). */
typedef struct bf_json_str_s {
    const char *p;
    const char *e;
    unsigned char buf[4];
    int n;                                            /* bytes of buf not yet returned: buf[i..n) */
    int i;
} bf_json_str_t;

static inline int bf_json_hex4(const char *p, const char *e) {
    int v = 0, k, h;
    if (e - p < 4)
        return -1;
    for (k = 0; k < 4; k++) {
        h = bf_json_hexval((unsigned char)p[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* The next decoded byte (0..255), -1 at the end, -2 on a malformed escape. */
static inline int bf_json_str_next(bf_json_str_t *s) {
    unsigned char c;
    long cp;
    int lo;
    if (s->i < s->n)
        return s->buf[s->i++];
    if (s->p >= s->e)
        return -1;
    c = (unsigned char)*s->p++;
    if (c != '\\')
        return c;
    if (s->p >= s->e)
        return -2;
    c = (unsigned char)*s->p++;
    switch (c) {
    case '"': case '\\': case '/':
        return c;
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u':
        break;
    default:
        return -2;
    }
    cp = bf_json_hex4(s->p, s->e);
    if (cp < 0)
        return -2;
    s->p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF && s->e - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u') {
        lo = bf_json_hex4(s->p + 2, s->e);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            s->p += 6;
        }
    }
    if (cp < 0x80)
        return (int)cp;
    s->i = 1;                                         /* buf[0] is returned now */
    if (cp < 0x800) {
        s->buf[0] = (unsigned char)(0xC0 | (cp >> 6));
        s->buf[1] = (unsigned char)(0x80 | (cp & 0x3F));
        s->n = 2;
    } else if (cp < 0x10000) {
        s->buf[0] = (unsigned char)(0xE0 | (cp >> 12));
        s->buf[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        s->buf[2] = (unsigned char)(0x80 | (cp & 0x3F));
        s->n = 3;
    } else {
        s->buf[0] = (unsigned char)(0xF0 | (cp >> 18));
        s->buf[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        s->buf[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        s->buf[3] = (unsigned char)(0x80 | (cp & 0x3F));
        s->n = 4;
    }
    return s->buf[0];
}

static inline void bf_json_str_init(bf_json_str_t *s, const char *p, const char *e) {
    s->p = p;
    s->e = e;
    s->n = 0;
    s->i = 0;
}

/* Decoded contents [a, ae) equal the raw bytes [b, b + blen)? */
static inline int bf_json_str_eq_raw(const char *a, const char *ae, const char *b, size_t blen) {
    bf_json_str_t s;
    size_t i = 0;
    int c;
    bf_json_str_init(&s, a, ae);
    for (;;) {
        c = bf_json_str_next(&s);
        if (c == -1)
            return i == blen;
        if (c < 0 || i == blen || c != (unsigned char)b[i])
            return 0;
        i++;
    }
}

/* Decoded contents [a, ae) and [b, be) equal? */
static inline int bf_json_str_eq(const char *a, const char *ae, const char *b, const char *be) {
    bf_json_str_t s, t;
    int c, d;
    bf_json_str_init(&s, a, ae);
    bf_json_str_init(&t, b, be);
    do {
        c = bf_json_str_next(&s);
        d = bf_json_str_next(&t);
        if (c == -2 || d == -2 || c != d)
            return 0;
    } while (c != -1);
    return 1;
}

/* A number's value as a decimal: digits D = int part then frac part; nonzero digits D[f..l];
 * value = (neg ? -1 : 1) * 0.D[f..l] * 10^exp10. */
typedef struct bf_json_dec_s {
    const char *ip;
    size_t il;
    const char *fp;
    size_t fl;
    size_t f, l;
    int64_t exp10;
    int neg, zero, huge;
} bf_json_dec_t;

#define BF_JSON_EXP_DIGITS_MAX 15

static inline char bf_json_dec_digit(const bf_json_dec_t *d, size_t i) {
    return i < d->il ? d->ip[i] : d->fp[i - d->il];
}

/* [p, e) a valid number (bf_json_number said so). */
static inline void bf_json_dec_parse(bf_json_dec_t *d, const char *p, const char *e) {
    int64_t x = 0;
    int xneg = 0, xdigits = 0;
    size_t i, n;
    d->neg = p < e && *p == '-';
    if (d->neg)
        p++;
    d->ip = p;
    while (bf_json_digit(p, e))
        p++;
    d->il = (size_t)(p - d->ip);
    d->fp = p;
    d->fl = 0;
    if (p < e && *p == '.') {
        d->fp = ++p;
        while (bf_json_digit(p, e))
            p++;
        d->fl = (size_t)(p - d->fp);
    }
    d->huge = 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            xneg = *p++ == '-';
        while (p < e && *p == '0')
            p++;
        for (; bf_json_digit(p, e); p++) {
            if (++xdigits > BF_JSON_EXP_DIGITS_MAX)
                d->huge = 1;
            else
                x = x * 10 + (*p - '0');
        }
    }
    n = d->il + d->fl;
    for (i = 0; i < n && bf_json_dec_digit(d, i) == '0'; i++)
        ;
    d->zero = i == n;
    d->f = i;
    for (d->l = n; d->l > d->f && bf_json_dec_digit(d, d->l - 1) == '0'; d->l--)
        ;
    /* |x| < 10^15 and il, f are bounded by the text length: no overflow in int64_t */
    d->exp10 = (int64_t)d->il - (int64_t)d->f + (xneg ? -x : x);
}

static inline int bf_json_num_eq(const char *a, const char *ae, const char *b, const char *be) {
    bf_json_dec_t x, y;
    size_t k;
    bf_json_dec_parse(&x, a, ae);
    bf_json_dec_parse(&y, b, be);
    if (x.huge || y.huge)
        return ae - a == be - b && memcmp(a, b, (size_t)(ae - a)) == 0;
    if (x.zero || y.zero)
        return x.zero && y.zero;                      /* -0 == 0 */
    if (x.neg != y.neg || x.exp10 != y.exp10 || x.l - x.f != y.l - y.f)
        return 0;
    for (k = 0; k < x.l - x.f; k++)
        if (bf_json_dec_digit(&x, x.f + k) != bf_json_dec_digit(&y, y.f + k))
            return 0;
    return 1;
}

/* RFC 6901 §4 array-index: "0" or a digit 1-9 then digits; saturates (no body has that many). */
static inline int bf_json_index(const char *s, const char *e, size_t *idx) {
    size_t v = 0;
    if (s == e || (*s == '0' && e - s > 1))
        return 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v > (SIZE_MAX - 9) / 10 ? SIZE_MAX : v * 10 + (size_t)(*s - '0');
    }
    *idx = v;
    return 1;
}

static inline int bf_json_get(const char *body, size_t blen, const char *path, size_t plen,
                              int truncated, bf_json_value_t *out) {
    const char *p, *e, *seg = path, *seg_end, *path_end = NULL, *ks, *ke, *start;
    size_t idx, k;
    int depth = 0, more = plen > 0, r, t, match;
    out->type = BF_JSON_NONE;
    out->ptr = NULL;
    out->len = 0;
    if (blen == 0)
        return bf_json_eof(truncated);
    p = body;
    e = body + blen;
    if (more)
        path_end = path + plen;
    if (blen < 3 && memcmp(p, "\xEF\xBB\xBF", blen) == 0)
        return bf_json_eof(truncated);                /* a cut-off BOM */
    if (blen >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    for (;;) {
        p = bf_json_ws(p, e);
        if (p == e)
            return bf_json_eof(truncated);
        if (!more) {
            start = p;
            r = bf_json_skip(&p, e, truncated, depth, &t);
            if (r != BF_JSON_FOUND)
                return r;
            out->type = t;
            out->ptr = start;
            out->len = (size_t)(p - start);
            return BF_JSON_FOUND;
        }
        seg_end = (const char *)memchr(seg, '.', (size_t)(path_end - seg));
        if (seg_end == NULL)
            seg_end = path_end;
        if (*p == '{') {
            if (depth >= BF_JSON_MAX_DEPTH)
                return BF_JSON_TOO_DEEP;
            depth++;
            p = bf_json_ws(p + 1, e);
            if (p == e)
                return bf_json_eof(truncated);
            if (*p == '}')
                return BF_JSON_MISSING;
            for (;;) {
                r = bf_json_member_name(&p, e, truncated, &ks, &ke);
                if (r != BF_JSON_FOUND)
                    return r;
                match = bf_json_str_eq_raw(ks, ke, seg, (size_t)(seg_end - seg));
                if (match)
                    break;
                r = bf_json_skip(&p, e, truncated, depth, &t);
                if (r != BF_JSON_FOUND)
                    return r;
                p = bf_json_ws(p, e);
                if (p == e)
                    return bf_json_eof(truncated);
                if (*p == '}')
                    return BF_JSON_MISSING;
                if (*p != ',')
                    return BF_JSON_INVALID;
                p = bf_json_ws(p + 1, e);
                if (p == e)
                    return bf_json_eof(truncated);
            }
        } else if (*p == '[') {
            if (depth >= BF_JSON_MAX_DEPTH)
                return BF_JSON_TOO_DEEP;
            depth++;
            if (!bf_json_index(seg, seg_end, &idx))
                return BF_JSON_MISSING;
            p = bf_json_ws(p + 1, e);
            if (p == e)
                return bf_json_eof(truncated);
            if (*p == ']')
                return BF_JSON_MISSING;
            for (k = 0; k < idx; k++) {
                r = bf_json_skip(&p, e, truncated, depth, &t);
                if (r != BF_JSON_FOUND)
                    return r;
                p = bf_json_ws(p, e);
                if (p == e)
                    return bf_json_eof(truncated);
                if (*p == ']')
                    return BF_JSON_MISSING;
                if (*p != ',')
                    return BF_JSON_INVALID;
                p = bf_json_ws(p + 1, e);
                if (p == e)
                    return bf_json_eof(truncated);
            }
        } else {
            r = bf_json_scalar(&p, e, truncated, &t);  /* a segment on a scalar: validate it */
            return r != BF_JSON_FOUND ? r : BF_JSON_MISSING;
        }
        more = seg_end < path_end;
        seg = seg_end + 1;
    }
}

static inline int bf_json_equals(const bf_json_value_t *v, const char *expected, size_t elen) {
    const char *x, *xe, *q;
    int t;
    if (v->ptr == NULL || v->type == BF_JSON_NONE || elen == 0)
        return 0;
    x = bf_json_ws(expected, expected + elen);
    xe = expected + elen;
    while (xe > x && (xe[-1] == ' ' || xe[-1] == '\t' || xe[-1] == '\n' || xe[-1] == '\r'))
        xe--;
    if (x == xe)
        return 0;
    switch (*x) {
    case '{': t = BF_JSON_OBJECT; break;
    case '[': t = BF_JSON_ARRAY; break;
    case '"': t = BF_JSON_STRING; break;
    case 't': t = BF_JSON_TRUE; break;
    case 'f': t = BF_JSON_FALSE; break;
    case 'n': t = BF_JSON_NULL; break;
    default: t = BF_JSON_NUMBER; break;
    }
    if (t != v->type)
        return 0;
    if (t == BF_JSON_OBJECT || t == BF_JSON_ARRAY)
        return (size_t)(xe - x) == v->len && memcmp(x, v->ptr, v->len) == 0;
    q = x;
    if (bf_json_scalar(&q, xe, 0, &t) != BF_JSON_FOUND || q != xe)
        return 0;                                     /* not exactly one valid value */
    if (t == BF_JSON_STRING)
        return v->len >= 2 && bf_json_str_eq(v->ptr + 1, v->ptr + v->len - 1, x + 1, xe - 1);
    if (t == BF_JSON_NUMBER)
        return bf_json_num_eq(v->ptr, v->ptr + v->len, x, xe);
    return 1;                                         /* true, false, null: the type says it all */
}

#endif /* BF_CHECK_H */
