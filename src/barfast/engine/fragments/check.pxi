# check.pxi — Cython view of include/bf_check.h (response checks on captured bytes) and its test hooks.
# Never: declares anything bf_check.h does not define; the hooks below are for tests, not the loop.
# Invariant: bytes cross as (pointer, length); nothing relies on a NUL terminator.

cdef extern from "bf_check.h" nogil:
    enum:
        BF_JSON_FOUND
        BF_JSON_MISSING
        BF_JSON_INVALID
        BF_JSON_TOO_DEEP
        BF_JSON_TRUNCATED
        BF_JSON_NONE
        BF_JSON_STRING
        BF_JSON_NUMBER
        BF_JSON_TRUE
        BF_JSON_FALSE
        BF_JSON_NULL
        BF_JSON_OBJECT
        BF_JSON_ARRAY
        BF_JSON_MAX_DEPTH

    ctypedef struct bf_json_value_t:
        int type
        const char *ptr
        size_t len

    int bf_header_find(const char *block, size_t len, const char *name, size_t nlen,
                       const char **val, size_t *vlen)
    int bf_body_contains(const char *body, size_t blen, const char *needle, size_t nlen)
    int bf_json_get(const char *body, size_t blen, const char *path, size_t plen, int truncated,
                    bf_json_value_t *out)
    int bf_json_equals(const bf_json_value_t *v, const char *expected, size_t elen)


# ---- Python test hooks (not used by the engine) ---------------------------------------------

CHECK_JSON_CODES = ("found", "missing", "invalid", "too_deep", "truncated")
CHECK_JSON_TYPES = ("none", "string", "number", "true", "false", "null", "object", "array")
CHECK_JSON_MAX_DEPTH = BF_JSON_MAX_DEPTH


def check_header(block, name):
    """bf_header_find: the value of the first field named `name` in the header block, or None."""
    cdef bytes b = bytes(block)
    cdef bytes n = bytes(name)
    cdef const char *val = NULL
    cdef size_t vlen = 0
    cdef const char *bp = b
    if not bf_header_find(bp, <size_t>len(b), n, <size_t>len(n), &val, &vlen):
        return None
    return b[val - bp:val - bp + <Py_ssize_t>vlen]


def check_body_contains(body, needle):
    """bf_body_contains: whether `needle` occurs in `body` (an empty needle always does)."""
    cdef bytes b = bytes(body)
    cdef bytes n = bytes(needle)
    return bool(bf_body_contains(b, <size_t>len(b), n, <size_t>len(n)))


def check_json_get(body, path, bint truncated=False):
    """bf_json_get: (code, type, raw value bytes or None); names in CHECK_JSON_CODES/TYPES."""
    cdef bytes b = bytes(body)
    cdef bytes pa = bytes(path)
    cdef const char *bp = b
    cdef bf_json_value_t v
    cdef int code = bf_json_get(bp, <size_t>len(b), pa, <size_t>len(pa), truncated, &v)
    if code != BF_JSON_FOUND:
        return code, v.type, None
    return code, v.type, b[v.ptr - bp:v.ptr - bp + <Py_ssize_t>v.len]


def check_json_equals(body, path, expected, bint truncated=False):
    """bf_json_get then bf_json_equals: (code, equal); equal is False unless the code is found."""
    cdef bytes b = bytes(body)
    cdef bytes pa = bytes(path)
    cdef bytes x = bytes(expected)
    cdef bf_json_value_t v
    cdef int code = bf_json_get(b, <size_t>len(b), pa, <size_t>len(pa), truncated, &v)
    if code != BF_JSON_FOUND:
        return code, False
    return code, bool(bf_json_equals(&v, x, <size_t>len(x)))
