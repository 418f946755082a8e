/* bf_flow.h — what a flow step takes from its response: captures (a header, a JSON value, the text
 * between two markers) into a per-user variable, and the user's cookie jar (Set-Cookie -> Cookie).
 * Owns: the meaning of a capture and of the jar on the bytes the parser captured (the final header
 *   block and a bounded body prefix, http_resp_capture).
 * Never: allocates, depends on Python.h, reads outside [p, p + len) of any argument, writes past
 *   the capacity it is given, or needs a NUL terminator.
 * Invariants: a captured value never holds CR, LF or NUL (it may go into a header line), and is at
 *   most `cap` bytes; the jar always reads "n1=v1; n2=v2" (name=value pairs, "; " between them),
 *   at most `cap` bytes, one pair per name.
 *
 * bf_capture(kind, head, hlen, body, blen, truncated, a, alen, b, blen2, out, cap, &len) -> BF_CAP_*
 *   BF_CAP_HEADER: the value of the first field `a` (bf_header_find). BF_CAP_JSON: the value at the
 *   dotted path `a` (bf_json_get): a string is decoded (escapes undone), any other value is its JSON
 *   text. BF_CAP_BETWEEN: the bytes after the first `a` in the body up to the next `b` after it.
 *   OK, or MISSING (not there), TOO_LONG (longer than cap), BAD_BYTES (CR, LF or NUL in it),
 *   TRUNCATED (the body was cut by the capture bound before an answer).
 *
 * bf_cookie_update(jar, &jlen, cap, head, hlen) -> pairs that did not fit
 *   For every Set-Cookie field of the header block (RFC 6265 §5.2, name=value before the first ';'
 *   only; attributes other than Max-Age are ignored): a pair whose Max-Age is <= 0 or whose value
 *   is empty removes the name; otherwise it replaces the pair of that name or is appended. A pair
 *   that would take the jar past `cap`, or that holds CR/LF/NUL, is dropped and counted; a field
 *   without '=' or with an empty name is ignored (RFC 6265 §5.2), not counted.
 */
#ifndef BF_FLOW_H
#define BF_FLOW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bf_check.h"

enum {
    BF_CAP_HEADER = 1,
    BF_CAP_JSON = 2,
    BF_CAP_BETWEEN = 3,
};

enum {
    BF_CAP_OK = 0,
    BF_CAP_MISSING = 1,
    BF_CAP_TOO_LONG = 2,
    BF_CAP_BAD_BYTES = 3,
    BF_CAP_TRUNCATED = 4,
    BF_CAP__COUNT = 5,
};

static inline int bf_flow_clean(const char *v, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return 0;
    return 1;
}

static inline int bf_flow_put(const char *v, size_t n, char *out, size_t cap, size_t *len) {
    if (n > cap)
        return BF_CAP_TOO_LONG;
    if (!bf_flow_clean(v, n))
        return BF_CAP_BAD_BYTES;
    memcpy(out, v, n);
    *len = n;
    return BF_CAP_OK;
}

static inline const char *bf_flow_find(const char *hay, size_t hlen, const char *needle,
                                       size_t nlen) {
    const char *p = hay, *last, *hit;
    if (nlen == 0)
        return hay;
    if (hlen < nlen)
        return NULL;
    last = hay + (hlen - nlen);
    while (p <= last) {
        hit = (const char *)memchr(p, (unsigned char)needle[0], (size_t)(last - p) + 1);
        if (hit == NULL)
            return NULL;
        if (memcmp(hit, needle, nlen) == 0)
            return hit;
        p = hit + 1;
    }
    return NULL;
}

static inline int bf_capture(int kind, const char *head, size_t hlen, const char *body,
                             size_t blen, int truncated, const char *a, size_t alen,
                             const char *b, size_t b_len, char *out, size_t cap, size_t *len) {
    const char *v = NULL, *s, *e;
    size_t vlen = 0, n = 0;
    bf_json_value_t jv;
    bf_json_str_t st;
    int r, c;
    *len = 0;
    if (kind == BF_CAP_HEADER) {
        if (!bf_header_find(head, hlen, a, alen, &v, &vlen))
            return BF_CAP_MISSING;
        return bf_flow_put(v, vlen, out, cap, len);
    }
    if (kind == BF_CAP_JSON) {
        r = bf_json_get(body, blen, a, alen, truncated, &jv);
        if (r == BF_JSON_TRUNCATED)
            return BF_CAP_TRUNCATED;
        if (r != BF_JSON_FOUND)
            return BF_CAP_MISSING;
        if (jv.type != BF_JSON_STRING)
            return bf_flow_put(jv.ptr, jv.len, out, cap, len);
        bf_json_str_init(&st, jv.ptr + 1, jv.ptr + jv.len - 1);
        while ((c = bf_json_str_next(&st)) >= 0) {
            if (n == cap)
                return BF_CAP_TOO_LONG;
            if (c == '\r' || c == '\n' || c == 0)
                return BF_CAP_BAD_BYTES;
            out[n++] = (char)c;
        }
        if (c == -2)
            return BF_CAP_MISSING;  /* not reached: bf_json_get validated the string */
        *len = n;
        return BF_CAP_OK;
    }
    if (kind == BF_CAP_BETWEEN) {
        s = bf_flow_find(body, blen, a, alen);
        if (s == NULL)
            return truncated ? BF_CAP_TRUNCATED : BF_CAP_MISSING;
        s += alen;
        e = bf_flow_find(s, (size_t)(body + blen - s), b, b_len);
        if (e == NULL)
            return truncated ? BF_CAP_TRUNCATED : BF_CAP_MISSING;
        return bf_flow_put(s, (size_t)(e - s), out, cap, len);
    }
    return BF_CAP_MISSING;
}

/* ---- cookies ---------------------------------------------------------------------------------- */

static inline int bf_cookie_ieq(const char *p, size_t n, const char *lit) {
    size_t i;
    for (i = 0; i < n; i++)
        if (lit[i] == '\0' || bf_check_lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return 0;
    return lit[n] == '\0';
}

static inline const char *bf_cookie_trim(const char **pp, const char *e) {
    const char *p = *pp;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *pp = p;
    return e;
}

/* Remove the pair named [n, n + nlen) from the jar (if there). */
static inline void bf_cookie_remove(char *jar, size_t *jlen, const char *n, size_t nlen) {
    size_t i = 0, j, k;
    while (i < *jlen) {
        j = i;
        while (j < *jlen && jar[j] != ';')
            j++;
        for (k = i; k < j && jar[k] != '='; k++) {
        }
        if (k - i == nlen && memcmp(jar + i, n, nlen) == 0) {
            /* drop [i, j) and the "; " that joins it to the next pair (or the one before it) */
            if (j < *jlen) {
                memmove(jar + i, jar + j + 2, *jlen - (j + 2));
                *jlen -= (j + 2) - i;
            } else if (i >= 2) {
                *jlen = i - 2;
            } else {
                *jlen = 0;
            }
            return;
        }
        i = j + 2;
    }
}

static inline int bf_cookie_set(char *jar, size_t *jlen, size_t cap, const char *p,
                                const char *le) {
    const char *semi, *eq, *n, *ne, *v, *ve, *a, *ae, *ax;
    int del = 0;
    long age;
    size_t need;
    semi = (const char *)memchr(p, ';', (size_t)(le - p));
    if (semi == NULL)
        semi = le;
    eq = (const char *)memchr(p, '=', (size_t)(semi - p));
    if (eq == NULL)
        return 0;                                     /* no name=value: ignored (RFC 6265 §5.2) */
    n = p;
    ne = bf_cookie_trim(&n, eq);
    v = eq + 1;
    ve = bf_cookie_trim(&v, semi);
    if (ne == n)
        return 0;                                     /* an empty name: ignored, likewise */
    if (!bf_flow_clean(n, (size_t)(ne - n)) || !bf_flow_clean(v, (size_t)(ve - v)))
        return 1;
    if (ve == v)
        del = 1;
    /* Max-Age <= 0 deletes (RFC 6265 §5.2.2) */
    a = semi;
    while (a < le) {
        a++;
        ae = (const char *)memchr(a, ';', (size_t)(le - a));
        if (ae == NULL)
            ae = le;
        ax = a;
        eq = (const char *)memchr(ax, '=', (size_t)(ae - ax));
        if (eq != NULL) {
            const char *an = ax, *ane = bf_cookie_trim(&an, eq);
            const char *av = eq + 1, *ave = bf_cookie_trim(&av, ae);
            if (bf_cookie_ieq(an, (size_t)(ane - an), "max-age")) {
                age = 0;
                if (av < ave && *av == '-') {
                    del = 1;
                } else if (av < ave && *av >= '0' && *av <= '9') {
                    for (; av < ave && *av >= '0' && *av <= '9'; av++)
                        if (age < 1000000000L)
                            age = age * 10 + (*av - '0');
                    if (age <= 0)
                        del = 1;
                }
            }
        }
        a = ae;
    }
    bf_cookie_remove(jar, jlen, n, (size_t)(ne - n));
    if (del)
        return 0;
    need = (size_t)(ne - n) + 1 + (size_t)(ve - v) + (*jlen ? 2 : 0);
    if (*jlen + need > cap)
        return 1;
    if (*jlen) {
        jar[*jlen] = ';';
        jar[*jlen + 1] = ' ';
        *jlen += 2;
    }
    memcpy(jar + *jlen, n, (size_t)(ne - n));
    *jlen += (size_t)(ne - n);
    jar[(*jlen)++] = '=';
    memcpy(jar + *jlen, v, (size_t)(ve - v));
    *jlen += (size_t)(ve - v);
    return 0;
}

static inline uint32_t bf_cookie_update(char *jar, size_t *jlen, size_t cap, const char *block,
                                        size_t len) {
    const char *p = block, *end = block + len, *nl, *le, *next, *v;
    int first = 1;
    uint32_t dropped = 0;
    while (p < end) {
        nl = (const char *)memchr(p, '\n', (size_t)(end - p));
        le = nl != NULL ? nl : end;
        next = nl != NULL ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (first) {
            first = 0;
        } else if (le == p) {
            break;
        } else if ((size_t)(le - p) > 11 && p[10] == ':' && bf_cookie_ieq(p, 10, "set-cookie")) {
            v = p + 11;
            dropped += (uint32_t)bf_cookie_set(jar, jlen, cap, v, le);
        }
        p = next;
    }
    return dropped;
}

/* ---- placing a variable in a request ------------------------------------------------------------ */

/* As scenario/template.py's escape_value(): in the request target only the bytes a target cannot
 * carry are percent-encoded (controls, space, non-ASCII and "<>\\^`{|}#"); inside a JSON string
 * '"', '\\' and controls are escaped (json.dumps with ensure_ascii=False). Bounds: 3 and 6 bytes out
 * per byte in. */
static inline int bf_flow_target_ok(unsigned char c) {
    if (c >= 'a' && c <= 'z')
        return 1;
    if (c >= '?' && c <= '[')                         /* ? @ A-Z [ */
        return 1;
    if (c >= '$' && c <= ';')                         /* $ % & ' ( ) * + , - . / 0-9 : ; */
        return 1;
    return c == '!' || c == '=' || c == ']' || c == '_' || c == '~';
}

static inline size_t bf_flow_escape_target(const char *v, size_t n, char *out) {
    static const char hex[] = "0123456789ABCDEF";
    size_t i, k = 0;
    unsigned char c;
    for (i = 0; i < n; i++) {
        c = (unsigned char)v[i];
        if (bf_flow_target_ok(c)) {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    return k;
}

static inline size_t bf_flow_escape_json(const char *v, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    size_t i, k = 0;
    unsigned char c;
    for (i = 0; i < n; i++) {
        c = (unsigned char)v[i];
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c >= 0x20) {
            out[k++] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
            out[k++] = '\\';
            out[k++] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
        } else {
            out[k++] = '\\';
            out[k++] = 'u';
            out[k++] = '0';
            out[k++] = '0';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    return k;
}

#endif /* BF_FLOW_H */
